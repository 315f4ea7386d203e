"""Analytic solution families with their constraints: the tasks of constrained generation (ECI).

Fields are time-major and channels-last, (batch, n_t, n_x, 1), the layout of the
`sciml.constraints` builders (``(time, *space)``): a constraint built on the (n_t, n_x) grid acts
on a one-channel sample unchanged. The formulas and parameter samplers are
`sciml.pde.analytic`'s:

- `StokesTask`: ``u = 2 exp(-k y) cos(k y - w t)``, (t, y) in [0, 1]^2, k ~ U[2, 20],
  w ~ U[2, 8]; the IC ``u(0, y) = 2 exp(-k y) cos(k y)`` fixes k, the wall BC
  ``u(t, 0) = 2 cos(w t)`` fixes w (ECI's tests: k = 5, w = 6).
- `HeatTask`: ``u = sin(x + phi) exp(-nu t)``, x on the periodic grid of [0, 2 pi); IC (fixes
  phi) and the conservation ``int u(t, x) dx = 0``.
- `PorousMediumTask`: ``u = (m relu(t - x))^(1/m)``; the BC ``u(t, 0) = (m t)^(1/m)`` fixes m,
  the IC is ``u(0, x) = 0``, and the mass ``int u(t, x) dx`` (trapezoid rule on the grid).
- `StefanTask`: the one-phase Stefan solution (`sciml.pde.analytic.stefan_solution`), a moving
  front ``s(t) = 2 lambda(p*) sqrt(t)``, p* ~ U[0.55, 0.7]; IC ``u(0, x) = 1{x = 0}`` and the
  Dirichlet BC ``u(t, 0) = 1``, ``u(t, 1) = 0`` (the front stays inside), the same for every p*.
- `DarcyTask` (not time-major: fields (batch, n, n, 1) on the unit square): Darcy solutions
  (`sciml.pde.darcy.DarcyDataset`, the FNO recipe), scaled, plus a random constant offset
  ``u = scale u0 + c``, c ~ U[-2, 2] (ECI's data); the boundary values ``u = c`` fix c.

The sample metrics (`mmse`, `smse`, `constraint_error`) are in `sciml.metrics`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, PRNGKeyArray

from sciml.constraints import (
    LinearConstraint,
    boundary_value_constraint,
    conservation_constraint,
    initial_value_constraint,
    slice_constraint,
    trapezoid_weights,
    value_constraint,
)
from sciml.pde.analytic import (
    HeatModeDataset,
    PorousMediumWaveDataset,
    StefanDataset,
    StokesDataset,
    heat_mode,
    porous_medium_wave,
    stefan_front_coefficient,
    stokes_second_problem,
)
from sciml.pde.darcy import DarcyDataset

Fields = Float[np.ndarray, "b t x 1"]


def _fixed(value: float | None, default: tuple[float, float]) -> tuple[float, float]:
    return default if value is None else (float(value), float(value))


def _fields(dataset, key: PRNGKeyArray, n: int) -> np.ndarray:
    return dataset.generate(key, n).fields["u"][..., None].astype(np.float32)


@dataclasses.dataclass(frozen=True)
class StokesTask:
    """Stokes' second problem on an n_t x n_y grid of [0, 1]^2 (both ends included).

    Attributes:
        n_t, n_y: grid points in time and in the wall distance y.
        k_range, w_range: the uniform parameter ranges.
    """

    n_t: int = 100
    n_y: int = 100
    k_range: tuple[float, float] = (2.0, 20.0)
    w_range: tuple[float, float] = (2.0, 8.0)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_t, n_y), the grid a constraint acts on."""
        return (self.n_t, self.n_y)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(t (n_t,), y (n_y,))."""
        return np.linspace(0.0, 1.0, self.n_t), np.linspace(0.0, 1.0, self.n_y)

    def sample(
        self, key: PRNGKeyArray, n: int, *, k: float | None = None, w: float | None = None
    ) -> Fields:
        """n fields (n, n_t, n_y, 1), float32; `k` or `w` given fixes that parameter."""
        dataset = StokesDataset(
            n_t=self.n_t,
            n_x=self.n_y,
            k_range=_fixed(k, self.k_range),
            w_range=_fixed(w, self.w_range),
        )
        return _fields(dataset, key, n)

    def sample_with_parameters(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Fields, Float[np.ndarray, "b 2"]]:
        """n fields as `sample` draws them and their parameters (k, w), shape (n, 2)."""
        dataset = StokesDataset(
            n_t=self.n_t, n_x=self.n_y, k_range=self.k_range, w_range=self.w_range
        )
        params = dataset.parameters(key, n)
        return _fields(dataset, key, n), np.stack([params["k"], params["w"]], axis=1)

    def ic_constraint(self, k: float) -> LinearConstraint:
        """``u(0, y) = 2 exp(-k y) cos(k y)``: n_y rows."""
        t, y = self.grid()
        return initial_value_constraint(self.shape, stokes_second_problem(t[0], y, k, 0.0))

    def bc_constraint(self, w: float) -> LinearConstraint:
        """The wall ``u(t, 0) = 2 cos(w t)``: n_t rows."""
        t, _ = self.grid()
        return slice_constraint(self.shape, np.s_[:, 0], stokes_second_problem(t, 0.0, 0.0, w))


@dataclasses.dataclass(frozen=True)
class HeatTask:
    """``u = sin(x + phi) exp(-nu t)`` on the periodic grid of [0, 2 pi), t in [0, t_final].

    Attributes:
        n_t, n_x: grid points.
        nu_range, phi_range: the uniform parameter ranges.
        t_final: final time.
    """

    n_t: int = 100
    n_x: int = 100
    nu_range: tuple[float, float] = (1.0, 5.0)
    phi_range: tuple[float, float] = (0.0, float(np.pi))
    t_final: float = 1.0

    @property
    def shape(self) -> tuple[int, int]:
        """(n_t, n_x)."""
        return (self.n_t, self.n_x)

    def _dataset(self, nu: float | None = None, phi: float | None = None) -> HeatModeDataset:
        return HeatModeDataset(
            n_t=self.n_t,
            n_x=self.n_x,
            nu_range=_fixed(nu, self.nu_range),
            phi_range=_fixed(phi, self.phi_range),
            t_final=self.t_final,
        )

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(t (n_t,), x (n_x,))."""
        return self._dataset().grid()

    def sample(
        self, key: PRNGKeyArray, n: int, *, nu: float | None = None, phi: float | None = None
    ) -> Fields:
        """n fields (n, n_t, n_x, 1), float32; `nu` or `phi` given fixes that parameter."""
        return _fields(self._dataset(nu, phi), key, n)

    def ic_constraint(self, phi: float) -> LinearConstraint:
        """``u(0, x) = sin(x + phi)``: n_x rows."""
        t, x = self.grid()
        return initial_value_constraint(self.shape, heat_mode(t[0], x, 1.0, phi))

    def conservation_constraint(self, first_time: int = 0) -> LinearConstraint:
        """``int_0^{2 pi} u(t, x) dx = 0`` (periodic trapezoid rule) at times ``first_time..``."""
        _, x = self.grid()
        weights = trapezoid_weights(x, period=2 * np.pi)
        return conservation_constraint(
            weights, np.zeros(self.n_t - first_time), first_time=first_time
        )


@dataclasses.dataclass(frozen=True)
class PorousMediumTask:
    """``u = (m relu(t - x))^(1/m)`` on an n_t x n_x grid of [0, 1]^2.

    Attributes:
        n_t, n_x: grid points.
        m_range: the uniform range of m.
    """

    n_t: int = 100
    n_x: int = 100
    m_range: tuple[float, float] = (1.0, 6.0)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_t, n_x)."""
        return (self.n_t, self.n_x)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(t (n_t,), x (n_x,))."""
        return np.linspace(0.0, 1.0, self.n_t), np.linspace(0.0, 1.0, self.n_x)

    def sample(self, key: PRNGKeyArray, n: int, *, m: float | None = None) -> Fields:
        """n fields (n, n_t, n_x, 1), float32; `m` given fixes it."""
        dataset = PorousMediumWaveDataset(
            n_t=self.n_t, n_x=self.n_x, m_range=_fixed(m, self.m_range)
        )
        return _fields(dataset, key, n)

    def bc_constraint(self, m: float, first_time: int = 0) -> LinearConstraint:
        """``u(t, 0) = (m t)^(1/m)`` at times ``first_time..``."""
        t, _ = self.grid()
        values = porous_medium_wave(t[first_time:], 0.0, m)
        return slice_constraint(self.shape, np.s_[first_time:, 0], values)

    def ic_constraint(self) -> LinearConstraint:
        """``u(0, x) = 0``."""
        return initial_value_constraint(self.shape, 0.0)

    def mass_constraint(self, m: float, first_time: int = 0) -> LinearConstraint:
        """``sum_x w_x u(t, x) = sum_x w_x u_true(t, x)`` (trapezoid w), times ``first_time..``."""
        t, x = self.grid()
        weights = trapezoid_weights(x)
        totals = porous_medium_wave(t[:, None], x[None, :], m) @ jnp.asarray(weights)
        return conservation_constraint(weights, totals[first_time:], first_time=first_time)


@dataclasses.dataclass(frozen=True)
class StefanTask:
    """The one-phase Stefan problem on an n_t x n_x grid of [0, t_final] x [0, 1].

    ``u = 1 - (1 - p*) erf(x / (2 sqrt t)) / erf(lambda)`` behind the front
    ``x <= s(t) = 2 lambda sqrt(t)``, 0 ahead of it (`sciml.pde.analytic.stefan_solution`).

    Attributes:
        n_t, n_x: grid points.
        p_star_range: the uniform range of p*, the value at the front (ECI / ProbConserv: 0.55-0.7).
        t_final: final time (the front must stay inside x < 1 up to it).
    """

    n_t: int = 100
    n_x: int = 100
    p_star_range: tuple[float, float] = (0.55, 0.7)
    t_final: float = 0.1

    def __post_init__(self):
        if not 0 < self.p_star_range[0] <= self.p_star_range[1] < 1:
            raise ValueError(f"p_star_range must lie in (0, 1), got {self.p_star_range}")
        if self.front(self.t_final, self.p_star_range[0]) >= 1:
            raise ValueError(
                f"the front of p* = {self.p_star_range[0]} reaches x = 1 before t_final ="
                f" {self.t_final}: lower t_final (the BC u(t, 1) = 0 would not hold)"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(n_t, n_x)."""
        return (self.n_t, self.n_x)

    def _dataset(self, p_star: float | None = None) -> StefanDataset:
        return StefanDataset(
            n_t=self.n_t,
            n_x=self.n_x,
            p_star_range=_fixed(p_star, self.p_star_range),
            t_final=self.t_final,
        )

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(t (n_t,), x (n_x,))."""
        return self._dataset().grid()

    @staticmethod
    def front(t: float | np.ndarray, p_star: float) -> np.ndarray:
        """The front position ``s(t) = 2 lambda(p*) sqrt(t)``, t's shape (0-d for a float)."""
        return np.asarray(2 * np.asarray(stefan_front_coefficient(p_star)) * np.sqrt(t))

    def sample(self, key: PRNGKeyArray, n: int, *, p_star: float | None = None) -> Fields:
        """n fields (n, n_t, n_x, 1), float32; `p_star` given fixes it."""
        return _fields(self._dataset(p_star), key, n)

    def ic_constraint(self) -> LinearConstraint:
        """``u(0, x) = 1{x = 0}`` (``u(0, 0) = 1`` as in ProbConserv): n_x rows."""
        _, x = self.grid()
        return initial_value_constraint(self.shape, (x == 0).astype(float))

    def bc_constraint(self, first_time: int = 0) -> LinearConstraint:
        """``u(t, 0) = 1``, ``u(t, 1) = 0`` at times ``first_time..`` (1 to stack with the IC)."""
        return boundary_value_constraint(self.shape, left=1.0, right=0.0, first_time=first_time)


@dataclasses.dataclass(frozen=True)
class DarcyTask:
    """Darcy flow with a random boundary offset: ``u = scale u0 + c`` on n x n nodes of [0, 1]^2.

    u0 solves ``-div(a grad u0) = 1``, ``u0 = 0`` on the boundary, for the FNO-recipe
    coefficient a (`sciml.pde.darcy.DarcyDataset` with its defaults, solved on this grid); ECI
    scales by 100 (u0 is of order 0.01) and draws c ~ U[-2, 2]. Fields are (b, n_x, n_y, 1).

    Attributes:
        n: nodes per side (boundary included).
        offset_range: the uniform range of c.
        scale: the factor on u0.
    """

    n: int = 33
    offset_range: tuple[float, float] = (-2.0, 2.0)
    scale: float = 100.0

    @property
    def shape(self) -> tuple[int, int]:
        """(n, n)."""
        return (self.n, self.n)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(x (n,), y (n,))."""
        return np.linspace(0.0, 1.0, self.n), np.linspace(0.0, 1.0, self.n)

    def sample_with_parameters(
        self, key: PRNGKeyArray, n: int, *, offset: float | None = None
    ) -> tuple[Fields, Float[np.ndarray, "b 1"]]:
        """n fields (n, n, n, 1), float32, and their offsets c (n, 1); `offset` given fixes c."""
        key_solve, key_offset = jax.random.split(key)
        dataset = DarcyDataset(resolution=self.n, n_solve=self.n)
        u0 = dataset.generate(key_solve, n).fields["u"][:, 0]
        low, high = _fixed(offset, self.offset_range)
        c = np.asarray(jax.random.uniform(key_offset, (n, 1), minval=low, maxval=high))
        fields = self.scale * u0 + c[:, :, None]
        return fields[..., None].astype(np.float32), c

    def sample(self, key: PRNGKeyArray, n: int, *, offset: float | None = None) -> Fields:
        """n fields (n, n, n, 1), float32; `offset` given fixes c."""
        return self.sample_with_parameters(key, n, offset=offset)[0]

    def boundary_constraint(self, offset: float) -> LinearConstraint:
        """``u = offset`` on the 4 (n - 1) boundary nodes."""
        edge = np.ones(self.shape, bool)
        edge[1:-1, 1:-1] = False
        return value_constraint(edge, offset)
