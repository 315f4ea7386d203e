"""Diffusion and flow matching (sciml.diffusion): FLEX, ECI and PCFM samplers live here.

The core, one concern per module:

- `schedules`: probability paths ``x_t = alpha(t) x0 + sigma(t) eps`` on t in [0, 1], t = 0 the
  data (`CosineVP`, `EDM`, `FlowMatching`, `StochasticInterpolant`; `karras_sigmas`).
- `parameterization`: eps / x0 / v / flow-velocity / EDM-preconditioned networks and exact
  conversions between them (`to_x0`, `to_eps`, `convert`, `edm_preconditioning`, `denoise`).
- `losses`: `diffusion_loss` and `flow_matching_loss` with L2 / L1 / Huber penalties and uniform,
  sigmoid (Kingma & Gao) and EDM weightings.
- `samplers`: `ddim`, `edm_heun`, `flow_euler`, `flow_ode` (diffrax), and `ensemble`.
- `flex`: the FLEX backbone (`FLEX`, presets `FLEX_PRESETS`) and its `DiffusionUNet` and
  `UViT` baselines, all ``model.apply(params, x_t, t, {"field": ..., "params": ...})``.
- `residual`: `Residual` diffusion around a base (`upsample_base`, `last_snapshot_base`,
  `regression_base`).
- `priors`: resolution-independent noise priors (`WhiteNoise`, `UniformNoise`, `SpectralGRF`,
  `GaussianProcess`), ``prior.sample(key, shape) -> (b, *spatial, c)``.
- `ffm`: functional flow matching (`VelocityFNO`, `ffm_loss`, `ffm_train_step`, `ffm_euler`,
  `ffm_ode`), on the package's time convention (t = 0 data); the conditional-FFM baseline's
  inputs (`observed_condition`, `selection_observation`).
- `eci`: ECI constrained sampling (`eci_sample`, `EuclideanProjection`, `ChainedProjection`) and
  the gradient-guidance baseline (`guidance_sample`); `pcfm`: PCFM (`pcfm_sample`) for nonlinear
  ``h(u) = 0``. ECI's analytic tasks are in `sciml.pde.sampling_tasks`, its metrics (`mmse`,
  `smse`, `constraint_error`) in `sciml.metrics`.
- Tasks (imported by their module, not re-exported): `kolmogorov` (the Kolmogorov-flow data, tiny
  FLEX, training loop, sampler and checkpoint metadata they share), `superres` (x4 residual
  super-resolution) and `forecast` (residual forecasting from 2 past snapshots); metrics in
  `evaluation`.

The network contract is ``apply_fn(params, x_t, t, cond) -> prediction`` with x_t channels-last
(batch, *spatial, c), t of shape (batch,) and cond any pytree or None.
"""

from sciml.diffusion.eci import (
    ChainedProjection,
    EuclideanProjection,
    eci_sample,
    guidance_sample,
)
from sciml.diffusion.ffm import (
    VelocityFNO,
    ffm_checkpoint_metadata,
    ffm_euler,
    ffm_loss,
    ffm_ode,
    ffm_train_step,
    observed_condition,
    selection_observation,
    sinusoidal_embedding,
)
from sciml.diffusion.flex import FLEX, FLEX_PRESETS, DiffusionUNet, UViT
from sciml.diffusion.losses import (
    diffusion_loss,
    edm_weight,
    flow_matching_loss,
    pointwise_loss,
    sigmoid_weight,
    uniform_weight,
)
from sciml.diffusion.parameterization import (
    EDMCoefficients,
    convert,
    denoise,
    edm_preconditioning,
    from_x0_eps,
    network_inputs,
    network_target,
    network_to_x0_eps,
    predict,
    to_eps,
    to_x0,
    to_x0_eps,
)
from sciml.diffusion.pcfm import gauss_newton_projection, pcfm_sample
from sciml.diffusion.priors import GaussianProcess, Prior, SpectralGRF, UniformNoise, WhiteNoise
from sciml.diffusion.residual import Residual, last_snapshot_base, regression_base, upsample_base
from sciml.diffusion.samplers import ddim, edm_heun, ensemble, flow_euler, flow_ode
from sciml.diffusion.schedules import (
    EDM,
    CosineVP,
    FlowMatching,
    Schedule,
    StochasticInterpolant,
    karras_sigmas,
)

__all__ = [
    "FLEX",
    "FLEX_PRESETS",
    "DiffusionUNet",
    "UViT",
    "EDM",
    "CosineVP",
    "EDMCoefficients",
    "FlowMatching",
    "Residual",
    "Schedule",
    "StochasticInterpolant",
    "convert",
    "ddim",
    "denoise",
    "diffusion_loss",
    "edm_heun",
    "edm_preconditioning",
    "edm_weight",
    "ensemble",
    "flow_euler",
    "flow_matching_loss",
    "flow_ode",
    "from_x0_eps",
    "karras_sigmas",
    "last_snapshot_base",
    "network_inputs",
    "network_target",
    "network_to_x0_eps",
    "pointwise_loss",
    "predict",
    "regression_base",
    "sigmoid_weight",
    "to_eps",
    "to_x0",
    "to_x0_eps",
    "uniform_weight",
    "upsample_base",
    "ChainedProjection",
    "EuclideanProjection",
    "GaussianProcess",
    "Prior",
    "SpectralGRF",
    "UniformNoise",
    "VelocityFNO",
    "WhiteNoise",
    "eci_sample",
    "ffm_checkpoint_metadata",
    "ffm_euler",
    "ffm_loss",
    "ffm_ode",
    "ffm_train_step",
    "observed_condition",
    "selection_observation",
    "gauss_newton_projection",
    "guidance_sample",
    "pcfm_sample",
    "sinusoidal_embedding",
]
