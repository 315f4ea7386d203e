"""Boundary conditions: half-way bounce-back on solid cells (fixed or moving) and edge conditions.

Solid cells (a boolean mask) reflect populations half-way along each fluid-solid link (the wall
sits half a cell from the last fluid node): after streaming, a fluid node x whose upstream node
``x - c_i`` is solid receives ``f_i(x) = f_opp(i)'(x) + 2 w_i rho(x) (c_i . u_w) / cs2``, with
``u_w`` the velocity of that solid cell (Ladd's moving-wall term; zero for walls at rest).

Edge conditions act on the first or last plane of a spatial axis after streaming, where the
populations that entered from outside the box (``c_i . n > 0``, n the inward normal) are unknown:

- `ZouHeVelocity` / `ZouHePressure`: Zou & He (1997) non-equilibrium bounce-back
  ``f_i = f_opp(i) + 2 w_i rho (c_i . u) / cs2 - sum_t (c_i . t) N_t`` with the transverse
  correction N_t chosen so the prescribed velocity (or density, with zero tangential velocity) holds
  exactly. The same closure covers D2Q9, D3Q19 and D3Q27 (their velocities are in {-1, 0, 1}).
- `EquilibriumEdge`: every population of the plane set to ``f^eq(rho_b, u_b)``.
- `OutflowEdge`: extrapolation (zero-gradient) outflow, the unknown populations copied from the
  next plane inside.

A body force is not accounted for in the Zou-He closure (it sets the bare first moment).
"""

import abc
import dataclasses
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array

from sciml.pde.lbm.lattices import CS2, Lattice, equilibrium_planes
from sciml.pde.lbm.streaming import shift
from sciml.pde.spectral import Param

Side = Literal["low", "high"]


def _edge(cls: type) -> type:
    """Frozen keyword-only dataclass, pytree with `axis`/`side` static and the values as leaves."""
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    meta = [n for n in names if n in ("axis", "side")]
    return jax.tree_util.register_dataclass(
        cls, data_fields=[n for n in names if n not in meta], meta_fields=meta
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Edge(abc.ABC):
    """A condition on the plane ``index 0`` (side "low") or ``-1`` ("high") of spatial `axis`."""

    axis: int
    side: Side

    @property
    def normal(self) -> int:
        """Sign of the inward normal along `axis`."""
        return 1 if self.side == "low" else -1

    def validate(self, lattice: Lattice, shape: tuple[int, ...]) -> None:
        if not 0 <= self.axis < len(shape):
            raise ValueError(
                f"{type(self).__name__}: axis {self.axis} outside a {len(shape)}-D box"
            )
        if self.side not in ("low", "high"):
            raise ValueError(
                f"{type(self).__name__}: side must be 'low' or 'high', got {self.side!r}"
            )

    def uniform(self) -> bool:
        """True when every value is a scalar (the condition is the same along the plane)."""
        return all(jnp.ndim(v) == 0 for v in jax.tree.leaves(self))

    @abc.abstractmethod
    def complete(self, lattice: Lattice, plane: list[Array], inner: list[Array]) -> list[Array]:
        """New Q populations of the edge plane from the streamed ones and the next plane inside."""

    def apply(
        self, lattice: Lattice, planes: Sequence[Array], enabled: Array | None = None
    ) -> list[Array]:
        """Overwrite the edge plane of each of the Q fields (only where `enabled`, if given)."""
        index, inner_index = (0, 1) if self.side == "low" else (-1, -2)
        take = lambda p, j: jax.lax.index_in_dim(p, j, self.axis, keepdims=False)  # noqa: E731
        old = [take(p, index) for p in planes]
        new = self.complete(lattice, old, [take(p, inner_index) for p in planes])
        at = (slice(None),) * self.axis + (index,)
        out = []
        for p, o, n in zip(planes, old, new, strict=True):
            n = jnp.broadcast_to(jnp.asarray(n, p.dtype), o.shape)
            out.append(p.at[at].set(n if enabled is None else jnp.where(enabled, n, o)))
        return out

    def _groups(self, lattice: Lattice) -> tuple[list[int], list[int], list[int]]:
        """Indices with ``c . n`` zero (tangential), negative (leaving) and positive (unknown)."""
        cn = [c[self.axis] * self.normal for c in lattice.velocities]
        return (
            [i for i, v in enumerate(cn) if v == 0],
            [i for i, v in enumerate(cn) if v < 0],
            [i for i, v in enumerate(cn) if v > 0],
        )

    def _zou_he(
        self,
        lattice: Lattice,
        plane: list[Array],
        rho: Array | float,
        u: Sequence[Array | float],
    ) -> list[Array]:
        """Unknown populations by non-equilibrium bounce-back with transverse momentum correction."""
        tangential, _, unknown = self._groups(lattice)
        out = list(plane)
        corrections = []
        for t in range(lattice.d):
            if t == self.axis:
                continue
            # N_t makes sum_i c_it f_i = rho u_t; a and s are lattice constants of this edge.
            a = sum(2 * lattice.weights[i] * lattice.velocities[i][t] ** 2 for i in unknown) / CS2
            s = sum(lattice.velocities[i][t] ** 2 for i in unknown)
            moment = sum(lattice.velocities[i][t] * plane[i] for i in tangential)
            corrections.append((t, (moment - (1.0 - a) * rho * u[t]) / s))
        for i in unknown:
            c, w = lattice.velocities[i], lattice.weights[i]
            value = plane[lattice.opposite[i]] + (2 * w / CS2) * rho * sum(
                ck * u[k] for k, ck in enumerate(c) if ck
            )
            for t, n_t in corrections:
                if c[t]:
                    value = value - c[t] * n_t
            out[i] = value
        return out

    def _known_mass(self, lattice: Lattice, plane: list[Array]) -> Array:
        """``sum_tangential f + 2 sum_leaving f`` = ``rho (1 - u.n)``."""
        tangential, leaving, _ = self._groups(lattice)
        return sum(plane[i] for i in tangential) + 2 * sum(plane[i] for i in leaving)


def _velocity_components(velocity: Sequence[Param] | Array, d: int) -> list[Param]:
    components = [velocity[k] for k in range(d)]
    if len(velocity) != d:
        raise ValueError(f"velocity has {len(velocity)} components, the lattice is {d}-D")
    return components


@_edge
class ZouHeVelocity(Edge):
    """Prescribed velocity on an edge (Zou-He); the density follows from the known populations.

    Attributes:
        axis, side: the edge.
        velocity: D components, each a float or an array over the edge plane (a profile).
    """

    velocity: tuple[Param, ...] | Array

    def complete(self, lattice, plane, inner):
        u = _velocity_components(self.velocity, lattice.d)
        rho = self._known_mass(lattice, plane) / (1.0 - self.normal * u[self.axis])
        return self._zou_he(lattice, plane, rho, u)


@_edge
class ZouHePressure(Edge):
    """Prescribed density (pressure ``cs2 rho``) with zero tangential velocity (Zou-He).

    Attributes:
        axis, side: the edge.
        density: a float or an array over the edge plane.
    """

    density: Param

    def complete(self, lattice, plane, inner):
        rho = self.density
        u_normal = self.normal * (1.0 - self._known_mass(lattice, plane) / rho)
        u = [u_normal if k == self.axis else 0.0 for k in range(lattice.d)]
        return self._zou_he(lattice, plane, rho, u)


@_edge
class EquilibriumEdge(Edge):
    """All populations of the edge plane set to the equilibrium of a given density and velocity."""

    density: Param = 1.0
    velocity: tuple[Param, ...] | Array | None = None

    def complete(self, lattice, plane, inner):
        u = (
            [0.0] * lattice.d
            if self.velocity is None
            else _velocity_components(self.velocity, lattice.d)
        )
        return equilibrium_planes(lattice, self.density, u)


@_edge
class OutflowEdge(Edge):
    """Extrapolation outflow: unknown populations copied from the neighbouring interior plane."""

    def complete(self, lattice, plane, inner):
        _, _, unknown = self._groups(lattice)
        return [inner[i] if i in unknown else p for i, p in enumerate(plane)]


def solid_links(lattice: Lattice, solid: Array) -> list[Array]:
    """Per population, the fluid nodes whose upstream neighbour ``x - c_i`` is solid ``(*space)``."""
    fluid = ~solid
    return [shift(solid, c) & fluid for c in lattice.velocities]


def wall_terms(lattice: Lattice, wall_velocity: Array) -> list[Array]:
    """Per population, ``2 w_i (c_i . u_w(x - c_i)) / cs2`` (times rho gives Ladd's wall term)."""
    out = []
    for c, w in zip(lattice.velocities, lattice.weights, strict=True):
        cu = sum(ck * wall_velocity[k] for k, ck in enumerate(c) if ck)
        out.append(shift((2 * w / CS2) * cu, c) if any(c) else jnp.zeros_like(wall_velocity[0]))
    return out
