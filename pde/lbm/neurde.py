"""NeurDE: a learned energy equilibrium inside the compressible lattice-Boltzmann solver.

After Lara Benitez et al., "Neural equilibria for long-term prediction of nonlinear conservation
laws" (arXiv 2501.06933) and its public release (JALB-epsilon/NeurDE). The solver
(`CompressibleProblem`) keeps streaming and the analytic ``f^eq``; a network replaces the
per-cell Newton solve of the Levermore energy equilibrium,

    g_i^eq = exp(a(rho, ux, uy, T) . b(c_i)),

a branch MLP ``a`` of the local macroscopic state and a trunk MLP ``b`` of the (shifted) lattice
velocity ``c_i``: an exponential family that contains the teacher's ``log g^eq``. Training:

1. supervised relative-L2 regression of ``g^eq`` on the teacher's first steps (`equilibrium_loss`);
2. rollouts of N steps with the network inside the solver, loss per step against the teacher's
   ``g^eq`` (`rollout_loss`): the state carried with gradients stopped (as released) or true
   backpropagation through time (``bptt=True``, `jax.checkpoint` per step);

then a long autoregressive rollout against the teacher (`evaluate_rollout`). `train_neurde` runs
all of it from a config (``configs/neurde_sod2.yaml``).

Not in the paper, optional (``moment_iterations``, `neural_step`): the solver may tilt the learned
``g^eq`` onto its conserved moments (two Newton iterations, `match_energy_moments`) before the
collision. The rollout is very sensitive to moment errors of ``g^eq``; at CPU-sized training
(~1e-3 relative L2) the bare head diverges within ~30 steps, the tilted one stays within 1e-4.

Layouts follow `sciml.pde.lbm.compressible`: populations ``(9, nx, ny)``; the network is
channels-last, ``(*cells, 4) -> (*cells, 9)``.
"""

import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Real
from pydantic import BaseModel, ConfigDict, Field

from sciml.losses import relative_l2
from sciml.nn import MLP
from sciml.pde.lbm.compressible import (
    COMPRESSIBLE_VELOCITIES,
    SOD_CASES,
    CompressibleProblem,
    CompressibleState,
    g_equilibrium,
    sod_initial_state,
    sod_interface,
    solve_levermore,
)
from sciml.pde.lbm.lattices import Populations
from sciml.pde.lbm.riemann import EulerState, RiemannStar, riemann_solution, riemann_star

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


def _solve_symmetric3(j: Array, r: Array) -> Array:
    """``J^-1 r`` per cell for a symmetric 3x3 ``J`` given as ``(..., 6)`` (xx xy xz yy yz zz)."""
    a, b, c, d, e, f = (j[..., k] for k in range(6))
    cof = (d * f - e * e, c * e - b * f, b * e - c * d, a * f - c * c, b * c - a * e, a * d - b * b)
    det = a * cof[0] + b * cof[1] + c * cof[2]
    r0, r1, r2 = (r[..., k] for k in range(3))
    rows = (
        cof[0] * r0 + cof[1] * r1 + cof[2] * r2,
        cof[1] * r0 + cof[3] * r1 + cof[4] * r2,
        cof[2] * r0 + cof[4] * r1 + cof[5] * r2,
    )
    return jnp.stack(rows, axis=-1) / det[..., None]


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
    rho, ux, uy, T = (macro[..., k] for k in range(4))
    E = T / (gamma - 1.0) + 0.5 * (ux * ux + uy * uy)
    target = jnp.stack([2.0 * rho * E, 2.0 * rho * ux * (E + T), 2.0 * rho * uy * (E + T)], -1)
    basis = jnp.concatenate([jnp.ones((9, 1), g.dtype), velocities.astype(g.dtype)], axis=1)
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    quadratic = jnp.stack([basis[:, p] * basis[:, q] for p, q in pairs], axis=1)
    lam = jnp.zeros(target.shape, g.dtype)
    for _ in range(iterations):
        tilted = g * jnp.exp(lam @ basis.T)
        step = _solve_symmetric3(tilted @ quadratic, tilted @ basis - target)
        # Steps capped at 1 (max norm): far from the moments (an untrained network) a full
        # Newton step overflows exp; near them the cap is inactive.
        size = jnp.max(jnp.abs(step), axis=-1, keepdims=True)
        lam = lam - step / jnp.maximum(size, 1.0)
    return g * jnp.exp(lam @ basis.T)


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
    g_eq = equilibrium(params, macro)
    relaxed = g_eq
    if moment_iterations:
        velocities = lattice_velocities(problem.shift, macro.dtype)
        relaxed = match_energy_moments(g_eq, macro, velocities, problem.gamma, moment_iterations)
    f, g = problem.step_with_equilibrium(f, g, jnp.moveaxis(relaxed, -1, 0))
    return f, g, jnp.moveaxis(g_eq, -1, 0)


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


# ---------------------------------------------------------------------------- teacher data


@dataclasses.dataclass(frozen=True, eq=False)
class TeacherTrajectory:
    """A teacher run: pre-collision states and moments at steps 0..n, and each step's ``g^eq``.

    ``g^eq`` at step k is ``g_equilibrium(rho[k], T[k], multipliers[k])``: the multipliers of the
    Newton solve made from state k (`equilibrium`).

    Attributes:
        problem: the solver the teacher ran.
        case: the Sod case (1 or 2) for the exact Riemann reference, or None.
        f, g: populations ``(n + 1, 9, nx, ny)``.
        multipliers: ``(n + 1, 3, nx, ny)`` Levermore multipliers of each step's equilibrium.
        rho, T: ``(n + 1, nx, ny)``; u: ``(n + 1, 2, nx, ny)``.
    """

    problem: CompressibleProblem
    case: int | None
    f: Float[np.ndarray, "time 9 nx ny"]
    g: Float[np.ndarray, "time 9 nx ny"]
    multipliers: Float[np.ndarray, "time 3 nx ny"]
    rho: Float[np.ndarray, "time nx ny"]
    u: Float[np.ndarray, "time 2 nx ny"]
    T: Float[np.ndarray, "time nx ny"]

    @property
    def n_steps(self) -> int:
        return len(self.rho) - 1

    def inputs(self, steps: slice) -> Float[np.ndarray, "n nx ny 4"]:
        """Network inputs ``(rho, ux, uy, T)`` at `steps`, channels-last."""
        u = self.u[steps]
        return np.stack([self.rho[steps], u[:, 0], u[:, 1], self.T[steps]], axis=-1)

    def equilibrium(self, steps: slice) -> Float[np.ndarray, "n 9 nx ny"]:
        """The teacher's ``g^eq`` at `steps`."""
        rho, T = jnp.asarray(self.rho[steps]), jnp.asarray(self.T[steps])
        lam = jnp.moveaxis(jnp.asarray(self.multipliers[steps]), 1, 0)
        g_eq = g_equilibrium(rho, T, lam, jnp.asarray(self.problem.shift, rho.dtype))
        return np.asarray(jnp.moveaxis(g_eq, 0, 1))


def generate_teacher(
    problem: CompressibleProblem,
    state: CompressibleState,
    n_steps: int,
    *,
    case: int | None = None,
    storage_dtype: Any = None,
) -> TeacherTrajectory:
    """Run the Newton-equilibrium solver for `n_steps` and keep what training needs.

    One extra step is run for the multipliers of step n's equilibrium (state k + 1 carries the
    multipliers solved from state k).

    Args:
        storage_dtype: dtype of the kept arrays (default: the state's); the run itself uses the
            state's precision.
    """
    dtype = np.dtype(storage_dtype or state.f.dtype)

    def observe(s: CompressibleState):
        m = problem.moments(s.f, s.g)
        return tuple(a.astype(dtype) for a in (s.f, s.g, s.multipliers, m.rho, m.u, m.T))

    saved = jax.device_get(problem.rollout(state, n_steps + 1, 1, observe=observe))
    f, g, _, rho, u, T = (a[: n_steps + 1] for a in saved)
    return TeacherTrajectory(problem, case, f, g, saved[2][1:], rho, u, T)


def teacher_spec(case: int, nx: int, ny: int, n_steps: int, conserve_energy: bool) -> dict:
    """The settings that identify a cached Sod teacher."""
    return dict(case=case, nx=nx, ny=ny, n_steps=n_steps, conserve_energy=conserve_energy)


def sod_teacher(
    case: int,
    nx: int = 3001,
    ny: int = 1,
    n_steps: int = 1000,
    *,
    conserve_energy: bool = False,
    storage_dtype: Any = np.float32,
) -> TeacherTrajectory:
    """A NeurDE Sod teacher run in float64 (`sod_initial_state`), kept in `storage_dtype`."""
    with jax.enable_x64(True):
        problem, state = sod_initial_state(case, nx, ny, dtype="float64")
        problem = dataclasses.replace(problem, conserve_energy=conserve_energy)
        return generate_teacher(problem, state, n_steps, case=case, storage_dtype=storage_dtype)


def write_teacher(path: str | Path, teacher: TeacherTrajectory, spec: dict) -> None:
    """Store a teacher as one Well-schema trajectory (float32; the populations as scalar fields).

    Fields: density, velocity, temperature, levermore_chi / _zeta_x / _zeta_y (the equilibrium
    multipliers of each step), f_0..f_8 and g_0..g_8 (pre-collision populations); `spec` goes into
    the root attribute ``neurde_teacher``.
    """
    from sciml.data import Trajectories, write_well

    fields = {
        "density": teacher.rho,
        "velocity": np.moveaxis(teacher.u, 1, -1),
        "temperature": teacher.T,
    }
    for i, name in enumerate(("chi", "zeta_x", "zeta_y")):
        fields[f"levermore_{name}"] = teacher.multipliers[:, i]
    for i in range(9):
        fields[f"f_{i}"], fields[f"g_{i}"] = teacher.f[:, i], teacher.g[:, i]
    p = teacher.problem
    nx, ny = p.shape
    traj = Trajectories(
        fields={k: v[None] for k, v in fields.items()},
        time=np.arange(teacher.n_steps + 1, dtype=np.float64),
        coords={"x": np.arange(nx, dtype=np.float64), "y": np.arange(ny, dtype=np.float64)},
        boundary={"x": "OPEN", "y": "PERIODIC"},
        scalars={k: float(getattr(p, k)) for k in ("gamma", "viscosity", "shift", "prandtl")},
    )
    write_well(path, f"neurde_sod{spec['case']}_teacher", traj, {"neurde_teacher": spec})


def read_teacher(path: str | Path) -> tuple[TeacherTrajectory, dict]:
    """A teacher written by `write_teacher` and its spec."""
    from sciml.data import read_well
    from sciml.errors import DatasetError

    traj, attrs = read_well(path)
    if "neurde_teacher" not in attrs:
        raise DatasetError(f"{path} is not a NeurDE teacher file (no neurde_teacher attribute)")
    spec = json.loads(attrs["neurde_teacher"])
    problem, _ = sod_initial_state(spec["case"], spec["nx"], spec["ny"])
    problem = dataclasses.replace(problem, conserve_energy=spec["conserve_energy"])
    fields = {k: v[0] for k, v in traj.fields.items()}

    def stack(names):
        return np.stack([fields[n] for n in names], axis=1)

    teacher = TeacherTrajectory(
        problem,
        spec["case"],
        stack([f"f_{i}" for i in range(9)]),
        stack([f"g_{i}" for i in range(9)]),
        stack([f"levermore_{n}" for n in ("chi", "zeta_x", "zeta_y")]),
        fields["density"],
        np.moveaxis(fields["velocity"], -1, 1),
        fields["temperature"],
    )
    return teacher, spec


def load_teacher(root: str | Path, spec: dict) -> tuple[TeacherTrajectory, bool]:
    """The cached Sod teacher under `root` (``data/train/*.hdf5``), generated first if missing.

    Returns:
        ``(teacher, generated)``.

    Raises:
        DatasetError: the cached file was made with other settings.
    """
    from sciml.data import split_path
    from sciml.errors import DatasetError

    path = split_path(root, "train", f"neurde_sod{spec['case']}_teacher")
    if path.is_file():
        teacher, cached = read_teacher(path)
        if cached != spec:
            raise DatasetError(
                f"{path} holds a teacher made with {cached}, not {spec}: delete it or set"
                " teacher.path to another directory"
            )
        return teacher, False
    teacher = sod_teacher(
        spec["case"], spec["nx"], spec["ny"], spec["n_steps"],
        conserve_energy=spec["conserve_energy"],
    )  # fmt: skip
    write_teacher(path, teacher, spec)
    return teacher, True


# ---------------------------------------------------------------------------- evaluation


def shock_position(rho: Real[np.ndarray, " nx"], start: float) -> float:
    """Position (cell-index units) of the largest density jump right of `start`.

    The jump ``|rho[i + 1] - rho[i]|`` sits at ``i + 1/2``; a parabola through the largest one and
    its neighbours places the peak between cells. On a sharp step this is the mid-point of the two
    cells either side (within half a cell of the true discontinuity).
    """
    lo = max(int(np.ceil(start)), 0)
    jump = np.abs(np.diff(np.asarray(rho, np.float64)[lo:]))
    k = int(np.argmax(jump))
    offset = 0.0
    if 0 < k < len(jump) - 1:
        a, b, c = jump[k - 1 : k + 2]
        curvature = a - 2.0 * b + c
        if curvature < 0:
            offset = 0.5 * (a - c) / curvature
    return float(lo + k + 0.5 + offset)


def sod_reference(case: int) -> tuple[EulerState, EulerState, float, RiemannStar]:
    """Left and right states, gamma and the exact star state of a NeurDE Sod case."""
    spec = SOD_CASES[case]
    left, right = (
        EulerState(spec[s]["rho"], 0.0, spec[s]["rho"] * spec[s]["T"]) for s in ("left", "right")
    )
    return left, right, spec["gamma"], riemann_star(left, right, spec["gamma"])


def _relative_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Relative L2 error over space at each time of ``(time, *space)`` arrays."""
    axes = tuple(range(1, truth.ndim))
    diff = np.sqrt(((pred - truth) ** 2).sum(axes))
    return diff / np.maximum(np.sqrt((truth**2).sum(axes)), 1e-30)


def evaluate_rollout(
    equilibrium: Equilibrium,
    params: PyTree,
    teacher: TeacherTrajectory,
    start: int,
    n_steps: int,
    *,
    dtype: Any = None,
    moment_iterations: int = 0,
) -> tuple[dict[str, Any], RolloutFields]:
    """Roll out `n_steps` from the teacher's state at `start` and compare with the teacher.

    Metrics: per field (rho, ux, T) the relative L2 error over space, its mean over the steps
    ``start + 1 .. start + n_steps`` and its value at the last one; the total energy
    ``E = sum g / 2`` drift ``E(end) / E(start) - 1`` of the rollout and of the teacher; for Sod
    teachers, the shock position (`shock_position`, searched right of the exact contact) at the
    last step: the rollout's, the teacher's, the exact one and the rollout-teacher offset in cells.

    ``finite_steps`` counts the steps before the first non-finite field (errors are NaN after).
    `moment_iterations`: see `neural_step`.

    Returns:
        ``(metrics, fields)`` with the rollout's `RolloutFields` as NumPy arrays.
    """
    dtype = dtype or teacher.f.dtype
    rollout = functools.partial(
        neural_rollout, equilibrium, n_steps=n_steps, moment_iterations=moment_iterations
    )
    f0, g0 = (jnp.asarray(a[start], dtype) for a in (teacher.f, teacher.g))
    pred = RolloutFields(*jax.device_get(jax.jit(rollout)(params, teacher.problem, f0, g0)))
    times = slice(start, start + n_steps + 1)
    truth = {"rho": teacher.rho[times], "ux": teacher.u[times, 0], "T": teacher.T[times]}
    metrics: dict[str, Any] = {"start": start, "n_steps": n_steps}
    for name, value in truth.items():
        errors = _relative_errors(np.asarray(getattr(pred, name), np.float64)[1:], value[1:])
        metrics[f"{name}_rel_l2_mean"] = float(errors.mean())
        metrics[f"{name}_rel_l2_final"] = float(errors[-1])
        metrics[f"{name}_rel_l2_max"] = float(errors.max())
    energy = 0.5 * teacher.g[times].astype(np.float64).sum(axis=(1, 2, 3))
    metrics["energy_drift"] = float(pred.energy[-1] / pred.energy[0] - 1.0)
    metrics["teacher_energy_drift"] = float(energy[-1] / energy[0] - 1.0)
    metrics["energy_rel_error_final"] = float(abs(pred.energy[-1] / energy[-1] - 1.0))
    finite = np.isfinite(pred.rho).all(axis=(1, 2)) & np.isfinite(pred.T).all(axis=(1, 2))
    metrics["finite_steps"] = int(n_steps if finite.all() else np.argmin(finite) - 1)
    if teacher.case is not None:
        *_, star = sod_reference(teacher.case)
        t, x0 = start + n_steps, sod_interface(teacher.problem.shape[0])
        contact, exact = x0 + star.u * t, x0 + star.right_head * t
        search = contact + 0.25 * (exact - contact)
        diverged = metrics["finite_steps"] < n_steps
        model = np.nan if diverged else shock_position(pred.rho[-1].mean(axis=-1), search)
        reference = shock_position(teacher.rho[start + n_steps].mean(axis=-1), search)
        metrics |= {
            "shock_position": model,
            "teacher_shock_position": reference,
            "exact_shock_position": exact,
            "shock_error_cells": abs(model - reference),
        }
    return metrics, pred


def plot_profiles(
    path: str | Path,
    teacher: TeacherTrajectory,
    pred: RolloutFields,
    start: int,
    steps: list[int],
) -> None:
    """Density, velocity and temperature at `steps`: rollout, teacher and exact Riemann solution."""
    import matplotlib.pyplot as plt

    import sciml.plotting  # noqa: F401  (selects the Agg backend)

    nx = teacher.problem.shape[0]
    x = np.arange(nx)
    exact = None
    if teacher.case is not None:
        left, right, gamma, star = sod_reference(teacher.case)
        x0, t_max = sod_interface(nx), max(steps)
        lo = max(0, int(x0 + star.left_head * t_max) - 40)
        hi = min(nx, int(x0 + star.right_head * t_max) + 40)
        exact = {t: riemann_solution(left, right, gamma, x, t, x0) for t in steps if t > 0}
    else:
        lo, hi = 0, nx
    rows = (("rho", "density"), ("ux", "velocity u_x"), ("T", "temperature"))
    fig, axes = plt.subplots(3, len(steps), figsize=(4.2 * len(steps), 8), squeeze=False)
    for j, t in enumerate(steps):
        k = t - start
        teacher_fields = {"rho": teacher.rho[t], "ux": teacher.u[t, 0], "T": teacher.T[t]}
        for i, (name, label) in enumerate(rows):
            ax = axes[i, j]
            if exact is not None and t in exact:
                value = {"rho": exact[t].rho, "ux": exact[t].u, "T": exact[t].T}[name]
                ax.plot(x[lo:hi], value[lo:hi], color="0.6", lw=1, label="exact Riemann")
            ax.plot(x[lo:hi], teacher_fields[name].mean(-1)[lo:hi], "k", lw=2, label="teacher")
            ax.plot(x[lo:hi], getattr(pred, name)[k].mean(-1)[lo:hi], "C1--", lw=1.5,
                    label="NeurDE")  # fmt: skip
            if i == 0:
                ax.set_title(f"step {t} ({k} after {start})")
            if j == 0:
                ax.set_ylabel(label)
            if i == 2:
                ax.set_xlabel("x (cells)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherConfig(_Strict):
    """The Sod teacher: case, grid, horizon; cached as a Well file under `path`."""

    path: str
    case: Literal[1, 2] = 2
    nx: int = Field(3001, ge=8)
    ny: int = Field(1, ge=1)
    n_steps: int = Field(1000, ge=2)
    conserve_energy: bool = False


class NetworkConfig(_Strict):
    """The network, and how the solver uses it (`neural_step`'s `moment_iterations`)."""

    width: int = Field(64, ge=1)
    depth: int = Field(4, ge=1)
    moment_iterations: int = Field(0, ge=0)  # 0: the paper


class Stage1Config(_Strict):
    """Supervised ``g^eq`` regression: AdamW, clipping, cosine annealing with warm restarts."""

    n_snapshots: int = Field(500, ge=1)  # teacher steps 0 .. n_snapshots - 1
    steps: int = Field(48000, ge=1)
    batch_size: int = Field(32, ge=1)  # snapshots per update
    lr: float = Field(1e-4, gt=0)
    min_lr: float = Field(5e-6, ge=0)
    restart_period: int = Field(1500, ge=1)
    restart_mult: int = Field(2, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(1000, ge=1)


class Stage2Config(_Strict):
    """Rollout training: windows of `rollout` steps, one-cycle learning rate."""

    steps: int = Field(1000, ge=0)
    rollout: int = Field(25, ge=1)
    gradient: Literal["stop_gradient", "bptt"] = "stop_gradient"
    lr: float = Field(1e-4, gt=0)  # peak of the one-cycle schedule
    pct_start: float = Field(0.3, gt=0, lt=1)
    div_factor: float = Field(10.0, gt=0)
    final_div_factor: float = Field(100.0, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(100, ge=1)


class EvaluationConfig(_Strict):
    start: int = Field(500, ge=0)
    n_steps: int = Field(500, ge=1)
    plot_steps: list[int] = [600, 800, 1000]


class NeurDEConfig(_Strict):
    """A NeurDE experiment (``configs/neurde_sod2.yaml``)."""

    name: str
    seed: int = 0
    run_dir: str
    dtype: Literal["float32", "float64"] = "float32"
    teacher: TeacherConfig
    model: NetworkConfig = NetworkConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    evaluate: EvaluationConfig = EvaluationConfig()


def _check(cfg: NeurDEConfig) -> None:
    from sciml.errors import ConfigError

    n = cfg.teacher.n_steps
    problems = []
    if cfg.stage1.n_snapshots > n:
        problems.append(f"stage1.n_snapshots={cfg.stage1.n_snapshots} > teacher.n_steps={n}")
    if cfg.stage1.batch_size > cfg.stage1.n_snapshots:
        problems.append("stage1.batch_size exceeds stage1.n_snapshots")
    if cfg.stage2.steps and cfg.stage2.rollout > cfg.stage1.n_snapshots:
        problems.append("stage2.rollout exceeds stage1.n_snapshots (the training steps)")
    if cfg.evaluate.start + cfg.evaluate.n_steps > n:
        problems.append(f"evaluate.start + evaluate.n_steps exceeds teacher.n_steps={n}")
    end = cfg.evaluate.start + cfg.evaluate.n_steps
    if any(not cfg.evaluate.start <= t <= end for t in cfg.evaluate.plot_steps):
        problems.append(f"evaluate.plot_steps must lie in [{cfg.evaluate.start}, {end}]")
    if problems:
        raise ConfigError("; ".join(problems))


# ---------------------------------------------------------------------------- training


def warm_restart_schedule(
    peak: float, minimum: float, period: int, mult: int, total_steps: int
) -> optax.Schedule:
    """Cosine annealing from `peak` to `minimum` restarted after `period`, `period` x `mult`, ...

    The schedule of PyTorch's ``CosineAnnealingWarmRestarts(T_0=period, T_mult=mult,
    eta_min=minimum)`` stepped once per update (as the release does).
    """
    schedules, boundaries, start = [], [], 0
    while start < total_steps:
        schedules.append(optax.cosine_decay_schedule(peak, period, alpha=minimum / peak))
        start += period
        boundaries.append(start)
        period *= mult
    return optax.join_schedules(schedules, boundaries[:-1])


def _adamw(
    schedule: optax.Schedule, weight_decay: float, clip: float
) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(clip), optax.adamw(schedule, weight_decay=weight_decay)
    )


def _fit_stage(
    stage_dir: Path,
    loss_fn: Callable,
    params: PyTree,
    optimizer: optax.GradientTransformation,
    batch_for_step: Callable[[int], Any],
    steps: int,
    seed: int,
    metadata: dict,
    log_every: int,
    checkpoint_every: int,
) -> tuple[PyTree, float]:
    """`sciml.train.fit` in `stage_dir` (resumes from its checkpoints); the params and seconds."""
    from sciml.train import Checkpointer, TrainState, fit, make_train_step

    stage_dir.mkdir(parents=True, exist_ok=True)
    state = TrainState.create(params, optimizer, jax.random.key(seed))
    checkpointer = Checkpointer(stage_dir / "checkpoints", keep=1)
    start = time.perf_counter()
    try:
        state = fit(
            state,
            make_train_step(loss_fn, optimizer),
            batch_for_step,
            steps=steps,
            run_dir=stage_dir,
            checkpointer=checkpointer,
            metadata=metadata,
            eval_every=steps + 1,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
        )
    finally:
        checkpointer.close()
    return state.params, time.perf_counter() - start


def _last_loss(stage_dir: Path) -> float | None:
    from sciml.train import read_metrics

    records = [r for r in read_metrics(stage_dir) if "loss" in r]
    return records[-1]["loss"] if records else None


def train_neurde(config: dict[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """Teacher (cached), stage 1, stage 2, evaluation, checkpoint, plots and ``report.json``.

    Each stage trains with `sciml.train.fit` in ``run_dir/stage{1,2}`` (JSON-lines metrics,
    checkpoints; a rerun resumes). The trained parameters are saved to ``run_dir/checkpoints``
    with metadata that `sciml.pretrained.load` reads (model ``sciml.pde.lbm.NeurDE``, inputs
    ``(1, nx, ny, 4)``).

    Args:
        config: a mapping validated as `NeurDEConfig` (see ``configs/neurde_sod2.yaml``).
        run_dir: overrides ``config["run_dir"]``.

    Returns:
        The report (also written to ``run_dir/report.json``).
    """
    import sciml
    from sciml.config import validate
    from sciml.plotting import plot_training_curves
    from sciml.train import Checkpointer, read_metrics, steps_in

    cfg: NeurDEConfig = validate(NeurDEConfig, dict(config), where="neurde config")
    _check(cfg)
    run_dir = Path(run_dir or cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    t = cfg.teacher
    spec = teacher_spec(t.case, t.nx, t.ny, t.n_steps, t.conserve_energy)
    start = time.perf_counter()
    teacher, generated = load_teacher(t.path, spec)
    teacher_seconds = time.perf_counter() - start

    precision = jax.enable_x64(True) if cfg.dtype == "float64" else contextlib.nullcontext()
    with precision:
        dtype = jnp.dtype(cfg.dtype)
        problem = teacher.problem
        model = NeurDE(cfg.model.width, cfg.model.depth, float(problem.shift))
        model_spec = {"type": "sciml.pde.lbm.NeurDE", "width": model.width, "depth": model.depth}
        model_spec["shift"] = model.shift
        moments = cfg.model.moment_iterations
        metadata = {
            "checkpoint_format": 1,  # the format sciml.pretrained reads
            "sciml_version": sciml.__version__,
            "model": model_spec,
            "data": {
                "fields": list(MACRO_FIELDS),
                "spatial_shape": [t.nx, t.ny],
                "in_channels": 4,
                "out_channels": 9,
                "teacher": spec,
            },
            "equilibrium": {"moment_iterations": moments},  # how the solver uses the model
            "config": cfg.model_dump(mode="json"),
        }
        n_train = cfg.stage1.n_snapshots
        inputs = teacher.inputs(slice(0, n_train)).astype(dtype)
        targets = teacher.equilibrium(slice(0, n_train)).astype(dtype)
        params = model.init(jax.random.key(cfg.seed), jnp.asarray(inputs[:1]))

        # Stage 1: supervised regression of g^eq.
        s1 = cfg.stage1

        def stage1_loss(params, batch, key):
            x, y = batch
            return equilibrium_loss(jnp.moveaxis(model.apply(params, x), -1, 1), y), {}

        def stage1_batch(step: int):
            from sciml.data import batch_indices

            idx = batch_indices(n_train, s1.batch_size, cfg.seed, step)
            return jnp.asarray(inputs[idx]), jnp.asarray(targets[idx])

        schedule = warm_restart_schedule(
            s1.lr, s1.min_lr, s1.restart_period, s1.restart_mult, s1.steps
        )
        params, stage1_seconds = _fit_stage(
            run_dir / "stage1",
            stage1_loss,
            params,
            _adamw(schedule, s1.weight_decay, s1.grad_clip),
            stage1_batch,
            s1.steps,
            cfg.seed,
            metadata,
            s1.log_every,
            s1.checkpoint_every,
        )

        # Stage 2: rollouts with the network inside the solver.
        ev, s2 = cfg.evaluate, cfg.stage2
        stage2_seconds, stage1_metrics = 0.0, None
        if s2.steps:
            stage1_metrics, _ = evaluate_rollout(
                model.apply,
                params,
                teacher,
                ev.start,
                ev.n_steps,
                dtype=dtype,
                moment_iterations=moments,
            )
            n_windows = n_train - s2.rollout + 1

            def stage2_loss(params, batch, key):
                f, g, y = batch
                loss, per_step = rollout_loss(
                    model.apply,
                    params,
                    problem,
                    f,
                    g,
                    y,
                    bptt=s2.gradient == "bptt",
                    moment_iterations=moments,
                )
                return loss, {"first_step": per_step[0], "last_step": per_step[-1]}

            def stage2_batch(step: int):
                from sciml.data import batch_indices

                k = int(batch_indices(n_windows, 1, cfg.seed + 1, step)[0])
                window = targets[k : k + s2.rollout]
                return tuple(jnp.asarray(a, dtype) for a in (teacher.f[k], teacher.g[k], window))

            schedule = optax.cosine_onecycle_schedule(
                s2.steps, s2.lr, s2.pct_start, s2.div_factor, s2.final_div_factor
            )
            params, stage2_seconds = _fit_stage(
                run_dir / "stage2",
                stage2_loss,
                params,
                _adamw(schedule, s2.weight_decay, s2.grad_clip),
                stage2_batch,
                s2.steps,
                cfg.seed + 1,
                metadata,
                s2.log_every,
                s2.checkpoint_every,
            )

        # Evaluation: the long rollout against the teacher.
        start = time.perf_counter()
        metrics, pred = evaluate_rollout(
            model.apply,
            params,
            teacher,
            ev.start,
            ev.n_steps,
            dtype=dtype,
            moment_iterations=moments,
        )
        metrics["seconds"] = time.perf_counter() - start

    total = s1.steps + s2.steps
    if total not in steps_in(run_dir / "checkpoints"):  # else a rerun: the same parameters
        saver = Checkpointer(run_dir / "checkpoints", keep=1)
        try:
            scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
            saver.save(total, {"params": params}, metadata, scalars)
        finally:
            saver.close()
    plot_profiles(run_dir / "profiles.png", teacher, pred, ev.start, ev.plot_steps)
    plots = ["profiles.png"]
    for stage in ("stage1", "stage2"):
        records = read_metrics(run_dir / stage)
        if records:
            plot_training_curves(run_dir / f"{stage}_loss.png", records)
            plots.append(f"{stage}_loss.png")
    report = {
        "name": cfg.name,
        "n_params": count_params(params),
        "teacher": {**spec, "generated": generated, "seconds": teacher_seconds},
        "stage1": {
            "steps": s1.steps,
            "final_loss": _last_loss(run_dir / "stage1"),
            "seconds": stage1_seconds,
            "evaluation": stage1_metrics,
        },
        "stage2": {
            "steps": s2.steps,
            "gradient": s2.gradient,
            "rollout": s2.rollout,
            "final_loss": _last_loss(run_dir / "stage2"),
            "seconds": stage2_seconds,
        },
        "evaluation": metrics,
        "checkpoint": str(run_dir / "checkpoints" / str(total)),
        "plots": plots,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report
