"""Isothermal lattice-Boltzmann solvers in JAX (sciml.pde.lbm).

Velocity sets `D2Q9`, `D3Q19`, `D3Q27`; `BGK` and `TRT` collisions with Guo forcing; periodic
streaming fused with collision; half-way bounce-back on solid masks (fixed or moving walls),
Zou-He velocity/pressure, equilibrium and extrapolation-outflow edges; momentum-exchange forces;
`LBMProblem.step` / `rollout` on one device and `sharded_rollout` split along x over a device mesh.

Also the compressible two-population shifted D2Q9 model (`compressible`, `CompressibleProblem`,
the Sod and cylinder cases, exact Riemann references in `riemann`) and NeurDE, its learned energy
equilibrium: the network and solver step (`neurde`), teacher data (`teacher`), evaluation
(`neurde_eval`) and config-driven training (`neurde_train`, ``sciml train configs/neurde_*.yaml``).

Populations are ``(Q, *space)`` (channels-first: one contiguous field per population, the faster
layout for the fused step), velocities ``(D, *space)``; lattice units (dx = dt = 1, cs2 = 1/3).

Example:
    >>> import jax.numpy as jnp
    >>> from sciml.pde.lbm import BGK, D2Q9, LBMProblem
    >>> problem = LBMProblem(lattice=D2Q9, shape=(128, 128), collision=BGK(tau=0.6))
    >>> f = problem.equilibrium(jnp.ones((128, 128)), jnp.zeros((2, 128, 128)))
    >>> rho, u = problem.rollout(f, 1000, save_every=100, observe=problem.macroscopic)
    >>> u.shape  # 11 saved velocity fields
    (11, 2, 128, 128)
"""

from sciml.pde.lbm.boundaries import (
    Edge,
    EquilibriumEdge,
    OutflowEdge,
    ZouHePressure,
    ZouHeVelocity,
)
from sciml.pde.lbm.collision import BGK, TRT
from sciml.pde.lbm.compressible import (
    COMPRESSIBLE_VELOCITIES,
    SOD_CASES,
    CompressibleMoments,
    CompressibleProblem,
    CompressibleState,
    LevermoreSolution,
    UniformState,
    compressible_moments,
    compressible_weights,
    cylinder_initial_state,
    f_equilibrium,
    g_equilibrium,
    sod_initial_state,
    sod_interface,
    solve_levermore,
)
from sciml.pde.lbm.lattices import (
    CS2,
    D2Q9,
    D3Q19,
    D3Q27,
    Lattice,
    density,
    equilibrium,
    lattice_by_name,
    macroscopic,
)
from sciml.pde.lbm.neurde import (
    NeurDE,
    RolloutFields,
    count_params,
    equilibrium_loss,
    lattice_velocities,
    levermore_equilibrium,
    macro_inputs,
    match_energy_moments,
    neural_rollout,
    neural_step,
    rollout_loss,
)
from sciml.pde.lbm.neurde_eval import evaluate_rollout, plot_profiles
from sciml.pde.lbm.neurde_train import (
    NeurDEConfig,
    generate_neurde_teacher,
    train_neurde,
    warm_restart_schedule,
)
from sciml.pde.lbm.riemann import (
    EulerState,
    RiemannSolution,
    RiemannStar,
    riemann_solution,
    riemann_star,
    sample_riemann,
)
from sciml.pde.lbm.sharding import shard_populations, sharded_rollout, slab_mesh
from sciml.pde.lbm.solver import Geometry, LBMProblem
from sciml.pde.lbm.streaming import shift, stream_halo, stream_periodic
from sciml.pde.lbm.teacher import (
    TeacherTrajectory,
    cached_teacher,
    generate_teacher,
    load_teacher,
    read_teacher,
    run_teacher,
    shock_position,
    sod_reference,
    sod_teacher,
    teacher_initial_state,
    teacher_path,
    teacher_spec,
    write_teacher,
)

__all__ = [
    "BGK",
    "CS2",
    "D2Q9",
    "D3Q19",
    "D3Q27",
    "Edge",
    "EquilibriumEdge",
    "Geometry",
    "LBMProblem",
    "Lattice",
    "OutflowEdge",
    "TRT",
    "ZouHePressure",
    "ZouHeVelocity",
    "density",
    "equilibrium",
    "lattice_by_name",
    "macroscopic",
    "shard_populations",
    "sharded_rollout",
    "shift",
    "slab_mesh",
    "stream_halo",
    "stream_periodic",
    "COMPRESSIBLE_VELOCITIES",
    "SOD_CASES",
    "CompressibleMoments",
    "CompressibleProblem",
    "CompressibleState",
    "EulerState",
    "LevermoreSolution",
    "RiemannSolution",
    "RiemannStar",
    "UniformState",
    "compressible_moments",
    "compressible_weights",
    "cylinder_initial_state",
    "f_equilibrium",
    "g_equilibrium",
    "riemann_solution",
    "riemann_star",
    "sample_riemann",
    "sod_initial_state",
    "sod_interface",
    "solve_levermore",
    "NeurDE",
    "NeurDEConfig",
    "RolloutFields",
    "TeacherTrajectory",
    "cached_teacher",
    "count_params",
    "equilibrium_loss",
    "evaluate_rollout",
    "generate_neurde_teacher",
    "generate_teacher",
    "lattice_velocities",
    "levermore_equilibrium",
    "load_teacher",
    "macro_inputs",
    "match_energy_moments",
    "neural_rollout",
    "neural_step",
    "plot_profiles",
    "read_teacher",
    "rollout_loss",
    "run_teacher",
    "shock_position",
    "sod_reference",
    "sod_teacher",
    "teacher_initial_state",
    "teacher_path",
    "teacher_spec",
    "train_neurde",
    "warm_restart_schedule",
    "write_teacher",
]
