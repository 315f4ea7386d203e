"""NeurDE: a learned energy equilibrium inside the compressible lattice-Boltzmann solver.

After Lara Benitez et al., "Neural equilibria for long-term prediction of nonlinear conservation
laws" (arXiv 2501.06933) and its public release (JALB-epsilon/NeurDE). The solver
(`CompressibleProblem`) keeps streaming and the analytic ``f^eq``; a network replaces the
per-cell Newton solve of the Levermore energy equilibrium,

    g_i^eq = exp(a(rho, ux, uy, T) . b(c_i)),

a branch MLP ``a`` of the local macroscopic state and a trunk MLP ``b`` of the (shifted) lattice
velocity ``c_i``: an exponential family that contains the teacher's ``log g^eq``. This module holds
the network, the solver step with it (`neural_step`, `neural_rollout`) and the two training losses:

1. supervised relative-L2 regression of ``g^eq`` on the teacher's first steps (`equilibrium_loss`);
2. rollouts of N steps with the network inside the solver, loss per step against the teacher's
   ``g^eq`` (`rollout_loss`): the state carried with gradients stopped (as released) or true
   backpropagation through time (``bptt=True``, `jax.checkpoint` per step).

The teacher data are made by `sciml.pde.lbm.teacher`, the long rollout is scored by
`sciml.pde.lbm.neurde_eval`, and `sciml.pde.lbm.neurde_train.train_neurde` runs all of it from a
config (``configs/neurde_sod2.yaml``).

Not in the paper, optional (``moment_iterations``, `neural_step`): the solver may tilt the learned
``g^eq`` onto its conserved moments (two Newton iterations, `match_energy_moments`) before the
collision. The rollout is very sensitive to moment errors of ``g^eq``; at CPU-sized training
(~1e-3 relative L2) the bare head diverges within ~30 steps, the tilted one stays within 1e-4.

Layouts follow `sciml.pde.lbm.compressible`: populations ``(9, nx, ny)``; the network is
channels-last, ``(*cells, 4) -> (*cells, 9)``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.losses import relative_l2
from sciml.nn import MLP
from sciml.pde.lbm.compressible import (
    COMPRESSIBLE_VELOCITIES,
    CompressibleProblem,
    g_equilibrium,
    solve_levermore,
)
from sciml.pde.lbm.lattices import Populations

PyTree = Any
Equilibrium = Callable[[PyTree, Float[Array, "*cells 4"]], Float[Array, "*cells 9"]]
"""``equilibrium(params, macro) -> g_eq``: (rho, ux, uy, T) channels-last to the nine ``g_i^eq``."""

MACRO_FIELDS = ("density", "velocity_x", "velocity_y", "temperature")

# ---------------------------------------------------------------------------- the network


def lattice_velocities(shift: float | Array = 0.0, dtype: Any = jnp.float32) -> Float[Array, "9 2"]:
    """The shifted D2Q9 velocities ``c_i = c_i0 + (U, 0)`` in the solver's order, ``(9, 2)``."""
    c = jnp.asarray(COMPRESSIBLE_VELOCITIES, dtype)
    return c + jnp.stack([jnp.asarray(shift, dtype), jnp.zeros((), dtype)])[None]


class NeurDE(nn.Module):
    """``g_i^eq = exp(a(rho, ux, uy, T) . b(c_i))`` for every cell.

    Branch ``a``: 4 -> width x depth; trunk ``b``: 2 -> width x depth; ReLU between layers, none
    on the last. ``b`` depends only on the lattice, so it is evaluated once per call (per solver
    step) on the nine shifted velocities, as the release does. Width 64 (25,472 parameters) for
    the Sod tubes, 32 (6,592) for the cylinder. Inputs are the raw lattice-unit fields.

    Attributes:
        width: hidden and output width of both MLPs.
        depth: number of Dense layers of each MLP.
        shift: the lattice shift U along x the trunk sees (the solver's `shift`).
    """

    width: int = 64
    depth: int = 4
    shift: float = 0.0

    @nn.compact
    def __call__(self, macro: Float[Array, "*cells 4"]) -> Float[Array, "*cells 9"]:
        features = [self.width] * self.depth
        a = MLP(features, activation=nn.relu, name="branch")(macro)
        b = MLP(features, activation=nn.relu, name="trunk")(
            lattice_velocities(self.shift, macro.dtype)
        )
        return jnp.exp(a @ b.T)


def _solve_symmetric3(j: tuple[Array, ...], r: tuple[Array, ...]) -> tuple[Array, Array, Array]:
    """``J^-1 r`` per cell for a symmetric 3x3 ``J`` given as six fields (xx xy xz yy yz zz)."""
    a, b, c, d, e, f = j
    cof = (d * f - e * e, c * e - b * f, b * e - c * d, a * f - c * c, b * c - a * e, a * d - b * b)
    det = a * cof[0] + b * cof[1] + c * cof[2]
    r0, r1, r2 = r
    return (
        (cof[0] * r0 + cof[1] * r1 + cof[2] * r2) / det,
        (cof[1] * r0 + cof[3] * r1 + cof[4] * r2) / det,
        (cof[2] * r0 + cof[4] * r1 + cof[5] * r2) / det,
    )


def match_energy_moments(
    g: Float[Array, "*cells 9"],
    macro: Float[Array, "*cells 4"],
    velocities: Float[Array, "9 2"],
    gamma: float | Array,
    iterations: int = 2,
) -> Float[Array, "*cells 9"]:
    """Tilt ``g_i -> g_i exp(l0 + l . c_i)`` towards the energy equilibrium's moments.

    Newton's method from ``l = 0`` on ``sum_i g_i = 2 rho E`` and
    ``sum_i c_i g_i = 2 rho u (E + T)``
    (``E = T / (gamma - 1) + |u|^2 / 2``): Levermore's system with the network's output as the
    base measure instead of ``rho w_i(T)``, as the release's later "constrained" heads do. When
    ``g`` is close, two iterations reach round-off; each step is capped at 1 in max norm.

    The solver needs this consistency: an error e in ``sum g^eq`` changes the energy by about
    ``omega e`` per step (omega ~ 1.8 on Sod 2, where a uniform 1e-3 bias of the exact ``g^eq``
    turns the 500-step rollout to NaN).
    """
    tilted = _tilt_onto_moments(jnp.moveaxis(g, -1, 0), macro, velocities, gamma, iterations)
    return jnp.moveaxis(tilted, 0, -1)


def _tilt_onto_moments(
    g: Populations,
    macro: Float[Array, "*cells 4"],
    velocities: Float[Array, "9 2"],
    gamma: float | Array,
    iterations: int,
) -> Populations:
    """`match_energy_moments` on populations-first ``g``, as the solver holds them.

    One field per population and per unknown, sums over the nine unrolled: 2.5x faster on CPU
    than the same Newton iteration on channels-last ``(*cells, 9)`` arrays with small matmuls.
    """
    rho, ux, uy, T = (macro[..., k] for k in range(4))
    E = T / (gamma - 1.0) + 0.5 * (ux * ux + uy * uy)
    target = (2.0 * rho * E, 2.0 * rho * ux * (E + T), 2.0 * rho * uy * (E + T))
    cx, cy = (velocities[:, k].astype(g.dtype) for k in range(2))
    column = (9,) + (1,) * (g.ndim - 1)

    def tilt(lam):
        return g * jnp.exp(
            lam[0][None] + lam[1][None] * cx.reshape(column) + lam[2][None] * cy.reshape(column)
        )

    def moment(pops, weights=None):
        if weights is None:
            return sum(pops[i] for i in range(9))
        return sum(pops[i] * weights[i] for i in range(9))

    basis = (None, cx, cy)  # the moments' weights: 1, c_x, c_y
    quadratic = (None, cx, cy, cx * cx, cx * cy, cy * cy)  # 1, x, y, xx, xy, yy
    lam = (jnp.zeros_like(rho),) * 3
    for _ in range(iterations):
        tilted = tilt(lam)
        step = _solve_symmetric3(
            tuple(moment(tilted, w) for w in quadratic),
            tuple(moment(tilted, w) - t for w, t in zip(basis, target, strict=True)),
        )
        # Steps capped at 1 (max norm): far from the moments (an untrained network) a full
        # Newton step overflows exp; near them the cap is inactive.
        size = jnp.maximum(jnp.maximum(jnp.abs(step[0]), jnp.abs(step[1])), jnp.abs(step[2]))
        lam = tuple(x - d / jnp.maximum(size, 1.0) for x, d in zip(lam, step, strict=True))
    return tilt(lam)


def count_params(params: PyTree) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def levermore_equilibrium(
    problem: CompressibleProblem, *, max_iter: int = 50, tol: float = 1e-12
) -> Equilibrium:
    """The teacher's closure as an `Equilibrium`: Newton from zero multipliers in every cell.

    A reference and a test double for the network (``params`` is ignored): inside `neural_step`
    it reproduces the teacher to its Newton tolerance.
    """

    def equilibrium(params: PyTree, macro: Array) -> Array:
        rho, ux, uy, T = (macro[..., i] for i in range(4))
        shift = jnp.asarray(problem.shift, macro.dtype)
        solution = solve_levermore(
            jnp.stack([ux, uy]), T, problem.gamma, shift, max_iter=max_iter, tol=tol
        )
        return jnp.moveaxis(g_equilibrium(rho, T, solution.multipliers, shift), 0, -1)

    return equilibrium


# ---------------------------------------------------------------------------- the solver with it


def macro_inputs(
    problem: CompressibleProblem, f: Populations, g: Populations
) -> Float[Array, "*space 4"]:
    """The network's input ``(rho, ux, uy, T)`` (channels-last) from pre-collision populations."""
    m = problem.moments(f, g)
    return jnp.stack([m.rho, m.u[0], m.u[1], m.T], axis=-1)


def neural_step(
    equilibrium: Equilibrium,
    params: PyTree,
    problem: CompressibleProblem,
    f: Populations,
    g: Populations,
    *,
    moment_iterations: int = 0,
) -> tuple[Populations, Populations, Populations]:
    """One solver step with ``g^eq = equilibrium(params, macro)``: ``(f', g', g^eq)``.

    Args:
        moment_iterations: 0 (the paper): the solver relaxes towards ``g^eq`` as given. ``k > 0``:
            towards ``g^eq`` tilted onto the conserved moments by ``k`` Newton iterations
            (`match_energy_moments`); the returned ``g^eq`` is the untilted one either way.
    """
    macro = macro_inputs(problem, f, g)
    g_eq = jnp.moveaxis(equilibrium(params, macro), -1, 0)
    relaxed = g_eq
    if moment_iterations:
        velocities = lattice_velocities(problem.shift, macro.dtype)
        relaxed = _tilt_onto_moments(g_eq, macro, velocities, problem.gamma, moment_iterations)
    f, g = problem.step_with_equilibrium(f, g, relaxed)
    return f, g, g_eq


def equilibrium_loss(pred: Float[Array, "*batch"], target: Float[Array, "*batch"]) -> Array:
    """``||pred - target|| / ||target||``, one norm over the whole batch (the release's loss)."""
    return relative_l2(pred.reshape(1, -1), target.reshape(1, -1))


def rollout_loss(
    equilibrium: Equilibrium,
    params: PyTree,
    problem: CompressibleProblem,
    f: Populations,
    g: Populations,
    targets: Float[Array, "n 9 *space"],
    *,
    bptt: bool = False,
    moment_iterations: int = 0,
) -> tuple[Array, Float[Array, " n"]]:
    """Mean over N solver steps of the relative L2 error of the network's ``g^eq``.

    From the teacher's state at step k, step ``r`` compares ``g^eq`` of the rolled-out state with
    the teacher's ``g^eq`` at step ``k + r`` (``targets[r]``).

    Args:
        bptt: False (the release): the state is carried under `jax.lax.stop_gradient`, so each
            step's loss only trains the equilibrium at the state it sees (on-policy regression).
            True: gradients flow through the whole rollout (backpropagation through time), each
            step rematerialised (`jax.checkpoint`) so memory stays one step's worth.
        moment_iterations: see `neural_step` (the loss is on the untilted ``g^eq``).

    Returns:
        ``(mean loss, per-step losses (n,))``.
    """

    def body(carry, target):
        f, g, g_eq = neural_step(
            equilibrium, params, problem, *carry, moment_iterations=moment_iterations
        )
        if not bptt:
            f, g = jax.lax.stop_gradient((f, g))
        return (f, g), equilibrium_loss(g_eq, target)

    _, losses = jax.lax.scan(jax.checkpoint(body) if bptt else body, (f, g), targets)
    return losses.mean(), losses


class RolloutFields(NamedTuple):
    """Macroscopic history of a rollout: fields ``(n + 1, *space)``, total energy ``(n + 1,)``."""

    rho: Array
    ux: Array
    uy: Array
    T: Array
    energy: Array


def _observe(problem: CompressibleProblem, f: Array, g: Array) -> tuple[Array, ...]:
    m = problem.moments(f, g)
    return m.rho, m.u[0], m.u[1], m.T, 0.5 * g.sum()


def neural_rollout(
    equilibrium: Equilibrium,
    params: PyTree,
    problem: CompressibleProblem,
    f: Populations,
    g: Populations,
    n_steps: int,
    *,
    moment_iterations: int = 0,
) -> RolloutFields:
    """Autoregressive rollout with the given equilibrium; fields at steps 0..n_steps.

    ``jax.jit(functools.partial(neural_rollout, equilibrium, n_steps=...))`` compiles it once
    per equilibrium, length and `moment_iterations` (see `neural_step`).
    """

    def body(carry, _):
        f, g, _ = neural_step(
            equilibrium, params, problem, *carry, moment_iterations=moment_iterations
        )
        return (f, g), _observe(problem, f, g)

    _, saved = jax.lax.scan(body, (f, g), None, length=n_steps)
    first = _observe(problem, f, g)
    return RolloutFields(
        *(jnp.concatenate([a[None], b]) for a, b in zip(first, saved, strict=True))
    )
