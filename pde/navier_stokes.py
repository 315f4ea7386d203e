"""2D incompressible Navier-Stokes in vorticity form on a periodic box, stepped by ETDRK.

``w_t + u . grad w = nu Lap w - mu w + f``, with velocity ``u = (d_y psi, -d_x psi)`` from the
streamfunction ``Lap psi = -w``. Forcings: none (decaying), Kolmogorov (the vorticity of the body
force ``A sin(n y) e_x``), or the FNO paper's ``A (sin(2 pi (x + y) / L) + cos(2 pi (x + y) / L))``.
"""

from typing import Literal

import jax.numpy as jnp
import numpy as np

from sciml.pde.spectral import Param, SpectralGrid, SpectralProblem, equation


@equation
class NavierStokes2D(SpectralProblem):
    """Vorticity ``w`` of shape (nx, ny, 1); see the module docstring for the equation."""

    viscosity: Param = 1e-3
    drag: Param = 0.0
    forcing: Literal["none", "kolmogorov", "fno"] = "none"
    forcing_amplitude: Param = 1.0
    forcing_wavenumber: int = 4

    def __post_init__(self):
        if len(self.shape) != 2:
            raise ValueError(f"NavierStokes2D needs a 2-D shape, got {self.shape}")

    def linear_operator(self, grid: SpectralGrid):
        return -self.viscosity * grid.k_squared() - self.drag

    def forcing_pattern(self, grid: SpectralGrid) -> np.ndarray:
        """The vorticity forcing for unit amplitude on the grid, shape (1, nx, ny)."""
        x, y = grid.coordinates()
        zero = np.zeros((1, *grid.shape))
        if self.forcing == "none":
            return zero
        if self.forcing == "kolmogorov":
            n = 2 * np.pi * self.forcing_wavenumber / grid.length
            return zero - n * np.cos(n * y)
        phase = 2 * np.pi * (x + y) / grid.length
        return zero + np.sin(phase) + np.cos(phase)

    def forcing_field(self, grid: SpectralGrid):
        """The vorticity forcing f on the grid, shape (1, nx, ny)."""
        return self.forcing_amplitude * self.forcing_pattern(grid)

    def nonlinear(self, w_hat, grid: SpectralGrid):
        k2 = grid.k_squared()
        psi_hat = w_hat * np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
        dx, dy = grid.derivative_factor(0), grid.derivative_factor(1)
        u = grid.to_physical(dy * psi_hat)
        v = grid.to_physical(-dx * psi_hat)
        advection_hat = -grid.forward(
            u * grid.to_physical(dx * w_hat) + v * grid.to_physical(dy * w_hat)
        )
        if self.forcing == "none":
            return advection_hat
        # The forcing's transform is a trace-time constant: no FFT of it in every stage.
        pattern_hat = np.fft.rfftn(self.forcing_pattern(grid), axes=(1, 2))
        return advection_hat + self.forcing_amplitude * jnp.asarray(pattern_hat, dtype=w_hat.dtype)

    def velocity(self, w):
        """Velocity (nx, ny, 2) of vorticity `w` (nx, ny, 1)."""
        grid = self.grid
        w_hat = grid.to_spectral(w)
        k2 = grid.k_squared()
        psi_hat = w_hat * np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
        u = grid.to_physical(grid.derivative_factor(1) * psi_hat)
        v = grid.to_physical(-grid.derivative_factor(0) * psi_hat)
        return jnp.moveaxis(jnp.concatenate([u, v]), 0, -1)
