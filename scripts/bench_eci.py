"""Benchmark: time per constrained sample, ECI (ours) against gradient guidance (peer).

Both run the same `VelocityFNO` prior (random parameters: the cost does not depend on them) on
Stokes fields of n x n (time x y) with the same number of network evaluations: ECI makes
``n_steps * n_mix`` forward calls and an exact projection per call; DiffusionPDE-style guidance
makes ``n_steps`` forward calls, each with a vector-Jacobian product through the network.
Constraints: the initial condition (k = 5) and the wall boundary (w = 6) of `StokesTask`.

Prints one JSON line per case: ``{"case", "ours", "peer", "unit", "speedup", ...}`` with times in
ms per constrained sample (median of `--repeats` runs after a compiling warm-up), speedup =
peer / ours, and the constraint error (mean squared residual) each method reaches.

Usage: python scripts/bench_eci.py [--n 48] [--batch 16] [--calls 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from sciml.diffusion import (
    EuclideanProjection,
    VelocityFNO,
    WhiteNoise,
    eci_sample,
    guidance_sample,
)
from sciml.metrics import constraint_error
from sciml.pde.sampling_tasks import StokesTask


def _median_time(fn, repeats: int) -> tuple[float, jax.Array]:
    out = jax.block_until_ready(fn(0))
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(r + 1))
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=50, help="network calls per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eta", type=float, default=5.0)
    args = parser.parse_args()

    task = StokesTask(n_t=args.n, n_y=args.n)
    model = VelocityFNO(out_channels=1, modes=12, width=16, n_layers=3, projection_width=64)
    shape = (args.batch, args.n, args.n, 1)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros(shape), jnp.zeros(args.batch))
    prior = WhiteNoise()
    cases = [
        ("ic", task.ic_constraint(5.0), {"n_mix": 1}),
        ("bc", task.bc_constraint(6.0), {"n_mix": 1, "resample_every": 5}),
        ("ic_mix5", task.ic_constraint(5.0), {"n_mix": 5}),
    ]
    for name, constraint, opts in cases:
        calls = args.calls

        def ours(seed, c=constraint, o=opts, calls=calls):
            return eci_sample(
                model.apply,
                params,
                None,
                EuclideanProjection(c),
                key=jax.random.key(seed),
                shape=shape,
                prior=prior,
                n_steps=calls // o["n_mix"],
                **o,
            )

        def peer(seed, c=constraint, calls=calls):
            return guidance_sample(
                model.apply,
                params,
                None,
                c,
                key=jax.random.key(seed),
                shape=shape,
                prior=prior,
                n_steps=calls,
                eta=args.eta,
            )

        t_ours, x_ours = _median_time(ours, args.repeats)
        t_peer, x_peer = _median_time(peer, args.repeats)
        per = 1e3 / args.batch
        print(
            json.dumps(
                {
                    "case": f"stokes{args.n}_{name}",
                    "ours": round(t_ours * per, 3),
                    "peer": round(t_peer * per, 3),
                    "unit": "ms/sample",
                    "speedup": round(t_peer / t_ours, 3),
                    "network_calls": calls,
                    "n_mix": opts["n_mix"],
                    "batch": args.batch,
                    "ce_ours": float(constraint_error(x_ours, constraint)),
                    "ce_peer": float(constraint_error(x_peer, constraint)),
                    "device": jax.devices()[0].device_kind,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
