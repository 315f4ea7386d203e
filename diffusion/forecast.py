"""FLEX residual forecasting of 2D Kolmogorov-flow vorticity at CPU size.

FLEX's forecasting task (Erichson et al. 2025) scaled down: from the past snapshots
``(x_{n-1}, x_n)`` of a `KolmogorovFlow` trajectory (64^2, several viscosities, one held out),
predict ``x_{n+1}``. A tiny `FLEX` learns the residual ``r = x_{n+1} - x_n`` (the base is the
last snapshot, `last_snapshot_base`) with v-prediction on `CosineVP` (L1), conditioned on the
past snapshots (the task encoder's input, channels oldest first) and the viscosity; samples come
from deterministic DDIM with 2 or more steps. The baselines are persistence (``x_{n+1} = x_n``,
the base itself), linear extrapolation (``2 x_n - x_{n-1}``) and a deterministic regression of
the same network (`sciml.diffusion.kolmogorov.train_regression`).

Snapshots are 0.2 time units (10 solver steps) apart, so one step is a large change: the
persistence RFNE is ~0.35 at nu = 8e-3, ~0.41 at 3e-3, ~0.47 at 4e-3 and ~0.54 at 2e-3 (64^2,
scripts/flex_forecast.py), and ~0.9-1.2 after 1 time unit (the flow has decorrelated). Fields
are normalised by one scale (the training vorticity's standard deviation).
"""

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.diffusion import kolmogorov
from sciml.diffusion.evaluation import deterministic_metrics
from sciml.diffusion.flex import FLEX
from sciml.diffusion.kolmogorov import (
    KolmogorovFlow,
    generate_trajectories,
    predict_regression,
    residual_variance,
    sample_ensemble,
    score_ensembles,
    write_sample_report,
)
from sciml.diffusion.residual import Residual, last_snapshot_base

Field = Float[Array | np.ndarray, "b x y c"]


@dataclasses.dataclass(frozen=True)
class KolmogorovForecast(KolmogorovFlow):
    """The data (`KolmogorovFlow`) and the forecasting set-up.

    Attributes:
        history: past snapshots the forecast is conditioned on (2 in FLEX).
        spacing, snapshots: as `KolmogorovFlow`, with the forecasting defaults: 0.2 time units
            between snapshots, 6 per trajectory (4 forecasts of 2 past snapshots each).
    """

    kind: ClassVar[str] = "forecast"

    spacing: float = 0.2
    snapshots: int = 6
    history: int = 2

    @property
    def pairs_per_trajectory(self) -> int:
        return self.snapshots - self.history


def target_indices(snapshots: int, history: int) -> np.ndarray:
    """The snapshot index of every target within a trajectory: ``history, ..., snapshots - 1``.

    Target ``j`` is forecast from snapshots ``j - history, ..., j - 1``.
    """
    if not 1 <= history < snapshots:
        raise ValueError(f"history must be in [1, snapshots - 1 = {snapshots - 1}], got {history}")
    return np.arange(history, snapshots)


def forecast_pairs(
    trajectories: Float[np.ndarray | Array, "t s x y c"], history: int
) -> tuple[Float[np.ndarray, "p x y hc"], Float[np.ndarray, "p x y c"]]:
    """(past, target) windows of every trajectory, never across two trajectories.

    Args:
        trajectories: (trajectories, snapshots, *spatial, c).
        history: past snapshots per forecast.
    Returns:
        past (t * (snapshots - history), *spatial, history * c): snapshots ``j - history .. j - 1``
        concatenated on the channel axis, oldest first (what `last_snapshot_base` expects), and
        target (t * (snapshots - history), *spatial, c): snapshot ``j``; trajectory-major order.
    """
    traj = np.asarray(trajectories)
    t, s = traj.shape[:2]
    targets = target_indices(s, history)
    # windows[:, w, h] = snapshot targets[w] - history + h
    windows = traj[:, targets[:, None] - history + np.arange(history)]
    past = np.moveaxis(windows, 2, -2).reshape(t * len(targets), *traj.shape[2:-1], -1)
    target = traj[:, targets].reshape(t * len(targets), *traj.shape[2:])
    return past, target


def conditioning(
    past: Float[Array | np.ndarray, "b x y h"],
    viscosity: Float[Array | np.ndarray, " b"],
    config: KolmogorovForecast,
) -> dict[str, Array]:
    """The network's cond: the past snapshots (oldest first) and ``reference_viscosity / nu``."""
    return {"field": jnp.asarray(past), "params": config.parameter(viscosity)}


def residual_model(config: KolmogorovForecast) -> Residual:
    """Residual diffusion around the last past snapshot ``cond["field"][..., -1:]``."""
    return Residual(last_snapshot_base(1, field="field"))


def extrapolation(cond: Mapping[str, Array]) -> Float[Array, "b x y 1"]:
    """Linear extrapolation ``2 x_n - x_{n-1}`` from the last two past snapshots."""
    field = cond["field"]
    return 2 * field[..., -1:] - field[..., -2:-1]


def generate_split(
    key: PRNGKeyArray, config: KolmogorovForecast, viscosity: float, n_trajectories: int
) -> tuple[Float[np.ndarray, "p x y h"], Float[np.ndarray, "p x y 1"]]:
    """`forecast_pairs` of `n_trajectories` fresh trajectories at one viscosity (unnormalised)."""
    traj = generate_trajectories(key, config, viscosity, n_trajectories)
    return forecast_pairs(traj, config.history)


def evaluate_forecast(
    model: FLEX,
    params: Any,
    splits: Mapping[str, tuple[Field, Mapping[str, Array]]],
    key: PRNGKeyArray,
    config: KolmogorovForecast,
    *,
    steps: Sequence[int] = (2, 16),
    n_members: int = 8,
    regression: tuple[FLEX, Any] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of FLEX-<n>-step ensembles and of the deterministic baselines on every split.

    Args:
        splits: name (e.g. "nu=0.002", "heldout nu=0.003") -> (normalised targets, cond).
        steps: DDIM step counts to evaluate.
        n_members: ensemble members per condition (see `ensemble_metrics`).
        regression: (model, params) of a `train_regression` model, scored as "regression".
    Returns:
        ``{split: {"persistence": {...}, "extrapolation": {...}, ["regression": {...},]
        "flex_2": {...}, ..., "variance": {...}}}``, normalised units except the dimensionless
        ones. Spectrum errors are over the whole resolved band ``1 <= k <= n / 3`` (the solver's
        2/3 de-aliasing limit); the data range for PSNR/SSIM is each target's own range.
    """
    residual = residual_model(config)
    band = {"k_min": 0, "k_max": config.n // 3}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, (name, (x, cond)) in enumerate(splits.items()):
        x = jnp.asarray(x)
        row = {
            "persistence": deterministic_metrics(residual.base_fn(cond), x, **band),
            "extrapolation": deterministic_metrics(extrapolation(cond), x, **band),
        }
        if regression is not None:
            pred = predict_regression(*regression, cond, residual=residual)
            row["regression"] = deterministic_metrics(pred, x, **band)
        key_i = jax.random.fold_in(key, i)
        row |= score_ensembles(model, params, cond, x, key_i, residual, steps, n_members, band)
        row["variance"] = residual_variance(x, cond, residual)
        out[name] = row
    return out


def checkpoint_metadata(model: FLEX, task: KolmogorovForecast, scale: float) -> dict[str, Any]:
    """Checkpoint metadata of a FLEX forecaster trained on `task` with fields divided by
    `scale` (`sciml.diffusion.kolmogorov.checkpoint_metadata`; config.task.kind "forecast")."""
    return kolmogorov.checkpoint_metadata(
        model, task, scale, cond_channels=task.history, data={"history": task.history}
    )


def task_from_metadata(meta: Mapping[str, Any]) -> KolmogorovForecast:
    """The `KolmogorovForecast` a checkpoint was trained on (metadata config.task)."""
    return kolmogorov.task_from_metadata(meta, KolmogorovForecast, "scripts/flex_forecast.py")


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
) -> dict[str, Any]:
    """Draw one-step forecast ensembles from a trained FLEX on fresh data, score and plot them.

    Generates `n_trajectories` trajectories of the checkpoint's task at `viscosity` (default:
    the held-out one), samples `n_members` DDIM (`n_steps`) members per forecast (snapshots -
    history per trajectory) and writes to `out_dir` (`write_sample_report`): samples.npz
    (truth, base = persistence, members (m, b, n, n, 1) in physical units), ensemble_<i>.png,
    spectra.png, pull.png and report.json (metrics of persistence and of the ensemble in
    normalised units, as `evaluate_forecast`). `ddim_options`: further `ddim` keywords
    (``eta``, ``t_min``, ``denoise_last``), default FLEX's deterministic DDIM.
    """
    task = task_from_metadata(meta)
    nu = task.test_viscosities[0] if viscosity is None else float(viscosity)
    scale = float(meta["data"]["std"][0])
    k_data, k_sample = jax.random.split(key)
    past, truth = generate_split(k_data, task, nu, n_trajectories)
    past, truth = past / scale, truth / scale
    cond = conditioning(past, np.full((len(truth),), nu), task)
    residual = residual_model(task)
    samples = sample_ensemble(
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
        band={"k_min": 0, "k_max": task.n // 3},
        baseline="persistence",
        title=f"nu = {nu:g}, forecast {task.spacing:g} ahead, FLEX {n_steps} DDIM steps",
        spectra_title=f"nu = {nu:g}; one-step forecast ({task.spacing:g} time units)",
    )
