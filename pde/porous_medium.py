"""Generalised porous-medium equation ``u_t = (k(u) u_x)_x`` on [0, 1], finite volumes + diffrax.

The family ProbConserv and ProbHardE2E learn on: heat (constant k), porous medium (``k = u^m``) and
Stefan (``k = 1{u >= p*}``). Space is a conservative finite-volume scheme on `n_cells` equal cells:
unknowns are cell averages, the flux through the face between cells i and i+1 is
``F = -k_face (u_{i+1} - u_i) / h`` with ``k_face = (k(u_i) + k(u_{i+1})) / 2``, and
``du_i/dt = -(F_{i+1/2} - F_{i-1/2}) / h``. The arithmetic face mean is deliberate: for degenerate
k (k(0) = 0 in PME and Stefan) a harmonic mean would make the face ahead of a front impermeable
and the front could never move. The scheme telescopes, so ``d/dt h sum(u) = F_left - F_right``:
mass changes only through the boundary faces.

Boundaries: a Dirichlet value g(t) enters through the flux over the half cell between the boundary
and the first centre, ``F = -k_b (u_0 - g) / (h / 2)`` with ``k_b = (k(g) + k(u_0)) / 2`` (the
ghost-cell form ``u_ghost = 2 g - u_0``); a missing value is a zero-flux wall.

Time: method of lines through diffrax, explicit Tsit5 with a PID step-size controller, chosen by
measurement over the stiff-capable alternative. The semi-discrete system is stiff (its largest
eigenvalue is ~4 max(k) / h^2) but the step size is set as much by non-smoothness: each time a
front enters a cell the right-hand side has a kink (PME) or a jump (Stefan). On PME with m = 2, 100
cells, t in [0, 1] (float64, same accuracy), Tsit5 ran in 0.17 s, the implicit ESDIRKs Kvaerno3 in
0.6 s and Kvaerno5 in 1.9 s (fewer steps, but each with a Jacobian and LU solve, and twice the
compile time); on Stefan their Newton iterations diverge at the jump, and in float32 they stall.
The explicit step is stability-limited, ``dt <~ 3 h^2 / (4 max k)``, so the cost grows like
n_cells^2 (PME, m = 6: ~1.8e5 steps at 200 cells, 4 s per trajectory on one CPU core).
"""

import dataclasses
from collections.abc import Callable
from typing import Literal

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.data import Trajectories

Diffusivity = Literal["heat", "porous_medium", "stefan"]
# Far above any physical u or k; bounds the trial steps the explicit solver tries and rejects (an
# overflow there gives inf - inf = NaN, and a NaN error estimate stalls diffrax's PID controller).
_TRIAL_BOUND = 1e12
BoundaryValue = Callable[[Array, Array], Array]  # (t, parameter) -> u at the boundary


def diffusivity(
    u: Float[Array, "*shape"],
    kind: Diffusivity,
    parameter: Float[Array, ""] | float,
    *,
    floor: float = 0.0,
) -> Float[Array, "*shape"]:
    """k(u) of the generalised porous-medium family.

    - "heat": ``k = parameter`` (the conductivity);
    - "porous_medium": ``k = max(u, 0)^parameter`` (m = parameter; clipping keeps k real when round-off
      leaves a slightly negative u ahead of the front);
    - "stefan": ``k = 1`` where ``u >= parameter`` (p*), else `floor` (0 in ProbConserv).
    """
    if kind == "heat":
        return jnp.full_like(u, parameter)
    if kind == "porous_medium":
        return jnp.maximum(u, 0.0) ** parameter
    if kind == "stefan":
        return jnp.where(u >= parameter, 1.0, floor).astype(u.dtype)
    raise ValueError(f"diffusivity must be 'heat', 'porous_medium' or 'stefan', got {kind!r}")


@dataclasses.dataclass(frozen=True)
class GeneralizedPorousMedium:
    """``u_t = (k(u) u_x)_x`` on [0, 1] with `n_cells` finite volumes.

    Attributes:
        kind: which k(u) (see `diffusivity`); its scalar parameter is passed at solve time so that
            one compiled solver serves a whole batch of parameters under `jax.vmap`.
        n_cells: number of cells; centres at ``(i + 1/2) / n_cells``.
        left, right: Dirichlet values ``(t, parameter) -> u`` at x = 0 and x = 1, or None for a
            zero-flux wall.
        stefan_floor: k below p* in the Stefan case. The sharp model (0) needs no floor with the
            explicit solver, which never solves a system involving k; a positive floor
            changes the model (heat leaks ahead of the front) and is there for experiments.
        rtol, atol: tolerances of the PID step-size controller (for float32 keep atol >~ 1e-7).
        max_steps: cap on solver steps (an error is raised if it is reached).
    """

    kind: Diffusivity = "porous_medium"
    n_cells: int = 100
    left: BoundaryValue | None = None
    right: BoundaryValue | None = None
    stefan_floor: float = 0.0
    rtol: float = 1e-5
    atol: float = 1e-7
    max_steps: int = 1_000_000

    def __post_init__(self):
        if self.kind not in ("heat", "porous_medium", "stefan"):
            raise ValueError(f"kind must be 'heat', 'porous_medium' or 'stefan', got {self.kind!r}")

    @property
    def cell_width(self) -> float:
        return 1.0 / self.n_cells

    def cell_centers(self) -> np.ndarray:
        """Cell centres ``(i + 1/2) h``, shape (n_cells,)."""
        return (np.arange(self.n_cells) + 0.5) * self.cell_width

    def k(self, u: Float[Array, "*shape"], parameter) -> Float[Array, "*shape"]:
        """k(u) for this problem's kind and `parameter`."""
        return diffusivity(u, self.kind, parameter, floor=self.stefan_floor)

    def fluxes(self, t, u: Float[Array, " n"], parameter) -> Float[Array, " n+1"]:
        """Fluxes ``-k u_x`` through the n + 1 faces (positive towards +x), boundary faces included.

        Args:
            t: time (scalar), for time-dependent boundary values.
            u: cell averages, shape (n,).
            parameter: k's parameter (conductivity, m or p*).
        """
        h = self.cell_width
        k = jnp.minimum(self.k(u, parameter), _TRIAL_BOUND)
        interior = -(k[1:] + k[:-1]) / 2 * (u[1:] - u[:-1]) / h

        def boundary(value_fn, u_edge, k_edge, outward):
            if value_fn is None:
                return jnp.zeros((1,), u.dtype)
            g = jnp.asarray(value_fn(jnp.asarray(t, u.dtype), parameter), u.dtype)
            k_b = (self.k(g, parameter) + k_edge) / 2
            # -k u_x over the half cell: u_x = (u_edge - g) / (h/2) at x = 0, the reverse at x = 1.
            return jnp.reshape(-outward * k_b * (g - u_edge) / (h / 2), (1,))

        left = boundary(self.left, u[0], k[0], -1.0)
        right = boundary(self.right, u[-1], k[-1], 1.0)
        return jnp.concatenate([left, interior, right])

    def rhs(self, t, u: Float[Array, " n"], parameter) -> Float[Array, " n"]:
        """The semi-discrete equation ``du_i/dt = -(F_{i+1/2} - F_{i-1/2}) / h``, shape (n,)."""
        flux = self.fluxes(t, u, parameter)
        return -(flux[1:] - flux[:-1]) / self.cell_width

    def _trial_rhs(self, t, u: Float[Array, " n"], parameter) -> Float[Array, " n"]:
        return self.rhs(t, jnp.clip(u, -_TRIAL_BOUND, _TRIAL_BOUND), parameter)

    def solve(
        self, u0: Float[Array, " n"], times: Float[Array, " t"], parameter
    ) -> Float[Array, "t n"]:
        """Cell averages at `times` (increasing; ``times[0]`` is the initial time) from `u0`.

        Args:
            u0: initial cell averages, shape (n_cells,).
            times: output times, shape (n_t,).
            parameter: k's parameter (conductivity, m or p*), a scalar (traced under vmap).
        Returns:
            Solution at `times`, shape (n_t, n_cells), in u0's dtype.
        """
        # Float32 time stops advancing for steps below ~eps |t|, which the controller asks for
        # when a cell crosses the Stefan threshold (the right-hand side jumps); steps at this floor
        # are accepted instead, so the run always progresses.
        dtmin = 16 * jnp.finfo(u0.dtype).eps * jnp.maximum(jnp.abs(times[0]), jnp.abs(times[-1]))
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(self._trial_rhs),
            diffrax.Tsit5(),
            t0=times[0],
            t1=times[-1],
            dt0=None,
            y0=u0,
            args=jnp.asarray(parameter, u0.dtype),
            saveat=diffrax.SaveAt(ts=times),
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol, dtmin=dtmin),
            max_steps=self.max_steps,
        )
        return sol.ys


def _zero(t: Array, parameter: Array) -> Array:
    return jnp.zeros_like(t)


def _one(t: Array, parameter: Array) -> Array:
    return jnp.ones_like(t)


def _pme_inflow(t: Array, parameter: Array) -> Array:
    """``u(0, t) = (m t)^(1/m)``, the boundary value of the travelling wave ``(m relu(t - x))^(1/m)``."""
    return (parameter * t) ** (1 / parameter)


@dataclasses.dataclass(frozen=True)
class _Setup:
    parameter_name: str
    parameter_range: tuple[float, float]
    t_final: float
    left: BoundaryValue
    right: BoundaryValue
    sine_start: bool  # u0 = sin(pi x) (cell averages) if True, else u0 = 0


# ProbConserv's set-ups on [0, 1]: heat decays from a sine between cold walls; PME is driven by the
# travelling wave's inflow (its exact solution while t <= 1); Stefan by a hot wall u(0, t) = 1.
_SETUPS = {
    "heat": _Setup("k", (1.0, 5.0), 0.1, _zero, _zero, True),
    "porous_medium": _Setup("m", (1.0, 6.0), 1.0, _pme_inflow, _zero, False),
    "stefan": _Setup("p_star", (0.55, 0.7), 0.1, _one, _zero, False),
}


@dataclasses.dataclass(frozen=True)
class PorousMediumDataset:
    """Finite-volume solutions of the generalised porous-medium family with a random parameter.

    One parameter per trajectory, ``~ U[parameter_range]``:

    - "heat": conductivity k ~ U[1, 5]; ``u0 = sin(pi x)``, u = 0 at both ends, t in [0, 0.1]
      (exact solution ``sin(pi x) exp(-pi^2 k t)``);
    - "porous_medium": m ~ U[1, 6] (ProbHardE2E uses [2, 3]); u0 = 0, ``u(0, t) = (m t)^(1/m)``,
      u(1, t) = 0, t in [0, 1] (exact solution ``(m relu(t - x))^(1/m)``);
    - "stefan": p* ~ U[0.55, 0.7]; u0 = 0, u(0, t) = 1, u(1, t) = 0, t in [0, 0.1] (exact solution
      `sciml.pde.analytic.stefan_solution`).

    `generate` returns field "u" shaped (trajectory, n_snapshots, n_cells) of cell averages at
    ``linspace(0, t_final, n_snapshots)``, coordinate x at the cell centres, WALL boundaries. With
    `parameter_field`, the parameter is also stored as a constant field of the same shape (named
    "k", "m" or "p_star"); `parameters(key, n)` returns the same draws.
    """

    kind: Diffusivity = "porous_medium"
    n_cells: int = 100
    n_snapshots: int = 101
    t_final: float | None = None
    parameter_range: tuple[float, float] | None = None
    parameter_field: bool = False
    rtol: float = 1e-4
    atol: float = 1e-6

    def __post_init__(self):
        if self.kind not in _SETUPS:
            raise ValueError(f"kind must be one of {sorted(_SETUPS)}, got {self.kind!r}")
        low, high = self.parameter_bounds
        if not low <= high:
            raise ValueError(f"parameter_range {self.parameter_bounds} must have low <= high")

    @property
    def parameter_bounds(self) -> tuple[float, float]:
        setup = _SETUPS[self.kind]
        return tuple(
            setup.parameter_range if self.parameter_range is None else self.parameter_range
        )

    @property
    def final_time(self) -> float:
        return _SETUPS[self.kind].t_final if self.t_final is None else self.t_final

    def problem(self) -> GeneralizedPorousMedium:
        """The finite-volume problem that `generate` solves."""
        setup = _SETUPS[self.kind]
        return GeneralizedPorousMedium(
            self.kind,
            n_cells=self.n_cells,
            left=setup.left,
            right=setup.right,
            rtol=self.rtol,
            atol=self.atol,
        )

    def parameters(self, key: Array, n_trajectories: int) -> np.ndarray:
        """The per-trajectory parameters `generate(key, n_trajectories)` uses, shape (n,)."""
        low, high = self.parameter_bounds
        return np.asarray(jax.random.uniform(key, (n_trajectories,), minval=low, maxval=high))

    def generate(self, key: Array, n_trajectories: int) -> Trajectories:
        """`n_trajectories` solutions, field "u" shaped (trajectory, n_snapshots, n_cells)."""
        setup = _SETUPS[self.kind]
        parameter = self.parameters(key, n_trajectories)
        u = np.asarray(self._solve(jnp.asarray(parameter)))
        fields = {"u": u}
        if self.parameter_field:
            fields[setup.parameter_name] = np.broadcast_to(parameter[:, None, None], u.shape).copy()
        low, high = self.parameter_bounds
        return Trajectories(
            fields=fields,
            time=np.linspace(0.0, self.final_time, self.n_snapshots),
            coords={"x": self.problem().cell_centers()},
            boundary={"x": "WALL"},
            scalars={f"{setup.parameter_name}_low": low, f"{setup.parameter_name}_high": high},
        )

    @jax.jit(static_argnums=0)
    def _solve(self, parameter: Array) -> Array:
        problem = self.problem()
        h = problem.cell_width
        x = jnp.asarray(problem.cell_centers(), parameter.dtype)
        if _SETUPS[self.kind].sine_start:
            # Cell averages, not point values: the scheme's unknowns are averages.
            u0 = jnp.sin(jnp.pi * x) * (jnp.sin(jnp.pi * h / 2) / (jnp.pi * h / 2))
        else:
            u0 = jnp.zeros_like(x)
        times = jnp.linspace(0.0, self.final_time, self.n_snapshots, dtype=parameter.dtype)
        return jax.vmap(lambda p: problem.solve(u0, times, p))(parameter)
