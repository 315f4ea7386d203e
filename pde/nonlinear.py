"""Nonlinear periodic problems stepped by ETDRK: Burgers, KdV, Kuramoto-Sivashinsky,
Allen-Cahn, Cahn-Hilliard, Fisher-KPP, Gray-Scott and Swift-Hohenberg.

Each class states its equation; L (stiff, linear) is integrated exactly and N by the ETDRK stages.
Quadratic terms are dealiased with the 2/3 rule, cubic ones with the 1/2 rule.
"""

from typing import ClassVar

import jax.numpy as jnp

from sciml.pde.spectral import Param, SpectralGrid, SpectralProblem, equation


@equation
class Burgers(SpectralProblem):
    """``u_t + 1/2 sum_d d_d(u^2) = nu Lap u`` (in 1D: ``u_t + u u_x = nu u_xx``)."""

    viscosity: Param = 0.01

    def linear_operator(self, grid: SpectralGrid):
        return -self.viscosity * grid.k_squared()

    def nonlinear(self, u_hat, grid: SpectralGrid):
        u2_hat = grid.forward(grid.to_physical(u_hat) ** 2)
        return -0.5 * sum(grid.derivative_factor(d) * u2_hat for d in range(grid.ndim))


@equation
class KdV(SpectralProblem):
    """Korteweg-de Vries ``u_t + a u u_x + b u_xxx = 0`` in 1D.

    With a = 6, b = 1 the soliton ``u = c/2 sech^2(sqrt(c)/2 (x - c t - x0))`` travels at speed c.
    """

    convection: Param = 6.0
    dispersion: Param = 1.0

    def linear_operator(self, grid: SpectralGrid):
        return -self.dispersion * grid.derivative_factor(0, 3)

    def nonlinear(self, u_hat, grid: SpectralGrid):
        u2_hat = grid.forward(grid.to_physical(u_hat) ** 2)
        return -0.5 * self.convection * grid.derivative_factor(0) * u2_hat


@equation
class KuramotoSivashinsky(SpectralProblem):
    """Kuramoto-Sivashinsky in gradient (combustion) form ``u_t + Lap u + Lap^2 u + |grad u|^2 / 2 = 0``.

    Any dimension; in 1D, v = u_x solves the conservative form ``v_t + v v_x + v_xx + v_xxxx = 0``.
    """

    def linear_operator(self, grid: SpectralGrid):
        k2 = grid.k_squared()
        return k2 - k2**2

    def nonlinear(self, u_hat, grid: SpectralGrid):
        grad_sq = sum(
            grid.to_physical(grid.derivative_factor(d) * u_hat) ** 2 for d in range(grid.ndim)
        )
        return -0.5 * grid.forward(grad_sq)


class _Cubic(SpectralProblem):
    dealias_fraction: ClassVar[float] = 1 / 2


@equation
class AllenCahn(_Cubic):
    """``u_t = eps^2 Lap u + u - u^3``."""

    epsilon: Param = 0.1

    def linear_operator(self, grid: SpectralGrid):
        return 1.0 - self.epsilon**2 * grid.k_squared()

    def nonlinear(self, u_hat, grid: SpectralGrid):
        return -grid.forward(grid.to_physical(u_hat) ** 3)


@equation
class CahnHilliard(_Cubic):
    """``u_t = Lap(u^3 - u - gamma Lap u)``; conserves the mean of u."""

    gamma: Param = 1e-2

    def linear_operator(self, grid: SpectralGrid):
        k2 = grid.k_squared()
        return k2 - self.gamma * k2**2

    def nonlinear(self, u_hat, grid: SpectralGrid):
        return -grid.k_squared() * grid.forward(grid.to_physical(u_hat) ** 3)


@equation
class FisherKPP(SpectralProblem):
    """``u_t = nu Lap u + r u (1 - u)``."""

    viscosity: Param = 0.01
    reactivity: Param = 1.0

    def linear_operator(self, grid: SpectralGrid):
        return self.reactivity - self.viscosity * grid.k_squared()

    def nonlinear(self, u_hat, grid: SpectralGrid):
        return -self.reactivity * grid.forward(grid.to_physical(u_hat) ** 2)


@equation
class GrayScott(_Cubic):
    """Gray-Scott, channels (u, v): ``u_t = D_u Lap u - u v^2 + F (1 - u)``,
    ``v_t = D_v Lap v + u v^2 - (F + kappa) v``."""

    n_channels: ClassVar[int] = 2
    diffusivity_u: Param = 2e-5
    diffusivity_v: Param = 1e-5
    feed: Param = 0.04
    kill: Param = 0.06

    def linear_operator(self, grid: SpectralGrid):
        k2 = grid.k_squared()
        lin_u = -self.diffusivity_u * k2 - self.feed
        lin_v = -self.diffusivity_v * k2 - (self.feed + self.kill)
        return jnp.concatenate([lin_u, lin_v])

    def nonlinear(self, u_hat, grid: SpectralGrid):
        u, v = grid.to_physical(u_hat)
        uv2 = u * v**2
        return grid.forward(jnp.stack([self.feed - uv2, uv2]))


@equation
class SwiftHohenberg(_Cubic):
    """``u_t = r u - (1 + Lap)^2 u + g u^2 - u^3``."""

    reactivity: Param = 0.7
    quadratic: Param = 1.0

    def linear_operator(self, grid: SpectralGrid):
        return self.reactivity - (1.0 - grid.k_squared()) ** 2

    def nonlinear(self, u_hat, grid: SpectralGrid):
        u = grid.to_physical(u_hat)
        return grid.forward(self.quadratic * u**2 - u**3)
