"""Benchmark: our lattice-Boltzmann step (sciml.pde.lbm) against XLB, in one run.

Prints one JSON line per case: {"case", "ours", "peer", "unit", "speedup", ...} with MLUPS
(million lattice-node updates per second, higher is better) and speedup = ours / peer (above 1:
we are faster). Both sides run the same problem: a periodic box, BGK at tau = 0.8, float32
storage and compute, from the same initial populations (a Taylor-Green vortex); each time is
the median of `--repeats` runs after a warm-up run that also compiles (`*_best`: the fastest run,
less sensitive to other load on a shared machine). `max_abs_diff_u` compares
the two final velocity fields, so a fast wrong peer (or a fast wrong us) shows.

Memory roofline: a fused step reads and writes each population once, 2 * 4 * Q bytes per node in
float32 (72 B for D2Q9, 152 B for D3Q19). `bandwidth_GBps` is this machine's copy bandwidth (a
large NumPy copy, read + write counted), and `ours_fraction_of_bandwidth` is ours * bytes / it.

The peer is XLB (`pip install xlb`, which needs a warp-lang that `import xlb` accepts: 1.10.x;
1.19's `warp.utils` lacks `ScopedTimer`), run with its JAX backend, as its docs do: a Python
loop over its jitted stepper. If XLB cannot be imported or run, the line says why
("peer": null, "peer_error": ...).

Usage: python scripts/bench_lbm.py [--repeats 5] [--quick]
"""

import argparse
import contextlib
import json
import statistics
import sys
import time
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np

from sciml.pde.lbm import BGK, D2Q9, D3Q19, LBMProblem

TAU = 0.8


def copy_bandwidth(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second of ``np.copyto`` on `n_bytes` arrays, read + write counted (median)."""
    a = np.ones(n_bytes // 4, np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - start)
    return 2 * a.nbytes / statistics.median(times)


def taylor_green(lattice, shape, amplitude=0.05):
    """Initial velocity (D, *shape) of a Taylor-Green vortex in the first two axes."""
    k = [2 * np.pi / n for n in shape]
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    u = np.zeros((lattice.d, *shape), np.float32)
    u[0] = -amplitude * np.cos(k[0] * grids[0]) * np.sin(k[1] * grids[1])
    u[1] = amplitude * np.sin(k[0] * grids[0]) * np.cos(k[1] * grids[1])
    return u


def _median_time(run, repeats):
    """(median, fastest) seconds of `repeats` runs after a warm-up run."""
    run()  # compile + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def bench_ours(lattice, shape, steps, repeats):
    problem = LBMProblem(lattice=lattice, shape=shape, collision=BGK(tau=TAU))
    u0 = jnp.asarray(taylor_green(lattice, shape))
    f0 = problem.equilibrium(jnp.ones(shape, jnp.float32), u0)
    state = {}

    def run():
        state["f"] = jax.block_until_ready(problem.rollout(f0, steps)[-1])

    seconds = _median_time(run, repeats)
    return seconds, np.asarray(problem.macroscopic(state["f"])[1])


def bench_layouts(lattice, shape, steps, repeats):
    """MLUPS of the same fused step with populations stored (Q, *space) and (*space, Q).

    Both carry one stacked array through `lax.fori_loop` (the library's `rollout` carries the Q
    fields as a tuple instead, which saves the stacking copy: compare these two with each other).
    """
    problem = LBMProblem(lattice=lattice, shape=shape, collision=BGK(tau=TAU))
    geometry = problem.geometry(jnp.float32)
    f0 = problem.equilibrium(
        jnp.ones(shape, jnp.float32), jnp.asarray(taylor_green(lattice, shape))
    )
    out = {}
    for name, axis in (("q_first", 0), ("q_last", -1)):

        def body(_, f, axis=axis):
            planes = [jnp.take(f, i, axis=axis) for i in range(lattice.q)]
            return jnp.stack(problem.advance(planes, geometry), axis=axis)

        loop = jax.jit(lambda f, body=body: jax.lax.fori_loop(0, steps, body, f))
        start = jnp.moveaxis(f0, 0, axis)
        seconds = _median_time(
            lambda loop=loop, start=start: jax.block_until_ready(loop(start)), repeats
        )
        out[name] = np.prod(shape) * steps / seconds[0] / 1e6
    return out


def bench_xlb(lattice, shape, steps, repeats, backend_name="JAX"):
    import xlb
    from xlb.compute_backend import ComputeBackend
    from xlb.grid import grid_factory
    from xlb.operator.stepper import IncompressibleNavierStokesStepper
    from xlb.precision_policy import PrecisionPolicy

    backend, policy = getattr(ComputeBackend, backend_name), PrecisionPolicy.FP32FP32
    velocity_set = {"D2Q9": xlb.velocity_set.D2Q9, "D3Q19": xlb.velocity_set.D3Q19}[lattice.name]
    velocity_set = velocity_set(precision_policy=policy, compute_backend=backend)
    with contextlib.redirect_stdout(sys.stderr):  # XLB prints its device report on stdout
        xlb.init(
            velocity_set=velocity_set, default_backend=backend, default_precision_policy=policy
        )
    grid = grid_factory(shape, compute_backend=backend)
    stepper = IncompressibleNavierStokesStepper(
        grid=grid, boundary_conditions=[], collision_type="BGK"
    )
    _, _, bc_mask, missing_mask = stepper.prepare_fields()
    # Same initial populations as ours, reordered to XLB's velocity order (matched by vector).
    ours = LBMProblem(lattice=lattice, shape=shape, collision=BGK(tau=TAU))
    f0 = ours.equilibrium(jnp.ones(shape, jnp.float32), jnp.asarray(taylor_green(lattice, shape)))
    xlb_c = np.asarray(velocity_set._c).T  # (Q, D); the NumPy copy exists for every backend
    order = [lattice.velocities.index(tuple(int(x) for x in c)) for c in xlb_c]
    omega = 1.0 / TAU
    state = {}
    if backend_name == "JAX":
        f_init = f0[jnp.asarray(order)]

        def run():
            f_a, f_b = f_init, jnp.zeros_like(f_init)
            for step in range(steps):
                f_a, f_b = stepper(f_a, f_b, bc_mask, missing_mask, omega, step)
                f_a, f_b = f_b, f_a
            state["f"] = jax.block_until_ready(f_a)

        seconds = _median_time(run, repeats)
        u = np.asarray(stepper.macroscopic(state["f"])[1])
    else:  # Warp kernels on the CPU device: fields are warp arrays; time only the steps.
        import warp as wp

        f_a, f_b, bc_mask, missing_mask = stepper.prepare_fields()
        f_init = np.asarray(f0)[order].reshape(f_a.shape)  # Warp grids are 3-D: (Q, nx, ny, 1)

        def run():
            f_a.assign(f_init)
            a, b = f_a, f_b
            for step in range(steps):
                a, b = stepper(a, b, bc_mask, missing_mask, omega, step)
                a, b = b, a
            wp.synchronize()
            state["f"] = a

        seconds = _median_time(run, repeats)
        f_final = jnp.asarray(state["f"].numpy()).reshape(lattice.q, *shape)
        c = jnp.asarray(xlb_c, jnp.float32)
        rho = f_final.sum(0)
        u = np.asarray(jnp.tensordot(c.T, f_final, axes=1) / rho[None])
    return seconds, u, version("xlb"), version("warp-lang")


def bench_case(lattice, shape, steps, repeats, bandwidth):
    cells = int(np.prod(shape))
    bytes_per_cell = 2 * 4 * lattice.q
    seconds, u_ours = bench_ours(lattice, shape, steps, repeats)
    ours, ours_best = (cells * steps / t / 1e6 for t in seconds)
    layouts = bench_layouts(lattice, shape, steps, repeats)
    line = {
        "case": f"{lattice.name} {'x'.join(map(str, shape))} BGK periodic float32, {steps} steps",
        "ours": round(ours, 2),
        "peer": None,
        "unit": "MLUPS",
        "speedup": None,
        "ours_best": round(ours_best, 2),
        "bytes_per_cell": bytes_per_cell,
        "bandwidth_GBps": round(bandwidth / 1e9, 2),
        "ours_fraction_of_bandwidth": round(ours * 1e6 * bytes_per_cell / bandwidth, 4),
        "layout_q_first_MLUPS": round(layouts["q_first"], 2),
        "layout_q_last_MLUPS": round(layouts["q_last"], 2),
        "devices": str(jax.devices()[0].platform),
        "jax": jax.__version__,
    }
    try:
        peer_seconds, u_peer, xlb_version, warp_version = bench_xlb(lattice, shape, steps, repeats)
    except Exception as error:  # report, do not fake: the line says why there is no peer
        line["peer_error"] = f"peer unavailable: {type(error).__name__}: {error}"[:300]
        return line
    peer, peer_best = (cells * steps / t / 1e6 for t in peer_seconds)
    line.update(
        peer=round(peer, 2),
        speedup=round(ours / peer, 3),
        peer_best=round(peer_best, 2),
        peer_name=f"xlb {xlb_version} (JAX backend; warp-lang {warp_version})",
        peer_fraction_of_bandwidth=round(peer * 1e6 * bytes_per_cell / bandwidth, 4),
        max_abs_diff_u=float(np.abs(u_ours - u_peer).max()),
        max_abs_u=float(np.abs(u_ours).max()),
    )
    try:  # the same library with its Warp kernels on the CPU (a second, native-code peer)
        warp_seconds, u_warp, _, _ = bench_xlb(lattice, shape, steps, repeats, "WARP")
        warp = cells * steps / warp_seconds[0] / 1e6
        line.update(
            peer_warp_cpu=round(warp, 2),
            speedup_vs_warp_cpu=round(ours / warp, 3),
            max_abs_diff_u_warp=float(np.abs(u_ours - u_warp).max()),
        )
    except Exception as error:
        line["peer_warp_cpu_error"] = f"{type(error).__name__}: {error}"[:300]
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small grids, few steps (smoke test)")
    args = parser.parse_args()
    bandwidth = copy_bandwidth(1 << 26 if args.quick else 1 << 30)
    cases = [(D2Q9, (512, 512), 100), (D3Q19, (64, 64, 64), 50)]
    if args.quick:
        cases = [(D2Q9, (64, 64), 10), (D3Q19, (16, 16, 16), 5)]
    for lattice, shape, steps in cases:
        print(json.dumps(bench_case(lattice, shape, steps, args.repeats, bandwidth)), flush=True)


if __name__ == "__main__":
    main()
