"""Collision operators (BGK, TRT) with Guo's body-force source, one population at a time.

Each operator maps the pre-collision populations of one cell to post-collision ones. The solver
calls `relax(lattice, i, f_i, f_opp, rho, u, force)` once per population so that XLA fuses the
collision of population i with its streaming shift (one pass over memory per population).

Guo, Zheng & Shi (2002) source, with the velocity ``u = (sum c f + F/2) / rho``:
``S_i = w_i [ (c_i - u) . F / cs2 + (c_i . u)(c_i . F) / cs2^2 ]``, added as ``(1 - omega/2) S_i``
(BGK), or its symmetric / antisymmetric halves with ``(1 - omega_+/2)`` / ``(1 - omega_-/2)`` (TRT).
"""

import dataclasses
from collections.abc import Sequence

import jax
from jaxtyping import Array

from sciml.pde.lbm.lattices import CS2, Lattice, _dot
from sciml.pde.spectral import Param


def _pytree(cls: type) -> type:
    """Frozen keyword-only dataclass whose fields are all pytree leaves (traceable, vmappable)."""
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


def _parts(
    lattice: Lattice,
    i: int,
    rho: Array,
    u: Sequence[Array],
    force: Sequence[Array | float] | None,
) -> tuple[Array, Array, Array | float, Array | float]:
    """Even and odd parts (under c -> -c) of f_i^eq and of Guo's source S_i."""
    c, w = lattice.velocities[i], lattice.weights[i]
    cu = _dot(c, u) * (1.0 / CS2)
    usq = sum(uk * uk for uk in u)
    eq_even = w * rho * (1.0 + 0.5 * cu * cu - (0.5 / CS2) * usq)
    eq_odd = w * rho * cu
    if force is None:
        return eq_even, eq_odd, 0.0, 0.0
    cf = _dot(c, force) * (1.0 / CS2)
    uf = sum(uk * fk for uk, fk in zip(u, force, strict=True)) * (1.0 / CS2)
    return eq_even, eq_odd, w * (cu * cf - uf), w * cf


@_pytree
class BGK:
    """Single relaxation time: ``f_i' = f_i - (f_i - f_i^eq) / tau + (1 - 1/(2 tau)) S_i``.

    Attributes:
        tau: relaxation time (> 1/2); kinematic viscosity ``nu = (tau - 1/2) / 3``.
    """

    tau: Param

    @property
    def viscosity(self) -> Param:
        return CS2 * (self.tau - 0.5)

    def relax(
        self,
        lattice: Lattice,
        i: int,
        f_i: Array,
        f_opp: Array,
        rho: Array,
        u: Sequence[Array],
        force: Sequence[Array | float] | None,
    ) -> Array:
        """Post-collision population i (``f_opp`` is unused by BGK)."""
        del f_opp
        omega = 1.0 / self.tau
        eq_even, eq_odd, src_even, src_odd = _parts(lattice, i, rho, u, force)
        out = f_i - omega * (f_i - (eq_even + eq_odd))
        if force is not None:
            out = out + (1.0 - 0.5 * omega) * (src_even + src_odd)
        return out


@_pytree
class TRT:
    """Two relaxation times (Ginzburg): even part relaxes with ``tau``, odd part with ``tau_-``.

    ``Lambda = (tau - 1/2)(tau_- - 1/2)`` is the "magic" parameter fixing ``tau_-``. With
    ``Lambda = 3/16`` half-way bounce-back puts the wall exactly half-way for Poiseuille flow;
    ``Lambda = 1/4`` is the usual stability-optimal choice (the default).

    Attributes:
        tau: even (viscous) relaxation time; ``nu = (tau - 1/2) / 3``.
        magic: Lambda.
    """

    tau: Param
    magic: Param = 0.25

    @property
    def viscosity(self) -> Param:
        return CS2 * (self.tau - 0.5)

    @property
    def tau_odd(self) -> Param:
        return 0.5 + self.magic / (self.tau - 0.5)

    def relax(
        self,
        lattice: Lattice,
        i: int,
        f_i: Array,
        f_opp: Array,
        rho: Array,
        u: Sequence[Array],
        force: Sequence[Array | float] | None,
    ) -> Array:
        """Post-collision population i from ``f_i`` and its opposite ``f_opp``."""
        omega_even, omega_odd = 1.0 / self.tau, 1.0 / self.tau_odd
        eq_even, eq_odd, src_even, src_odd = _parts(lattice, i, rho, u, force)
        f_even, f_odd = 0.5 * (f_i + f_opp), 0.5 * (f_i - f_opp)
        out = f_i - omega_even * (f_even - eq_even) - omega_odd * (f_odd - eq_odd)
        if force is not None:
            out = out + (1.0 - 0.5 * omega_even) * src_even + (1.0 - 0.5 * omega_odd) * src_odd
        return out


Collision = BGK | TRT
