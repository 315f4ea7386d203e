"""Closed-form solution families of the constrained-generation papers (ECI, ProbConserv, ProbHardE2E).

Each family is a pure function of (t, x) and its parameters, broadcasting like numpy (evaluate on a
space-time grid with ``t[:, None]`` and ``x[None, :]``), differentiable by `jax.grad` away from
fronts, plus a frozen-dataclass generator that samples the parameters per trajectory and returns
`Trajectories` with the field "u" shaped (trajectory, n_t, n_x):

- Stokes' second problem ``u = 2 exp(-k y) cos(k y - w t)``: ``u_t = nu u_yy``, ``nu = w / (2 k^2)``,
  driven by the oscillating wall ``u(0, t) = 2 cos(w t)``;
- heat ``u = sin(x + phi) exp(-nu t)`` on the periodic [0, 2 pi): ``u_t = nu u_xx``;
- porous medium ``u = (m relu(t - x))^(1/m)``: ``u_t = (u^m u_x)_x`` with ``u(0, t) = (m t)^(1/m)``
  and a front at x = t;
- the one-phase Stefan problem of ProbConserv, ``u_t = (k(u) u_x)_x`` with ``k = 1{u >= p*}``,
  ``u(0, t) = 1``, ``u(x, 0) = 0`` (see `stefan_solution`).
"""

import abc
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from jaxtyping import Array, ArrayLike, Float

from sciml.data import Trajectories
from sciml.fields import grid as periodic_grid


def stokes_second_problem(
    t: Float[ArrayLike, "*t"], y: Float[ArrayLike, "*y"], k: Float[ArrayLike, ""], w
) -> Float[Array, "*shape"]:
    """Stokes' second problem ``u = 2 exp(-k y) cos(k y - w t)``.

    Flow above a wall oscillating as ``2 cos(w t)``; solves ``u_t = nu u_yy`` with
    ``nu = w / (2 k^2)`` (see `stokes_viscosity`).

    Args:
        t, y: time and wall distance, broadcastable against each other.
        k: decay wavenumber; w: angular frequency of the wall.
    Returns:
        u, with the broadcast shape of t and y.
    """
    t, y = jnp.asarray(t), jnp.asarray(y)
    return 2 * jnp.exp(-k * y) * jnp.cos(k * y - w * t)


def stokes_viscosity(k, w):
    """The viscosity ``nu = w / (2 k^2)`` for which `stokes_second_problem` solves ``u_t = nu u_yy``."""
    return w / (2 * k**2)


def heat_mode(
    t: Float[ArrayLike, "*t"], x: Float[ArrayLike, "*x"], nu: Float[ArrayLike, ""], phi
) -> Float[Array, "*shape"]:
    """A decaying Fourier mode ``u = sin(x + phi) exp(-nu t)``, solving ``u_t = nu u_xx`` (2 pi-periodic)."""
    t, x = jnp.asarray(t), jnp.asarray(x)
    return jnp.sin(x + phi) * jnp.exp(-nu * t)


def porous_medium_wave(
    t: Float[ArrayLike, "*t"], x: Float[ArrayLike, "*x"], m: Float[ArrayLike, ""]
) -> Float[Array, "*shape"]:
    """The travelling wave ``u = (m relu(t - x))^(1/m)`` of ``u_t = (u^m u_x)_x``.

    Behind the front (``s = t - x > 0``): ``u^m = m s``, so ``u^m u_x = -(m s)^(1/m)`` and
    ``(u^m u_x)_x = (m s)^(1/m - 1) = u_t``; ahead of it u = 0. The boundary value is
    ``u(0, t) = (m t)^(1/m)``, and the flux ``u^m u_x`` vanishes at the front x = t.
    """
    t, x = jnp.asarray(t), jnp.asarray(x)
    return (m * jax.nn.relu(t - x)) ** (1 / m)


def porous_medium_mass(t: Float[ArrayLike, "*t"], m) -> Float[Array, "*t"]:
    """``int_0^1 porous_medium_wave(t, x, m) dx = m^(1/m) (t^a - relu(t - 1)^a) / a``, ``a = 1 + 1/m``."""
    t = jnp.asarray(t)
    a = 1 + 1 / m
    return m ** (1 / m) * (t**a - jax.nn.relu(t - 1) ** a) / a


def stefan_front_coefficient(p_star: Float[ArrayLike, "*p"]) -> Float[Array, "*p"]:
    """The root lambda of ``sqrt(pi) lambda exp(lambda^2) erf(lambda) = (1 - p*) / p*``.

    It sets the Stefan front ``s(t) = 2 lambda sqrt(t)``. Newton's method on
    ``g(lambda) = sqrt(pi) lambda exp(lambda^2) erf(lambda)``, which is increasing and convex on
    lambda > 0, so from any start right of the root the iterates decrease to it monotonically. The
    start is the smaller of two such upper bounds: ``sqrt(St / 2)`` (as ``g >= 2 lambda^2``) and
    ``max(sqrt(log St), 0.8)`` (as ``g(x) >= St`` there); with it, 8 iterations reach round-off for
    every p* in [0.01, 0.99] (measured in float64); 12 are run.
    """
    p_star = jnp.asarray(p_star)
    stefan_number = (1 - p_star) / p_star

    def newton(_, lam):
        growth = jnp.sqrt(jnp.pi) * jnp.exp(lam**2) * erf(lam)
        slope = growth * (1 + 2 * lam**2) + 2 * lam
        return lam - (lam * growth - stefan_number) / slope

    start = jnp.minimum(
        jnp.sqrt(stefan_number / 2),
        jnp.maximum(jnp.sqrt(jnp.log(jnp.maximum(stefan_number, 1))), 0.8),
    )
    return jax.lax.fori_loop(0, 12, newton, start)


def stefan_solution(
    t: Float[ArrayLike, "*t"], x: Float[ArrayLike, "*x"], p_star: Float[ArrayLike, ""]
) -> Float[Array, "*shape"]:
    """One-phase Stefan similarity solution of ``u_t = (k(u) u_x)_x``, ``k = 1{u >= p*}``.

    With ``u(0, t) = 1`` and ``u(x, 0) = 0``, the conducting region ``u >= p*`` is ``x <= s(t)``
    with ``s = 2 lambda sqrt(t)`` (lambda from `stefan_front_coefficient`); there u solves the heat
    equation with ``u(s, t) = p*``, and ahead of the front k = 0 keeps u = 0. Across the front
    u jumps from p* to 0, and conservation of u (Rankine-Hugoniot) ties its speed to the flux:
    ``p* s'(t) = -u_x(s-, t)``. The similarity ansatz ``u = 1 - c erf(x / (2 sqrt t))`` with
    ``c = (1 - p*) / erf(lambda)`` satisfies both front conditions exactly when lambda solves
    ``sqrt(pi) lambda exp(lambda^2) erf(lambda) = (1 - p*) / p*``. As in ProbConserv, u(0, 0) = 1.

    Returns:
        u, with the broadcast shape of t and x.
    """
    t, x = jnp.asarray(t), jnp.asarray(x)
    lam = stefan_front_coefficient(p_star)
    # t = 0 only keeps x = 0 inside the region; a unit placeholder avoids 0/0 there (and NaN grads).
    safe_t = jnp.where(t > 0, t, 1.0)
    inside = 1 - (1 - p_star) * erf(x / (2 * jnp.sqrt(safe_t))) / erf(lam)
    return jnp.where(x <= 2 * lam * jnp.sqrt(t), inside, 0.0)


def stefan_mass(t: Float[ArrayLike, "*t"], p_star) -> Float[Array, "*t"]:
    """``int_0^inf stefan_solution dx = 2 (1 - p*) sqrt(t / pi) / erf(lambda)``, the inflow through x = 0."""
    t = jnp.asarray(t)
    return 2 * (1 - p_star) * jnp.sqrt(t / jnp.pi) / erf(stefan_front_coefficient(p_star))


@dataclasses.dataclass(frozen=True)
class _AnalyticDataset(abc.ABC):
    """Shared sampling and packaging; subclasses fill in the ranges, the grid and the formula."""

    n_t: int = 100
    n_x: int = 100
    parameter_fields: bool = False

    space_name = "x"
    boundary_type = "WALL"

    @abc.abstractmethod
    def ranges(self) -> dict[str, tuple[float, float]]:
        """Parameter name -> (low, high) of its uniform distribution."""

    @abc.abstractmethod
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(times (n_t,), positions (n_x,))."""

    @abc.abstractmethod
    def solution(self, t: Array, x: Array, **parameters: Array) -> Array:
        """The family's closed form at broadcastable (t, x) for one set of parameters."""

    def parameters(self, key: Array, n_trajectories: int) -> dict[str, np.ndarray]:
        """Per-trajectory parameters, name -> (n,), exactly those `generate(key, n)` uses."""
        ranges = self.ranges()
        keys = jax.random.split(key, len(ranges))
        return {
            name: np.asarray(jax.random.uniform(k, (n_trajectories,), minval=low, maxval=high))
            for k, (name, (low, high)) in zip(keys, ranges.items(), strict=True)
        }

    def generate(self, key: Array, n_trajectories: int) -> Trajectories:
        """`n_trajectories` fields "u" shaped (trajectory, n_t, n_x), parameters ~ U[ranges]."""
        params = self.parameters(key, n_trajectories)
        t, x = self.grid()
        u = jax.vmap(lambda p: self.solution(jnp.asarray(t)[:, None], jnp.asarray(x)[None], **p))(
            {name: jnp.asarray(v) for name, v in params.items()}
        )
        fields = {"u": np.asarray(u)}
        if self.parameter_fields:
            for name, value in params.items():
                fields[name] = np.broadcast_to(value[:, None, None], u.shape).copy()
        scalars = {}
        for name, (low, high) in self.ranges().items():
            scalars[f"{name}_low"], scalars[f"{name}_high"] = float(low), float(high)
        return Trajectories(
            fields=fields,
            time=t,
            coords={self.space_name: x},
            boundary={self.space_name: self.boundary_type},
            scalars=scalars,
        )


@dataclasses.dataclass(frozen=True)
class StokesDataset(_AnalyticDataset):
    """ECI's Stokes task: ``u = 2 exp(-k y) cos(k y - w t)``, y and t in [0, 1] (both ends included).

    k ~ U[k_range], w ~ U[w_range]; a degenerate range fixes a parameter (the IC task fixes k = 5,
    the BC task w = 6).
    """

    k_range: tuple[float, float] = (2.0, 20.0)
    w_range: tuple[float, float] = (2.0, 8.0)

    space_name = "y"

    def ranges(self):
        return {"k": self.k_range, "w": self.w_range}

    def grid(self):
        return np.linspace(0.0, 1.0, self.n_t), np.linspace(0.0, 1.0, self.n_x)

    def solution(self, t, x, *, k, w):
        return stokes_second_problem(t, x, k, w)


@dataclasses.dataclass(frozen=True)
class HeatModeDataset(_AnalyticDataset):
    """``u = sin(x + phi) exp(-nu t)``, x on the periodic grid of [0, 2 pi), t in [0, t_final].

    nu ~ U[nu_range], phi ~ U[phi_range] (ECI: [1, 5] and [0, pi]).
    """

    nu_range: tuple[float, float] = (1.0, 5.0)
    phi_range: tuple[float, float] = (0.0, float(np.pi))
    t_final: float = 1.0

    boundary_type = "PERIODIC"

    def ranges(self):
        return {"nu": self.nu_range, "phi": self.phi_range}

    def grid(self):
        return np.linspace(0.0, self.t_final, self.n_t), periodic_grid(self.n_x, 2 * np.pi)

    def solution(self, t, x, *, nu, phi):
        return heat_mode(t, x, nu, phi)


@dataclasses.dataclass(frozen=True)
class PorousMediumWaveDataset(_AnalyticDataset):
    """``u = (m relu(t - x))^(1/m)``, x and t in [0, 1], m ~ U[m_range] (ECI: [1, 6])."""

    m_range: tuple[float, float] = (1.0, 6.0)

    def ranges(self):
        return {"m": self.m_range}

    def grid(self):
        return np.linspace(0.0, 1.0, self.n_t), np.linspace(0.0, 1.0, self.n_x)

    def solution(self, t, x, *, m):
        return porous_medium_wave(t, x, m)


@dataclasses.dataclass(frozen=True)
class StefanDataset(_AnalyticDataset):
    """`stefan_solution` on x in [0, 1], t in [0, t_final], p* ~ U[p_star_range].

    ProbConserv / ProbHardE2E: p* in [0.55, 0.7], t in [0, 0.1] (the front reaches x ~ 0.33).
    """

    p_star_range: tuple[float, float] = (0.55, 0.7)
    t_final: float = 0.1

    def ranges(self):
        return {"p_star": self.p_star_range}

    def grid(self):
        return np.linspace(0.0, self.t_final, self.n_t), np.linspace(0.0, 1.0, self.n_x)

    def solution(self, t, x, *, p_star):
        return stefan_solution(t, x, p_star)
