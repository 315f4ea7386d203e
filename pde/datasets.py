"""Datasets of periodic problems: random initial conditions and parameters, ETDRK trajectories."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from sciml.config import build
from sciml.data import Trajectories
from sciml.fields import spectral_resample
from sciml.pde.initial_conditions import initial_condition
from sciml.pde.spectral import SpectralProblem

_AXES = ("x", "y", "z")


@dataclasses.dataclass(frozen=True)
class SpectralDataset:
    """Trajectories of ``equation`` from random initial conditions (and parameters).

    Attributes:
        equation: the problem, ``{type: sciml.pde.<Equation>, shape: [...], length, dt, order,
            <parameters>}``.
        t_final: time of the last snapshot (after `warmup`).
        n_snapshots: snapshots stored, equally spaced from 0 to `t_final` (both included).
        initial_condition: ``{kind: grf | fourier, ...}``, see `initial_condition`.
        warmup: time simulated and discarded first (to reach a statistically steady regime).
        resolution: points per axis stored (spectral resampling); default the solver's grid.
        sample: parameter name -> [low, high]: drawn uniformly per trajectory.
        field_names: one name per channel of the state.
    """

    equation: dict[str, Any]
    t_final: float
    n_snapshots: int
    initial_condition: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "grf"})
    warmup: float = 0.0
    resolution: int | None = None
    sample: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    field_names: list[str] = dataclasses.field(default_factory=lambda: ["u"])

    def problem(self) -> SpectralProblem:
        return build(self.equation, where="data.generator.equation")

    def generate(self, key: Array, n_trajectories: int) -> Trajectories:
        """`n_trajectories` trajectories, each field (trajectory, n_snapshots, *space)."""
        problem = self.problem()
        if len(self.field_names) != problem.n_channels:
            raise ValueError(
                f"field_names {self.field_names} must name the {problem.n_channels} channels"
            )
        steps, save_every, warm = self._steps(problem)
        k_ic, k_par = jax.random.split(key)
        u0 = jax.vmap(lambda k: initial_condition(k, problem, **self.initial_condition))(
            jax.random.split(k_ic, n_trajectories)
        )
        batched = jax.tree.map(lambda leaf: jnp.full((n_trajectories,), leaf), problem)
        sampled = {}
        for i, (name, (low, high)) in enumerate(sorted(self.sample.items())):
            values = jax.random.uniform(
                jax.random.fold_in(k_par, i), (n_trajectories,), minval=low, maxval=high
            )
            batched = dataclasses.replace(batched, **{name: values})
            sampled[name] = np.asarray(values, dtype=np.float64)
        traj = np.asarray(_solve(batched, u0, warm, steps, save_every))
        if self.resolution is not None:
            traj = np.asarray(spectral_resample(traj, (self.resolution,) * len(problem.shape)))
        n = traj.shape[2]
        fixed = {
            f.name: float(getattr(problem, f.name))
            for f in dataclasses.fields(problem)
            if isinstance(getattr(problem, f.name), float) and f.name not in sampled
        }
        return Trajectories(
            fields={name: traj[..., c] for c, name in enumerate(self.field_names)},
            time=np.linspace(0.0, self.t_final, self.n_snapshots),
            coords={_AXES[d]: np.arange(n) * problem.length / n for d in range(len(problem.shape))},
            boundary={_AXES[d]: "PERIODIC" for d in range(len(problem.shape))},
            scalars={**fixed, **sampled},
        )

    def _steps(self, problem: SpectralProblem) -> tuple[int, int, int]:
        steps = self.t_final / problem.dt
        warm = self.warmup / problem.dt
        intervals = self.n_snapshots - 1
        if (
            abs(steps - round(steps)) > 1e-6
            or round(steps) % intervals
            or abs(warm - round(warm)) > 1e-6
        ):
            raise ValueError(
                f"t_final / dt = {steps:g} must be an integer multiple of n_snapshots - 1 = {intervals},"
                f" and warmup / dt = {warm:g} an integer"
            )
        return round(steps), round(steps) // intervals, round(warm)


@jax.jit(static_argnums=(2, 3, 4))
def _solve(problems: SpectralProblem, u0: Array, warm: int, steps: int, save_every: int) -> Array:
    def one(problem, u):
        if warm:
            u = problem.rollout(u, warm, warm)[-1]
        return problem.rollout(u, steps, save_every)

    return jax.vmap(one)(problems, u0)
