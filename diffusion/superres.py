"""FLEX residual super-resolution of 2D Kolmogorov-flow vorticity at CPU size.

The task of FLEX (Erichson et al. 2025) scaled down: vorticity snapshots of
`sciml.pde.NavierStokes2D` with Kolmogorov forcing at several viscosities (some for training, one
held out), on a 64^2 grid after a spin-up; the coarse field is the point subsampling ``x[::4, ::4]``
(16^2, no anti-alias filter; the paper subsamples by 8 from 256^2), the base its periodic
bicubic upsampling aligned with the subsampled points (`periodic_bicubic`), and a tiny `FLEX` learns the residual ``r = x - base`` with
v-prediction on `CosineVP` (L1 loss, as in the paper), conditioned on the coarse field and the
viscosity. Samples come from deterministic DDIM with 2 (FLEX's default) or more steps.

Fields are normalised by one scale (the training vorticity's standard deviation; the mean is ~0),
so variances below are in units of Var[x]. The data, the tiny model, the training loop and the
sampler are shared with forecasting (`sciml.diffusion.kolmogorov`); `train_superres` and
`sample_superres` are its `train_diffusion` and `sample_ensemble`.
"""

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.diffusion import kolmogorov
from sciml.diffusion.evaluation import calibrate_spectrum, calibrate_spread, deterministic_metrics
from sciml.diffusion.flex import FLEX
from sciml.diffusion.kolmogorov import (
    KolmogorovFlow,
    generate_vorticity,
    make_loss,
    residual_variance,
    score_ensembles,
    tiny_flex,
    write_sample_report,
)
from sciml.diffusion.residual import Residual
from sciml.fields import lowpass

__all__ = [
    "NOISY_END_LEVELS",
    "KolmogorovSR",
    "calibrate_noisy_end",
    "checkpoint_metadata",
    "coarsen",
    "conditioning",
    "evaluate_superres",
    "generate_vorticity",
    "make_loss",
    "noisy_end_options",
    "periodic_bicubic",
    "residual_model",
    "residual_variance",
    "sample_report",
    "sample_superres",
    "task_from_metadata",
    "tiny_flex",
    "train_superres",
]

Field = Float[Array | np.ndarray, "b x y c"]

# The shared training loop and sampler under this task's names.
train_superres = kolmogorov.train_diffusion
sample_superres = kolmogorov.sample_ensemble


@dataclasses.dataclass(frozen=True)
class KolmogorovSR(KolmogorovFlow):
    """The data (`KolmogorovFlow`: grid, viscosities, time stepping, snapshots) and the
    super-resolution set-up.

    Attributes:
        factor: subsampling factor of the coarse grid (n / factor points per axis).
    """

    kind: ClassVar[str] = "superres"

    factor: int = 4

    @property
    def coarse_n(self) -> int:
        return self.n // self.factor

    @property
    def k_cut(self) -> int:
        """The coarse grid's largest resolved wavenumber, n / (2 factor)."""
        return self.coarse_n // 2

    @property
    def band(self) -> dict[str, int]:
        """`spectrum_error`'s band: above the coarse cut-off, up to the solver's 2/3-rule limit
        (above n/3 the data hold no energy and any ratio of spectra there is noise)."""
        return {"k_min": self.k_cut, "k_max": self.n // 3}


def coarsen(x: Field, factor: int) -> Float[Array, "b xc yc c"]:
    """Point subsampling ``x[:, ::factor, ::factor]`` (FLEX's coarse data: no anti-alias filter)."""
    return jnp.asarray(x)[:, ::factor, ::factor]


def conditioning(
    x: Field, viscosity: Float[Array | np.ndarray, " b"], config: KolmogorovSR
) -> dict[str, Array]:
    """The network's cond: the upsampled coarse field and the parameter ``reference_viscosity / nu``.

    The field is `periodic_bicubic` of ``x[::factor, ::factor]``: the base of the residual and
    the task encoder's input (FLEX's task encoder also reads the upsampled field).
    """
    return {
        "field": periodic_bicubic(coarsen(x, config.factor), config.factor),
        "params": config.parameter(viscosity),
    }


def periodic_bicubic(coarse: Float[Array, "b xc yc c"], factor: int) -> Float[Array, "b x y c"]:
    """Bicubic (Keys, a = -0.5) upsampling aligned with point subsampling, periodic wrap.

    Coarse point i sits on fine point ``factor * i``, so the upsampled field passes through the
    coarse samples. (`jax.image.resize`, and so `upsample_base`, use half-pixel centres: coarse
    point i lands on ``factor * i + (factor - 1) / 2``, a 1.5-point shift for x4 subsampling,
    and clamp at the edges.)
    """
    pad = 2
    padded = jnp.pad(coarse, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="wrap")
    n = (coarse.shape[1] * factor, coarse.shape[2] * factor)
    # scale_and_translate samples input (out + 0.5 - t) / s - 0.5; want out = f i <-> pad + i.
    shift = 0.5 - factor * (pad + 0.5)
    return jax.image.scale_and_translate(
        padded,
        (coarse.shape[0], *n, coarse.shape[-1]),
        (1, 2),
        jnp.full((2,), factor, jnp.float32),
        jnp.full((2,), shift, jnp.float32),
        "cubic",
        antialias=False,
    )


def residual_model(config: KolmogorovSR, *, band_limited: bool = True) -> Residual:
    """Residual diffusion around ``cond["field"]``, the upsampled coarse field (`conditioning`).

    ``band_limited``: project every sample (not the training targets, not the base) onto the
    Fourier modes the solver keeps (``|k_i| <= config.max_wavenumber``). The data have nothing
    above them (`KolmogorovFlow.max_wavenumber`), and a sampler ending noisy
    (``denoise_last=False``) puts white noise there, over half of its energy (55% of the modes
    of a 64^2 grid lie outside): pure error, which the projection removes exactly. The band of
    the spectrum metrics (``k <= n // 3``) lies inside the kept modes, so the projection changes
    pixel errors and spread only, never the band spectrum error.
    """
    project = None
    if band_limited:
        project = functools.partial(lowpass, max_wavenumber=config.max_wavenumber, ndim=2)
    return Residual(lambda cond: cond["field"], project=project)


def evaluate_superres(
    model: FLEX,
    params: Any,
    splits: Mapping[str, tuple[Field, Mapping[str, Array]]],
    key: PRNGKeyArray,
    config: KolmogorovSR,
    *,
    steps: Sequence[int] = (2, 16),
    n_members: int = 8,
    ddim_options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of FLEX-<n>-step ensembles and of the bicubic base on every split.

    Args:
        splits: name (e.g. "nu=0.002", "heldout nu=0.003") -> (normalised x, cond).
        steps: DDIM step counts to evaluate.
        n_members: ensemble members per condition (metrics of one draw and of the mean, CRPS,
            spread/skill, pull; see `sciml.diffusion.evaluation.ensemble_metrics`).
        ddim_options: further `ddim` keywords (eta, t_min, denoise_last); none: FLEX's DDIM.
    Returns:
        ``{split: {"bicubic": {...}, "flex_2": {...}, ...}}``, all in normalised units except
        the dimensionless ones. The data range for PSNR/SSIM is each target's own range.
    """
    residual = residual_model(config)
    band = config.band
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, (name, (x, cond)) in enumerate(splits.items()):
        x = jnp.asarray(x)
        row = {"bicubic": deterministic_metrics(residual.base_fn(cond), x, **band)}
        key_i = jax.random.fold_in(key, i)
        row |= score_ensembles(
            model, params, cond, x, key_i, residual, steps, n_members, band, ddim_options
        )
        row["variance"] = residual_variance(x, cond, residual)
        out[name] = row
    return out


# t_min candidates of `calibrate_noisy_end`
NOISY_END_LEVELS = (0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3)


def calibrate_noisy_end(
    model: FLEX,
    params: Any,
    task: KolmogorovSR,
    scale: float,
    key: PRNGKeyArray,
    *,
    trajectories: int = 2,
    n_members: int = 8,
    levels: Sequence[float] = NOISY_END_LEVELS,
    criterion: Literal["spread", "spectrum"] = "spread",
) -> tuple[dict[float, float], dict[float, dict[float, float]]]:
    """A noise level per training viscosity for 2-call DDIM ending noisy (eta 1).

    The deterministic 2-call output is a posterior mean that lacks the posterior's spread and
    small-scale energy, and how much is missing depends on the flow. On `trajectories` fresh
    trajectories per training viscosity (fields divided by `scale`), the t_min in `levels`
    whose ensembles of `n_members` have spread/skill closest to 1 (``criterion="spread"``,
    `calibrate_spread`) or whose draws have the truth's energy spectrum above the coarse cut-off
    (``"spectrum"``, `calibrate_spectrum`, band as `evaluate_superres`).
    Returns ``{viscosity: t_min}`` and every level's score (spread/skill ratio or band spectrum
    error) per viscosity.
    """
    if criterion not in ("spread", "spectrum"):
        raise ValueError(f"criterion must be 'spread' or 'spectrum', not {criterion!r}")
    residual = residual_model(task)
    chosen, scores = {}, {}
    for i, nu in enumerate(task.train_viscosities):
        k_data, k_sample = jax.random.split(jax.random.fold_in(key, i))
        x = generate_vorticity(k_data, task, nu, trajectories) / scale
        cond = conditioning(x, np.full((len(x),), nu), task)

        def sample(t_min: float, cond: dict = cond, k_sample: PRNGKeyArray = k_sample) -> Array:
            return sample_superres(
                model,
                params,
                cond,
                k_sample,
                residual=residual,
                n_steps=2,
                n_members=n_members,
                ddim_options={"eta": 1.0, "t_min": t_min, "denoise_last": False},
            )

        if criterion == "spread":
            chosen[nu], scores[nu] = calibrate_spread(sample, x, levels)
        else:
            chosen[nu], scores[nu] = calibrate_spectrum(sample, x, levels, **task.band)
    return chosen, scores


def noisy_end_options(calibration: Mapping[float, float], viscosity: float) -> dict[str, Any]:
    """`ddim` keywords of the calibrated noisy end at `viscosity`: eta 1 and t_min interpolated
    linearly in log(viscosity) between the `calibrate_noisy_end` levels (clamped outside)."""
    nus = sorted(calibration)
    t_min = np.interp(np.log(viscosity), np.log(nus), [calibration[nu] for nu in nus])
    return {"eta": 1.0, "t_min": float(t_min), "denoise_last": False}


def checkpoint_metadata(model: FLEX, task: KolmogorovSR, scale: float) -> dict[str, Any]:
    """Checkpoint metadata of a FLEX trained on `task` with fields divided by `scale`: what
    `sciml.pretrained.load` rebuilds the model from and `sample_report` rebuilds the task from."""
    coarse = {"coarse_shape": [task.coarse_n, task.coarse_n]}
    return kolmogorov.checkpoint_metadata(model, task, scale, cond_channels=1, data=coarse)


def task_from_metadata(meta: Mapping[str, Any]) -> KolmogorovSR:
    """The `KolmogorovSR` a checkpoint was trained on (stored under metadata config.task)."""
    return kolmogorov.task_from_metadata(meta, KolmogorovSR, "scripts/flex_superres.py")


def sample_report(
    model: FLEX,
    params: Any,
    meta: Mapping[str, Any],
    out_dir: str | Path,
    key: PRNGKeyArray,
    *,
    n_trajectories: int = 1,
    n_members: int = 8,
    n_steps: int = 2,
    viscosity: float | None = None,
    ddim_options: Mapping[str, Any] | None = None,
    calibrated: bool = False,
    criterion: Literal["spread", "spectrum"] = "spread",
) -> dict[str, Any]:
    """Draw super-resolution ensembles from a trained FLEX on fresh data, score and plot them.

    Generates `n_trajectories` trajectories (`snapshots` each) of the checkpoint's task at
    `viscosity` (default: the held-out one), samples `n_members` DDIM (`n_steps`) members per
    snapshot and writes to `out_dir`: samples.npz (truth, base, members (m, b, n, n, 1), in the
    data's physical units), ensemble_<i>.png for the first snapshots (truth, bicubic base,
    members, mean, std map), spectra.png, pull.png and report.json (metrics of the bicubic base
    and of the ensemble in normalised units, as `evaluate_superres`). `ddim_options`: further
    `ddim` keywords (``eta``, ``t_min``, ``denoise_last``), default FLEX's deterministic DDIM;
    ``calibrated=True`` replaces them by the noisy end calibrated by `criterion`
    (`calibrate_noisy_end` on fresh flows of the training viscosities, `noisy_end_options` at
    `viscosity`; recorded in report.json under "calibration"). Draws are band-limited
    (`residual_model`).
    """
    task = task_from_metadata(meta)
    nu = task.test_viscosities[0] if viscosity is None else float(viscosity)
    scale = float(meta["data"]["std"][0])
    k_data, k_sample, k_calibrate = jax.random.split(key, 3)
    calibration = None
    if calibrated:
        levels, _ = calibrate_noisy_end(
            model,
            params,
            task,
            scale,
            k_calibrate,
            n_members=max(n_members, 4),
            criterion=criterion,
        )
        ddim_options = noisy_end_options(levels, nu)
        calibration = {"criterion": criterion, "t_min": {f"{v:g}": t for v, t in levels.items()}}
    truth = generate_vorticity(k_data, task, nu, n_trajectories) / scale
    cond = conditioning(truth, np.full((len(truth),), nu), task)
    residual = residual_model(task)
    samples = sample_superres(
        model,
        params,
        cond,
        k_sample,
        residual=residual,
        n_steps=n_steps,
        n_members=n_members,
        ddim_options=ddim_options,
    )
    base = np.asarray(residual.base_fn(cond))
    samples = np.asarray(samples)
    return write_sample_report(
        out_dir,
        task,
        nu,
        truth,
        base,
        samples,
        scale=scale,
        n_steps=n_steps,
        ddim_options=ddim_options,
        band=task.band,
        baseline="bicubic",
        title=f"nu = {nu:g}, FLEX {n_steps} DDIM steps",
        spectra_title=f"nu = {nu:g}; coarse cut-off k = {task.k_cut}",
        extra={"calibration": calibration} if calibration else None,
    )
