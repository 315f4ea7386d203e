"""The quickstart's data: FNO-paper Burgers trajectories u0 -> u(t)."""

import dataclasses

import jax
import numpy as np
from jaxtyping import Array

from sciml.data import Trajectories
from sciml.fields import grid, spectral_resample
from sciml.pde.initial_conditions import gaussian_random_field
from sciml.pde.nonlinear import Burgers


@dataclasses.dataclass(frozen=True)
class BurgersDataset:
    """Burgers on [0, 1) with u0 ~ N(0, sigma^2 (-Lap + tau^2 I)^-alpha) (FNO paper: 625, 5, 2).

    Solved by ETDRK4 at `n_solve` points with step `dt`, stored at `resolution` points (spectral
    resampling) at `n_snapshots` equally spaced times from 0 to `t_final`.
    """

    viscosity: float = 0.1
    n_solve: int = 512
    resolution: int = 128
    dt: float = 1e-3
    t_final: float = 1.0
    n_snapshots: int = 5
    grf_sigma: float = 25.0
    grf_tau: float = 5.0
    grf_alpha: float = 2.0

    def __post_init__(self):
        steps = self.t_final / self.dt
        if abs(steps - round(steps)) > 1e-9 or round(steps) % (self.n_snapshots - 1):
            raise ValueError(
                f"t_final / dt = {steps:g} must be an integer multiple of n_snapshots - 1 = {self.n_snapshots - 1}"
            )

    def generate(self, key: Array, n_trajectories: int) -> Trajectories:
        """`n_trajectories` solutions, field 'u' shaped (trajectory, n_snapshots, resolution)."""
        u = np.asarray(self._solve(key, n_trajectories))
        return Trajectories(
            fields={"u": u},
            time=np.linspace(0.0, self.t_final, self.n_snapshots),
            coords={"x": grid(self.resolution)},
            boundary={"x": "PERIODIC"},
            scalars={"viscosity": self.viscosity},
        )

    @jax.jit(static_argnums=(0, 2))
    def _solve(self, key: Array, n_trajectories: int) -> Array:
        solver = Burgers(shape=(self.n_solve,), length=1.0, viscosity=self.viscosity, dt=self.dt)
        u0 = jax.vmap(
            lambda k: gaussian_random_field(
                k, (self.n_solve,), sigma=self.grf_sigma, tau=self.grf_tau, alpha=self.grf_alpha
            )
        )(jax.random.split(key, n_trajectories))
        n_steps = round(self.t_final / self.dt)
        save_every = n_steps // (self.n_snapshots - 1)
        traj = jax.vmap(lambda u: solver.rollout(u[:, None], n_steps, save_every))(u0)
        return spectral_resample(traj, self.resolution)[..., 0]
