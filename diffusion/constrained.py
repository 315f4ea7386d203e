"""Constrained sampling from a trained FFM prior, driven by a config: `sciml sample CONFIG.yaml`.

The config names a checkpoint (an unconditional FFM prior whose metadata carries its task, a
data family such as `sciml.pde.sampling_tasks.StokesTask`), the constraints as methods of that
task (``{method: bc_constraint, args: {w: 6.0}}``; several are stacked into one linear
constraint), the ground truth as keyword arguments of the task's ``sample`` (the same fixed
parameters), and the sampler (ECI, gradient guidance or none). Every run samples the
unconstrained prior from the same initial noise as well, so the report compares the two.
"""

import json
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sciml import config as config_lib
from sciml.constraints import stack_constraints
from sciml.diffusion.eci import EuclideanProjection, eci_sample, guidance_sample
from sciml.diffusion.ffm import ffm_euler
from sciml.metrics import constraint_error, mmse, smse
from sciml.plotting import plot_constrained_samples


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstraintSpec(_Strict):
    """A constraint as a method of the checkpoint's task, e.g. ``bc_constraint(w=6.0)``."""

    method: str = Field(pattern=r"^[a-z_]*constraint$")
    args: dict[str, float] = {}


class SamplerSpec(_Strict):
    method: Literal["eci", "guidance", "unconstrained"] = "eci"
    n_steps: int = Field(50, ge=1)  # Euler steps (network calls per mixing iteration)
    n_mix: int = Field(1, ge=1)  # ECI: extrapolate-correct-interpolate iterations per step
    resample_every: int | None = Field(None, ge=1)  # ECI: fresh noise every k iterations
    eta: float = Field(5.0, gt=0)  # guidance step size


class ConstrainedSamplingConfig(_Strict):
    """The YAML of `sciml sample CONFIG.yaml` (with ``task: constrained_sampling``)."""

    name: str
    checkpoint: str  # a shipped name, run directory or checkpoint directory
    constraints: list[ConstraintSpec] = Field(min_length=1)
    truth: dict[str, float] = {}  # keyword arguments of task.sample for matching ground truth
    sampler: SamplerSpec = SamplerSpec()
    n_samples: int = Field(64, ge=2)
    n_truth: int = Field(256, ge=2)
    seed: int = 0
    out: str


def sample_constrained(
    model: Any, params: Any, meta: dict[str, Any], cfg: ConstrainedSamplingConfig
) -> dict[str, Any]:
    """Sample the config's constraints from the prior (`model`, `params`, checkpoint `meta`).

    Writes to ``cfg.out``: samples.npz (constrained and unconstrained samples (n, *shape, 1),
    ground truth), samples.png (samples, means and standard deviations against the truth) and
    report.json (MMSE, SMSE and constraint error of both), which it also returns.
    """
    try:
        task = config_lib.build(meta["config"]["task"], "checkpoint task")
        prior = config_lib.build(meta["config"]["prior"], "checkpoint prior")
    except (KeyError, TypeError):
        raise ValueError(
            f"{cfg.checkpoint} has no task and prior in its metadata: constrained sampling needs"
            " an FFM prior checkpoint (e.g. the shipped ffm_stokes)"
        ) from None
    constraints = []
    for spec in cfg.constraints:
        method = getattr(task, spec.method, None)
        if method is None:
            raise ValueError(f"{type(task).__name__} has no {spec.method}")
        constraints.append(method(**spec.args))
    constraint = constraints[0] if len(constraints) == 1 else stack_constraints(*constraints)
    shape = (cfg.n_samples, *meta["data"]["spatial_shape"], 1)
    k_truth, k_noise = jax.random.split(jax.random.key(cfg.seed))
    truth = np.asarray(task.sample(k_truth, cfg.n_truth, **cfg.truth))
    s = cfg.sampler
    common = {"key": k_noise, "shape": shape, "prior": prior, "n_steps": s.n_steps}
    free = ffm_euler(model.apply, params, None, **common)
    if s.method == "eci":
        ours = eci_sample(
            model.apply,
            params,
            None,
            EuclideanProjection(constraint),
            n_mix=s.n_mix,
            resample_every=s.resample_every,
            **common,
        )
    elif s.method == "guidance":
        ours = guidance_sample(model.apply, params, None, constraint, eta=s.eta, **common)
    else:
        ours = free
    rows = {}
    for label, samples in ((s.method, ours), ("unconstrained", free)):
        rows[label] = {
            "mmse": float(mmse(samples, truth)),
            "smse": float(smse(samples, truth)),
            "ce": float(constraint_error(samples, constraint)),
        }
    report = {"name": cfg.name, "sampler": s.model_dump(), "metrics": rows}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "samples.tmp.npz"
    np.savez(tmp, samples=np.asarray(ours), unconstrained=np.asarray(free), truth=truth)
    tmp.replace(out / "samples.npz")
    plot_constrained_samples(
        out / "samples.png", np.asarray(ours), truth, title=f"{cfg.name}: {s.method}"
    )
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
