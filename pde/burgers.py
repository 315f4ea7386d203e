"""Viscous Burgers equation ``u_t + u u_x = nu u_xx`` on a periodic interval, by ETDRK4.

Pseudo-spectral in space (2/3-rule dealiasing of the quadratic term), ETDRK4 in time. This is the
quickstart's data generator; the full generator suite builds on the same pieces.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from sciml.pde.etdrk import etdrk4_coefficients, etdrk4_step
from sciml.pde.initial_conditions import gaussian_random_field

from sciml.data import Trajectories
from sciml.fields import grid, spectral_resample, wavenumbers


@dataclasses.dataclass(frozen=True)
class Burgers1D:
    """Burgers on [0, length) with `n` points, stepped by ETDRK4 with step `dt`."""

    n: int = 512
    viscosity: float = 0.1
    length: float = 1.0
    dt: float = 1e-3

    def step_fn(self, dtype=jnp.float32):
        """A pure ``step(u) -> u after dt`` on one (n,) field, jit- and vmap-able."""
        k = wavenumbers(self.n, self.length, real=True)
        coeffs = etdrk4_coefficients(-self.viscosity * k**2, self.dt, dtype=_complex(dtype))
        dealias = jnp.asarray(np.abs(k) < (2 / 3) * np.abs(k).max(), dtype=dtype)
        minus_half_ik = jnp.asarray(-0.5j * k, dtype=_complex(dtype)) * dealias

        def nonlinear(v_hat: Array) -> Array:
            u = jnp.fft.irfft(v_hat * dealias, n=self.n)
            return minus_half_ik * jnp.fft.rfft(u * u)

        def step(u: Float[Array, " n"]) -> Float[Array, " n"]:
            v = etdrk4_step(jnp.fft.rfft(u), coeffs, nonlinear)
            return jnp.fft.irfft(v, n=self.n).astype(dtype)

        return step

    def rollout(self, u0: Float[Array, " n"], n_steps: int, save_every: int) -> Float[Array, "t n"]:
        """States at steps 0, save_every, ..., n_steps (n_steps must be a multiple of save_every)."""
        step = self.step_fn(u0.dtype)

        def advance(u, _):
            u = jax.lax.fori_loop(0, save_every, lambda _, v: step(v), u)
            return u, u

        _, saved = jax.lax.scan(advance, u0, None, length=n_steps // save_every)
        return jnp.concatenate([u0[None], saved])


def _complex(dtype) -> np.dtype:
    return np.dtype(np.complex128 if jnp.dtype(dtype) == jnp.float64 else np.complex64)


@dataclasses.dataclass(frozen=True)
class BurgersDataset:
    """FNO-paper Burgers data: u0 ~ N(0, 625 (-Lap + 25 I)^-2) on [0, 1), nu = 0.1, u0 -> u(t).

    Solved at `n_solve` points with step `dt`, stored at `resolution` points (spectral resampling)
    at `n_snapshots` equally spaced times from 0 to `t_final`.
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
        solver = Burgers1D(n=self.n_solve, viscosity=self.viscosity, dt=self.dt)
        u0 = jax.vmap(
            lambda k: gaussian_random_field(
                k, (self.n_solve,), sigma=self.grf_sigma, tau=self.grf_tau, alpha=self.grf_alpha
            )
        )(jax.random.split(key, n_trajectories))
        n_steps = round(self.t_final / self.dt)
        traj = jax.vmap(lambda u: solver.rollout(u, n_steps, n_steps // (self.n_snapshots - 1)))(u0)
        return spectral_resample(traj[..., None], self.resolution)[..., 0]
