"""Linear periodic problems: advection, diffusion, advection-diffusion, dispersion (N = 0).

With no nonlinearity, ETDRK integrates them exactly: every Fourier mode is multiplied by e^(dt L).
"""

import jax.numpy as jnp
import numpy as np

from sciml.pde.spectral import Param, SpectralGrid, SpectralProblem, equation


class _Linear(SpectralProblem):
    def nonlinear(self, u_hat, grid: SpectralGrid):
        return jnp.zeros_like(u_hat)


def _advection_operator(grid: SpectralGrid, velocity: tuple[float, ...]) -> np.ndarray:
    if len(velocity) != grid.ndim:
        raise ValueError(f"velocity {velocity} must have one component per axis ({grid.ndim})")
    return -sum(c * grid.derivative_factor(d) for d, c in enumerate(velocity))


@equation
class Advection(_Linear):
    """``u_t + c . grad u = 0``; exact solution ``u0(x - c t)``."""

    velocity: tuple[float, ...] = (1.0,)

    def linear_operator(self, grid):
        return _advection_operator(grid, self.velocity)


@equation
class Diffusion(_Linear):
    """The heat equation ``u_t = nu Lap u``."""

    viscosity: Param = 0.01

    def linear_operator(self, grid):
        return -self.viscosity * grid.k_squared()


@equation
class AdvectionDiffusion(_Linear):
    """``u_t + c . grad u = nu Lap u``."""

    velocity: tuple[float, ...] = (1.0,)
    viscosity: Param = 0.01

    def linear_operator(self, grid):
        return _advection_operator(grid, self.velocity) - self.viscosity * grid.k_squared()


@equation
class Dispersion(_Linear):
    """``u_t = gamma sum_d d^3 u / dx_d^3`` (Airy equation in 1D)."""

    coefficient: Param = 1.0

    def linear_operator(self, grid):
        return self.coefficient * sum(grid.derivative_factor(d, 3) for d in range(grid.ndim))
