"""DdQq velocity sets, the second-order equilibrium and the hydrodynamic moments.

Populations are stored channels-first, ``f`` of shape ``(Q, *space)``: each population is one
contiguous field, so streaming is a whole-array shift per population and the collision reads Q
aligned streams. The same fused step stored ``(*space, Q)`` needs strided slices per population;
on CPU it measured 1.3x slower for D2Q9 at 512^2 and 2.8x slower for D3Q19 at 64^3
(`scripts/bench_lbm.py`, fields ``layout_q_first_MLUPS`` / ``layout_q_last_MLUPS``). On GPUs the
channels-first layout is also the coalesced one (neighbouring threads read neighbouring nodes).
Velocities are ``(D, *space)`` for the same reason; ``jnp.moveaxis(u, 0, -1)`` gives the
project's channels-last convention.

Lattice units throughout: dx = dt = 1, sound speed squared ``cs2 = 1/3``, kinematic viscosity
``nu = cs2 (tau - 1/2)``.
"""

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

CS2 = 1.0 / 3.0
"""Lattice sound speed squared of every velocity set here."""

# Shape-annotated array types (aliases keep the jaxtyping shape strings out of annotations).
Populations = Float[Array, "q *space"]
"""Populations ``(Q, *space)``."""
ScalarField = Float[Array, "*space"]
"""A scalar field ``(*space)`` such as the density."""
VectorField = Float[Array, "d *space"]
"""A vector field ``(D, *space)`` such as the velocity or a body-force density."""
VectorFieldLike = Float[Array | np.ndarray, "d *space"]
"""A vector field given as a JAX or NumPy array."""
Mask = Bool[Array | np.ndarray, "*space"]
"""A boolean field ``(*space)`` such as a solid mask."""


@dataclasses.dataclass(frozen=True)
class Lattice:
    """A velocity set: integer velocities ``c_i`` and weights ``w_i``, with ``sum_i w_i = 1``.

    The rest velocity is index 0; `opposite[i]` is the index of ``-c_i``. Frozen and hashable, so
    it can sit in a problem's static (meta) fields.

    Attributes:
        name: e.g. ``"D2Q9"``.
        velocities: Q tuples of D integers in {-1, 0, 1}.
        weights: Q weights.
    """

    name: str
    velocities: tuple[tuple[int, ...], ...]
    weights: tuple[float, ...]

    @property
    def d(self) -> int:
        return len(self.velocities[0])

    @property
    def q(self) -> int:
        return len(self.velocities)

    @property
    def c(self) -> np.ndarray:
        """Velocities as an int array ``(Q, D)``."""
        return np.array(self.velocities, dtype=np.int64)

    @property
    def w(self) -> np.ndarray:
        """Weights as a float64 array ``(Q,)``."""
        return np.array(self.weights, dtype=np.float64)

    @functools.cached_property
    def opposite(self) -> tuple[int, ...]:
        """``opposite[i] = j`` with ``c_j = -c_i``."""
        index = {v: i for i, v in enumerate(self.velocities)}
        return tuple(index[tuple(-x for x in v)] for v in self.velocities)

    def __repr__(self) -> str:
        return self.name


def _velocity_set(name: str, d: int, weight_by_norm: dict[int, Fraction]) -> Lattice:
    """All ``c in {-1,0,1}^d`` whose squared norm has a weight, sorted by norm then lexically."""
    vs = [
        v
        for v in itertools.product((0, 1, -1), repeat=d)
        if sum(x * x for x in v) in weight_by_norm
    ]
    vs.sort(key=lambda v: (sum(x * x for x in v), [(-x if x else 2) for x in v]))
    weights = tuple(float(weight_by_norm[sum(x * x for x in v)]) for v in vs)
    assert sum(weight_by_norm[sum(x * x for x in v)] for v in vs) == 1
    return Lattice(name, tuple(vs), weights)


D2Q9 = _velocity_set("D2Q9", 2, {0: Fraction(4, 9), 1: Fraction(1, 9), 2: Fraction(1, 36)})
D3Q19 = _velocity_set("D3Q19", 3, {0: Fraction(1, 3), 1: Fraction(1, 18), 2: Fraction(1, 36)})
D3Q27 = _velocity_set(
    "D3Q27",
    3,
    {0: Fraction(8, 27), 1: Fraction(2, 27), 2: Fraction(1, 54), 3: Fraction(1, 216)},
)


def _dot(c: Sequence[int], v: Sequence[Array | float]) -> Array | float:
    """``c . v`` for an integer velocity and D fields, skipping zero components."""
    terms = [v[k] if ck == 1 else -v[k] for k, ck in enumerate(c) if ck]
    return sum(terms[1:], terms[0]) if terms else 0.0


def moments_from_planes(
    lattice: Lattice, planes: Sequence[Array], force: Sequence[Array | float] | None = None
) -> tuple[Array, list[Array]]:
    """Density and velocity from a list of Q population fields (the solver's internal form).

    ``rho = sum_i f_i`` and ``rho u = sum_i c_i f_i + F / 2`` (Guo's half-force shift, which makes
    the forced scheme second order).
    """
    rho = sum(planes[1:], planes[0])
    inv = 1.0 / rho
    u = []
    for k in range(lattice.d):
        terms = [
            planes[i] if c[k] == 1 else -planes[i] for i, c in enumerate(lattice.velocities) if c[k]
        ]
        momentum = sum(terms[1:], terms[0])
        if force is not None:
            momentum = momentum + 0.5 * force[k]
        u.append(momentum * inv)
    return rho, u


def equilibrium_planes(
    lattice: Lattice, rho: Array | float, u: Sequence[Array | float]
) -> list[Array | float]:
    """The Q equilibrium fields ``w_i rho (1 + c.u/cs2 + (c.u)^2/(2 cs2^2) - u.u/(2 cs2))``."""
    usq = sum(uk * uk for uk in u)
    out = []
    for c, w in zip(lattice.velocities, lattice.weights, strict=True):
        cu = _dot(c, u) * (1.0 / CS2)
        out.append(w * rho * (1.0 + cu + 0.5 * cu * cu - (0.5 / CS2) * usq))
    return out


def equilibrium(lattice: Lattice, rho: ScalarField, u: VectorField) -> Populations:
    """Second-order (quadratic) Maxwell-Boltzmann equilibrium.

    ``f_i^eq = w_i rho (1 + c_i.u / cs2 + (c_i.u)^2 / (2 cs2^2) - |u|^2 / (2 cs2))``: its zeroth,
    first and second moments are rho, rho u and ``rho (u u + cs2 I)``.

    Args:
        lattice: velocity set.
        rho: density ``(*space)``.
        u: velocity ``(D, *space)``.

    Returns:
        Populations ``(Q, *space)`` in the dtype of ``rho``.

    Example:
        >>> f = equilibrium(D2Q9, jnp.ones((4, 4)), jnp.zeros((2, 4, 4)))
    """
    rho = jnp.asarray(rho)
    return _equilibrium(lattice, rho, jnp.asarray(u, dtype=rho.dtype))


@functools.partial(jax.jit, static_argnums=0)
def _equilibrium(lattice: Lattice, rho: Array, u: Array) -> Array:
    planes = equilibrium_planes(lattice, rho, [u[k] for k in range(lattice.d)])
    return jnp.stack([jnp.broadcast_to(p, rho.shape) for p in planes]).astype(rho.dtype)


def density(f: Populations) -> ScalarField:
    """``rho = sum_i f_i``."""
    return f.sum(axis=0)


def macroscopic(
    lattice: Lattice, f: Populations, force: VectorField | None = None
) -> tuple[ScalarField, VectorField]:
    """Density ``(*space)`` and velocity ``(D, *space)``; with a body force, ``u`` includes F/(2 rho).

    Args:
        lattice: velocity set.
        f: populations ``(Q, *space)``.
        force: body force density ``(D, *space)`` (broadcast a uniform one), or None.
    """
    return _macroscopic(lattice, f, force)


@functools.partial(jax.jit, static_argnums=0)
def _macroscopic(lattice: Lattice, f: Array, force: Array | None) -> tuple[Array, Array]:
    planes = [f[i] for i in range(lattice.q)]
    forces = None if force is None else [force[k] for k in range(lattice.d)]
    rho, u = moments_from_planes(lattice, planes, forces)
    return rho, jnp.stack(u)


def lattice_by_name(name: str) -> Lattice:
    """`D2Q9`, `D3Q19` or `D3Q27` by name."""
    table = {"D2Q9": D2Q9, "D3Q19": D3Q19, "D3Q27": D3Q27}
    if name not in table:
        raise ValueError(f"unknown lattice {name!r}; choose one of {sorted(table)}")
    return table[name]
