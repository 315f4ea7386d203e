"""NeurDE teacher data: Newton-equilibrium runs of the compressible solver, stored and reloaded.

A teacher run (`generate_teacher`) keeps each step's pre-collision populations, moments and the
Levermore multipliers of its equilibrium; `write_teacher` / `read_teacher` store it as one
Well-schema HDF5 trajectory and `load_teacher` caches it under a dataset directory (what
``sciml generate`` writes for a NeurDE config and ``sciml train`` reuses). `sod_reference` and
`shock_position` give the exact Riemann reference of the Sod cases.
"""

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Real
from tqdm.auto import tqdm

from sciml.pde.lbm.compressible import (
    SOD_CASES,
    CompressibleProblem,
    CompressibleState,
    cylinder_initial_state,
    g_equilibrium,
    sod_initial_state,
)
from sciml.pde.lbm.riemann import EulerState, RiemannStar, riemann_star


@dataclasses.dataclass(frozen=True, eq=False)
class TeacherTrajectory:
    """A teacher run: pre-collision states and moments at steps 0..n, and each step's ``g^eq``.

    ``g^eq`` at step k is ``g_equilibrium(rho[k], T[k], multipliers[k])``: the multipliers of the
    Newton solve made from state k (`equilibrium`).

    Attributes:
        problem: the solver the teacher ran.
        case: the Sod case (1 or 2) for the exact Riemann reference, or None (the cylinder).
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
    progress: bool = False,
) -> TeacherTrajectory:
    """Run the Newton-equilibrium solver for `n_steps` and keep what training needs.

    One extra step is run for the multipliers of step n's equilibrium (state k + 1 carries the
    multipliers solved from state k). The run goes in equal chunks of at most 100 steps (and about
    256 MB of kept arrays), each copied to host memory as it finishes: one compilation, a bounded
    device footprint, and a progress bar with rate and ETA when `progress` is set.

    Args:
        storage_dtype: dtype of the kept arrays (default: the state's); the run itself uses the
            state's precision.
        progress: show a progress bar (on a terminal).
    """
    dtype = np.dtype(storage_dtype or state.f.dtype)
    problem._check_state(state)
    total = n_steps + 2  # states 0 .. n + 1 are observed
    cells = int(np.prod(problem.shape))
    per_step = 25 * cells * dtype.itemsize  # f, g (18), multipliers (3), rho, u (2), T
    longest = max(1, min(100, (256 << 20) // per_step))
    chunk = -(-total // -(-total // longest))  # equal chunks, the fewest wasted steps
    kept = [np.empty((total, *shape), dtype) for shape in _kept_shapes(problem.shape)]
    done = 0
    with tqdm(total=total, desc="teacher", unit="step", disable=None if progress else True) as bar:
        while done < total:
            state, saved = _teacher_chunk(problem, state, chunk, dtype)
            size = min(chunk, total - done)
            for out, part in zip(kept, jax.device_get(saved), strict=True):
                out[done : done + size] = part[:size]
            done += size
            bar.update(size)
    f, g, multipliers, rho, u, T = kept
    n = n_steps + 1
    return TeacherTrajectory(problem, case, f[:n], g[:n], multipliers[1:], rho[:n], u[:n], T[:n])


def _kept_shapes(shape: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    return (9, *shape), (9, *shape), (3, *shape), shape, (2, *shape), shape


@functools.partial(jax.jit, static_argnums=(2, 3))
def _teacher_chunk(problem: CompressibleProblem, state: CompressibleState, n_steps: int, dtype):
    """`n_steps` teacher steps: the last state and what is kept of each state before a step."""

    def body(s: CompressibleState, _):
        m = problem.moments(s.f, s.g)
        kept = tuple(a.astype(dtype) for a in (s.f, s.g, s.multipliers, m.rho, m.u, m.T))
        return problem.step(s), kept

    return jax.lax.scan(body, state, None, length=n_steps)


TeacherCase = int | Literal["cylinder"]
"""A NeurDE teacher: Sod case 1 or 2, or the Mach 1.8 cylinder."""


def teacher_spec(
    case: TeacherCase,
    nx: int,
    ny: int,
    n_steps: int,
    conserve_energy: bool,
    *,
    radius: float | None = None,
) -> dict:
    """The settings that identify a cached teacher (`radius`: the cylinder's; default 20)."""
    spec = dict(case=case, nx=nx, ny=ny, n_steps=n_steps, conserve_energy=conserve_energy)
    if case == "cylinder":
        spec["radius"] = float(20.0 if radius is None else radius)
    elif radius is not None:
        raise ValueError("radius is a setting of the cylinder teacher only")
    return spec


def teacher_initial_state(
    spec: dict, *, dtype: Any = None
) -> tuple[CompressibleProblem, CompressibleState]:
    """The problem and initial state of a `teacher_spec`: `sod_initial_state` or the cylinder's."""
    if spec["case"] == "cylinder":
        problem, state = cylinder_initial_state(spec["nx"], spec["ny"], spec["radius"], dtype=dtype)
    else:
        problem, state = sod_initial_state(spec["case"], spec["nx"], spec["ny"], dtype=dtype)
    return dataclasses.replace(problem, conserve_energy=spec["conserve_energy"]), state


def run_teacher(
    spec: dict, *, storage_dtype: Any = np.float32, progress: bool = False
) -> TeacherTrajectory:
    """The teacher of a `teacher_spec`, run in float64 and kept in `storage_dtype`."""
    with jax.enable_x64(True):
        problem, state = teacher_initial_state(spec, dtype="float64")
        case = spec["case"] if spec["case"] in SOD_CASES else None
        return generate_teacher(
            problem,
            state,
            spec["n_steps"],
            case=case,
            storage_dtype=storage_dtype,
            progress=progress,
        )


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
    spec = teacher_spec(case, nx, ny, n_steps, conserve_energy)
    return run_teacher(spec, storage_dtype=storage_dtype)


def _dataset_name(spec: dict) -> str:
    case = spec["case"]
    return f"neurde_{'cylinder' if case == 'cylinder' else f'sod{case}'}_teacher"


def teacher_path(root: str | Path, spec: dict) -> Path:
    """Where the teacher of `spec` is cached under the dataset directory `root`."""
    from sciml.data import split_path

    return split_path(root, "train", _dataset_name(spec))


def write_teacher(path: str | Path, teacher: TeacherTrajectory, spec: dict) -> None:
    """Store a teacher as one Well-schema trajectory (float32; the populations as scalar fields).

    Fields: density, velocity, temperature, levermore_chi / _zeta_x / _zeta_y (the equilibrium
    multipliers of each step), f_0..f_8 and g_0..g_8 (pre-collision populations); `spec` goes into
    the root attribute ``neurde_teacher``. Written atomically (`sciml.data.write_well`).
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
    boundary = {"periodic": "PERIODIC", "zero_gradient": "OPEN"}
    traj = Trajectories(
        fields={k: v[None] for k, v in fields.items()},
        time=np.arange(teacher.n_steps + 1, dtype=np.float64),
        coords={"x": np.arange(nx, dtype=np.float64), "y": np.arange(ny, dtype=np.float64)},
        boundary={"x": boundary[p.boundary_x], "y": boundary[p.boundary_y]},
        scalars={k: float(getattr(p, k)) for k in ("gamma", "viscosity", "shift", "prandtl")},
    )
    write_well(path, _dataset_name(spec), traj, {"neurde_teacher": spec})


def read_teacher(path: str | Path) -> tuple[TeacherTrajectory, dict]:
    """A teacher written by `write_teacher` and its spec."""
    from sciml.data import read_well
    from sciml.errors import DatasetError

    traj, attrs = read_well(path)
    if "neurde_teacher" not in attrs:
        raise DatasetError(f"{path} is not a NeurDE teacher file (no neurde_teacher attribute)")
    spec = json.loads(attrs["neurde_teacher"])
    problem, _ = teacher_initial_state(spec)
    fields = {k: v[0] for k, v in traj.fields.items()}

    def stack(names):
        return np.stack([fields[n] for n in names], axis=1)

    teacher = TeacherTrajectory(
        problem,
        spec["case"] if spec["case"] in SOD_CASES else None,
        stack([f"f_{i}" for i in range(9)]),
        stack([f"g_{i}" for i in range(9)]),
        stack([f"levermore_{n}" for n in ("chi", "zeta_x", "zeta_y")]),
        fields["density"],
        np.moveaxis(fields["velocity"], -1, 1),
        fields["temperature"],
    )
    return teacher, spec


def cached_teacher(root: str | Path, spec: dict) -> Path | None:
    """The cached file of the teacher of `spec` under `root` (`teacher_path`), None if missing.

    Only the file's attributes are read.

    Raises:
        DatasetError: the file is not a teacher file, is corrupt, or was made with other settings.
    """
    import h5py

    from sciml.errors import DatasetError

    path = teacher_path(root, spec)
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            cached = f.attrs.get("neurde_teacher")
    except OSError as err:
        raise DatasetError(f"{path} is corrupt or truncated ({err}): delete it") from None
    if cached is None:
        raise DatasetError(f"{path} is not a NeurDE teacher file (no neurde_teacher attribute)")
    if json.loads(cached) != spec:
        raise DatasetError(
            f"{path} holds a teacher made with {json.loads(cached)}, not {spec}: delete it or set"
            " teacher.path to another directory"
        )
    return path


def load_teacher(
    root: str | Path, spec: dict, *, progress: bool = False
) -> tuple[TeacherTrajectory, bool]:
    """The cached teacher under `root` (`teacher_path`), generated and written first if missing.

    Returns:
        ``(teacher, generated)``.

    Raises:
        DatasetError: the cached file was made with other settings.
    """
    path = cached_teacher(root, spec)
    if path is not None:
        return read_teacher(path)[0], False
    teacher = run_teacher(spec, progress=progress)
    write_teacher(teacher_path(root, spec), teacher, spec)
    return teacher, True


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
