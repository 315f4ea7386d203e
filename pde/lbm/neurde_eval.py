"""NeurDE evaluation: a long autoregressive rollout scored against the teacher, and its plot."""

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sciml.pde.lbm.compressible import sod_interface
from sciml.pde.lbm.neurde import Equilibrium, PyTree, RolloutFields, neural_rollout
from sciml.pde.lbm.riemann import riemann_solution
from sciml.pde.lbm.teacher import TeacherTrajectory, shock_position, sod_reference


def _relative_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Relative L2 error over space at each time of ``(time, *space)`` arrays."""
    axes = tuple(range(1, truth.ndim))
    diff = np.sqrt(((pred - truth) ** 2).sum(axes))
    return diff / np.maximum(np.sqrt((truth**2).sum(axes)), 1e-30)


def evaluate_rollout(
    equilibrium: Equilibrium,
    params: PyTree,
    teacher: TeacherTrajectory,
    start: int,
    n_steps: int,
    *,
    dtype: Any = None,
    moment_iterations: int = 0,
) -> tuple[dict[str, Any], RolloutFields]:
    """Roll out `n_steps` from the teacher's state at `start` and compare with the teacher.

    Metrics: per field (rho, ux, T) the relative L2 error over space, its mean over the steps
    ``start + 1 .. start + n_steps`` and its value at the last one; the total energy
    ``E = sum g / 2`` drift ``E(end) / E(start) - 1`` of the rollout and of the teacher; for Sod
    teachers, the shock position (`shock_position`, searched right of the exact contact) at the
    last step: the rollout's, the teacher's, the exact one and the rollout-teacher offset in cells.

    ``finite_steps`` counts the steps before the first non-finite field (errors are NaN after).
    `moment_iterations`: see `neural_step`.

    Returns:
        ``(metrics, fields)`` with the rollout's `RolloutFields` as NumPy arrays.
    """
    dtype = dtype or teacher.f.dtype
    rollout = functools.partial(
        neural_rollout, equilibrium, n_steps=n_steps, moment_iterations=moment_iterations
    )
    f0, g0 = (jnp.asarray(a[start], dtype) for a in (teacher.f, teacher.g))
    pred = RolloutFields(*jax.device_get(jax.jit(rollout)(params, teacher.problem, f0, g0)))
    times = slice(start, start + n_steps + 1)
    truth = {"rho": teacher.rho[times], "ux": teacher.u[times, 0], "T": teacher.T[times]}
    metrics: dict[str, Any] = {"start": start, "n_steps": n_steps}
    for name, value in truth.items():
        errors = _relative_errors(np.asarray(getattr(pred, name), np.float64)[1:], value[1:])
        metrics[f"{name}_rel_l2_mean"] = float(errors.mean())
        metrics[f"{name}_rel_l2_final"] = float(errors[-1])
        metrics[f"{name}_rel_l2_max"] = float(errors.max())
    energy = 0.5 * teacher.g[times].astype(np.float64).sum(axis=(1, 2, 3))
    metrics["energy_drift"] = float(pred.energy[-1] / pred.energy[0] - 1.0)
    metrics["teacher_energy_drift"] = float(energy[-1] / energy[0] - 1.0)
    metrics["energy_rel_error_final"] = float(abs(pred.energy[-1] / energy[-1] - 1.0))
    finite = np.isfinite(pred.rho).all(axis=(1, 2)) & np.isfinite(pred.T).all(axis=(1, 2))
    metrics["finite_steps"] = int(n_steps if finite.all() else np.argmin(finite) - 1)
    if teacher.case is not None:
        *_, star = sod_reference(teacher.case)
        t, x0 = start + n_steps, sod_interface(teacher.problem.shape[0])
        contact, exact = x0 + star.u * t, x0 + star.right_head * t
        search = contact + 0.25 * (exact - contact)
        diverged = metrics["finite_steps"] < n_steps
        model = np.nan if diverged else shock_position(pred.rho[-1].mean(axis=-1), search)
        reference = shock_position(teacher.rho[start + n_steps].mean(axis=-1), search)
        metrics |= {
            "shock_position": model,
            "teacher_shock_position": reference,
            "exact_shock_position": exact,
            "shock_error_cells": abs(model - reference),
        }
    return metrics, pred


def plot_profiles(
    path: str | Path,
    teacher: TeacherTrajectory,
    pred: RolloutFields,
    start: int,
    steps: list[int],
) -> None:
    """Density, velocity and temperature at `steps`: rollout, teacher and exact Riemann solution.

    Profiles along x (averaged over y); for a 2-D teacher that is not a Sod tube (the cylinder),
    density maps of the teacher, the rollout and their difference instead.
    """
    import matplotlib.pyplot as plt

    import sciml.plotting  # noqa: F401  (selects the Agg backend)

    nx, ny = teacher.problem.shape
    if teacher.case is None and ny > 1:
        _plot_density_maps(path, teacher, pred, start, steps)
        return
    x = np.arange(nx)
    exact = None
    if teacher.case is not None:
        left, right, gamma, star = sod_reference(teacher.case)
        x0, t_max = sod_interface(nx), max(steps)
        lo = max(0, int(x0 + star.left_head * t_max) - 40)
        hi = min(nx, int(x0 + star.right_head * t_max) + 40)
        exact = {t: riemann_solution(left, right, gamma, x, t, x0) for t in steps if t > 0}
    else:
        lo, hi = 0, nx
    rows = (("rho", "density"), ("ux", "velocity u_x"), ("T", "temperature"))
    fig, axes = plt.subplots(3, len(steps), figsize=(4.2 * len(steps), 8), squeeze=False)
    for j, t in enumerate(steps):
        k = t - start
        teacher_fields = {"rho": teacher.rho[t], "ux": teacher.u[t, 0], "T": teacher.T[t]}
        for i, (name, label) in enumerate(rows):
            ax = axes[i, j]
            if exact is not None and t in exact:
                value = {"rho": exact[t].rho, "ux": exact[t].u, "T": exact[t].T}[name]
                ax.plot(x[lo:hi], value[lo:hi], color="0.6", lw=1, label="exact Riemann")
            ax.plot(x[lo:hi], teacher_fields[name].mean(-1)[lo:hi], "k", lw=2, label="teacher")
            ax.plot(x[lo:hi], getattr(pred, name)[k].mean(-1)[lo:hi], "C1--", lw=1.5,
                    label="NeurDE")  # fmt: skip
            if i == 0:
                ax.set_title(f"step {t} ({k} after {start})")
            if j == 0:
                ax.set_ylabel(label)
            if i == 2:
                ax.set_xlabel("x (cells)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_density_maps(
    path: str | Path, teacher: TeacherTrajectory, pred: RolloutFields, start: int, steps: list[int]
) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(steps), figsize=(4.2 * len(steps), 7.5), squeeze=False)
    for j, t in enumerate(steps):
        truth, model = teacher.rho[t], np.asarray(pred.rho[t - start])
        lo, hi = float(truth.min()), float(truth.max())
        rows = (("teacher", truth, lo, hi), ("NeurDE", model, lo, hi))
        rows += (("|NeurDE - teacher|", np.abs(model - truth), 0.0, None),)
        for i, (label, field, vmin, vmax) in enumerate(rows):
            ax = axes[i, j]
            image = ax.imshow(field.T, origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
            fig.colorbar(image, ax=ax, shrink=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{label} density")
        axes[0, j].set_title(f"step {t} ({t - start} after {start})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
