"""Lid-driven cavity at Re = 100 against Ghia, Ghia & Shin (1982), with sciml.pde.lbm.

A square cavity of n x n fluid nodes (walls half-way: the side is exactly n), D2Q9, lid velocity
U = 0.1 (lattice units), viscosity ``nu = U n / Re``. Walls are solid nodes with half-way
bounce-back; the lid is the top row of solid nodes moving at U (Ladd's moving-wall term). The
run stops when the velocity changes by less than `--tol` * U over `--chunk` steps. The u-velocity
along the vertical centreline (x = 1/2: the mean of the two middle columns) is interpolated
linearly at Ghia's points and compared; the script prints the table and one JSON line with the
maximum deviation relative to U.

Reference: U. Ghia, K. N. Ghia, C. T. Shin, "High-Re solutions for incompressible flow using the
Navier-Stokes equations and a multigrid method", J. Comput. Phys. 48 (1982) 387-411, Table I
(u along the vertical line through the geometric centre, Re = 100, 129 x 129 grid).

Usage: python scripts/lbm_cavity.py [--n 128] [--collision bgk|trt] [--x64]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from sciml.pde.lbm import BGK, D2Q9, TRT, LBMProblem

# Ghia et al. (1982), Table I, Re = 100: (y, u / U) on the vertical centreline.
GHIA_RE100_U = (
    (1.0000, 1.00000),
    (0.9766, 0.84123),
    (0.9688, 0.78871),
    (0.9609, 0.73722),
    (0.9531, 0.68717),
    (0.8516, 0.23151),
    (0.7344, 0.00332),
    (0.6172, -0.13641),
    (0.5000, -0.20581),
    (0.4531, -0.21090),
    (0.2813, -0.15662),
    (0.1719, -0.10150),
    (0.1016, -0.06434),
    (0.0703, -0.04775),
    (0.0625, -0.04192),
    (0.0547, -0.03717),
    (0.0000, 0.00000),
)


def cavity(n: int, reynolds: float, lid: float, collision: str) -> LBMProblem:
    """The cavity: (n + 2)^2 nodes, a solid frame, the top row moving at `lid` along x."""
    nu = lid * n / reynolds
    tau = 3 * nu + 0.5
    shape = (n + 2, n + 2)
    solid = np.zeros(shape, bool)
    solid[0, :] = solid[-1, :] = solid[:, 0] = solid[:, -1] = True
    wall_velocity = np.zeros((2, *shape))
    wall_velocity[0, :, -1] = lid
    model = BGK(tau=tau) if collision == "bgk" else TRT(tau=tau)
    return LBMProblem(
        lattice=D2Q9, shape=shape, collision=model, solid=solid, wall_velocity=wall_velocity
    )


def centreline_u(problem: LBMProblem, f, n: int, lid: float) -> tuple[np.ndarray, np.ndarray]:
    """(y, u / U) on x = 1/2, walls included (u = 0 at y = 0, u = U at y = 1)."""
    _, u = problem.macroscopic(f)
    u = np.asarray(u[0], dtype=np.float64)
    middle = 0.5 * (u[n // 2, 1:-1] + u[n // 2 + 1, 1:-1])  # fluid columns n/2 - 1 and n/2
    y = (np.arange(n) + 0.5) / n
    return np.concatenate([[0.0], y, [1.0]]), np.concatenate([[0.0], middle / lid, [1.0]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="fluid nodes per side (even)")
    parser.add_argument("--reynolds", type=float, default=100.0)
    parser.add_argument("--lid", type=float, default=0.1, help="lid velocity, lattice units")
    parser.add_argument("--collision", choices=["bgk", "trt"], default="bgk")
    parser.add_argument("--chunk", type=int, default=2000, help="steps between convergence checks")
    parser.add_argument(
        "--tol",
        type=float,
        default=None,
        help="default 1e-5 (float32 noise floor ~5e-6), 1e-8 (x64)",
    )
    parser.add_argument("--max-steps", type=int, default=400_000)
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    args = parser.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.x64 else jnp.float32
    tol = args.tol if args.tol is not None else (1e-8 if args.x64 else 1e-5)
    n = args.n
    problem = cavity(n, args.reynolds, args.lid, args.collision)
    f = problem.equilibrium(jnp.ones(problem.shape, dtype), jnp.zeros((2, *problem.shape), dtype))
    start, steps, change = time.perf_counter(), 0, np.inf
    _, u_old = problem.macroscopic(f)
    while steps < args.max_steps and change > tol:
        f = problem.rollout(f, args.chunk)[-1]
        steps += args.chunk
        _, u_new = problem.macroscopic(f)
        change = float(jnp.abs(u_new - u_old).max()) / args.lid
        u_old = u_new
    seconds = time.perf_counter() - start

    y, u = centreline_u(problem, f, n, args.lid)
    print(f"{'y':>8} {'Ghia u/U':>10} {'LBM u/U':>10} {'diff':>9}")
    deviations = []
    for y_ref, u_ref in GHIA_RE100_U:
        ours = float(np.interp(y_ref, y, u))
        deviations.append(abs(ours - u_ref))
        print(f"{y_ref:8.4f} {u_ref:10.5f} {ours:10.5f} {ours - u_ref:9.5f}")
    result = {
        "case": f"lid-driven cavity Re={args.reynolds:g}, {n}^2, D2Q9 {args.collision.upper()}, "
        f"{'float64' if args.x64 else 'float32'}",
        "max_abs_deviation_over_U": round(max(deviations), 5),
        "mean_abs_deviation_over_U": round(float(np.mean(deviations)), 5),
        "steps": steps,
        "last_change_over_U": change,
        "tau": float(problem.collision.tau),
        "seconds": round(seconds, 1),
        "MLUPS": round(np.prod(problem.shape) * steps / seconds / 1e6, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
