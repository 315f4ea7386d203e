"""Benchmark: cost of the DPPL (variance-weighted Gaussian projection) in a training step.

Set-up (ProbHardE2E's PDE tasks at 64^2): an FNO backbone maps (batch, 64, 64, 1) to a mean, a
variance and a rank-r factor per point, i.e. a Gaussian over n = 64 x 64 = 4096 unknowns (time x
space) with low-rank + diagonal covariance; the constraint is conservation at every time (m = 64
rows ``sum_x w_x u(t, x) = U(t)``). The loss is the closed-form Gaussian CRPS of the projected
marginals, summed.

Printed lines (one JSON per case; speedup = peer / ours; times are medians over `--repeats`
repeats of `--steps` calls, the cases of a line timed in alternation so that a busy machine slows
both alike; `*_best` fields are the fastest repeat):
- `dppl_vs_dense`: forward + backward of the projection and CRPS alone, ours (structured: never
  forms n x n; for conservation rows, no m x m either) against the same conditioning with the
  covariance formed densely (the peer: what a direct implementation of the equations does).
  Results agree to float32 round-off (checked).
- `dppl_overhead`: ours = forward + backward from the backbone's output through the Gaussian
  parameterisation, the projection and the CRPS; peer = the backbone's forward (same batch); the
  issue's target is ours / peer (`overhead_vs_backbone_forward`) below 0.1. Also reported:
  `unprojected_loss` (the same forward + backward without the projection) and
  `dppl_net_overhead_vs_backbone_forward` = (ours - unprojected_loss) / peer, the projection's
  own share.
- `train_step`: a whole training step with the DPPL against the same step without it (CRPS of
  the unprojected Gaussian).

Usage: python scripts/bench_projection.py [--rank 8] [--batch 16] [--steps 10] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from sciml.constraints import (
    FullCovariance,
    Gaussian,
    LowRankCovariance,
    conservation_constraint,
    project_gaussian,
)
from sciml.operators import FNO
from sciml.scoring import crps_gaussian


def _interleaved_times(cases: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each ``name: (fn, args, steps)``, one list entry per repeat.

    The cases run in turn within every repeat, so load from other processes hits all alike.
    """
    for fn, args, _ in cases.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, args, steps) in cases.items():
            start = time.perf_counter()
            for _ in range(steps):
                out = fn(*args)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / steps)
    return times


def _gaussians(out, rank: int, dense: bool):
    """Backbone output (b, t, x, 2 + r) -> batched Gaussian over n = t * x unknowns."""
    b = out.shape[0]
    mean = out[..., 0].reshape(b, -1)
    variance = jax.nn.softplus(out[..., 1]).reshape(b, -1) + 1e-4
    factor = 0.1 * out[..., 2 : 2 + rank].reshape(b, -1, rank)
    cov = LowRankCovariance(factor=factor, diagonal_part=variance)
    if dense:
        cov = FullCovariance(matrix=jax.vmap(lambda c: c.dense())(cov))
    return Gaussian(mean=mean, cov=cov)


def _projected_crps(out, target, constraint, rank: int, dense: bool):
    prior = _gaussians(out, rank, dense)
    post = jax.vmap(project_gaussian, in_axes=(0, None))(prior, constraint)
    variance = jax.vmap(lambda g: g.variance())(post)
    return crps_gaussian(post.mean, variance, target.reshape(target.shape[0], -1), reduction="sum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)  # the dense peer needs b x 64 MiB
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    nt = nx = 64
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, nt, nx, 1)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(args.batch, nt, nx)), jnp.float32)
    weights = np.full(nx, 1.0 / nx, np.float32)
    constraint = conservation_constraint(weights, target[0].mean(axis=1))

    model = FNO(out_channels=2 + args.rank, modes=12, width=32, n_layers=4)
    params = model.init(jax.random.key(0), x[:1])
    out = model.apply(params, x)
    common = {"n": nt * nx, "m": nt, "rank": args.rank, "batch": args.batch}
    device = jax.devices()[0].device_kind

    def grad_of(dense):
        return jax.jit(jax.grad(lambda o: _projected_crps(o, target, constraint, args.rank, dense)))

    ours_fn, dense_fn = grad_of(False), grad_of(True)
    np.testing.assert_allclose(ours_fn(out), dense_fn(out), rtol=2e-3, atol=1e-3 * 4096)

    def unprojected(o):
        prior = _gaussians(o, args.rank, dense=False)
        variance = jax.vmap(lambda g: g.variance())(prior)
        return crps_gaussian(prior.mean, variance, target.reshape(args.batch, -1), reduction="sum")

    def loss(p, project):
        o = model.apply(p, x)
        if project:
            return _projected_crps(o, target, constraint, args.rank, dense=False)
        return unprojected(o)

    main_cases = {
        "ours": (ours_fn, (out,), args.steps),
        "unprojected": (jax.jit(jax.grad(unprojected)), (out,), args.steps),
        "forward": (jax.jit(model.apply), (params, x), args.steps),
    }
    times = _interleaved_times(main_cases, args.repeats)
    dense_steps = max(1, args.steps // 5)
    times |= _interleaved_times({"dense": (dense_fn, (out,), dense_steps)}, args.repeats)
    train_cases = {
        "with": (jax.jit(jax.grad(lambda p: loss(p, True))), (params,), args.steps),
        "without": (jax.jit(jax.grad(lambda p: loss(p, False))), (params,), args.steps),
    }
    times |= _interleaved_times(train_cases, args.repeats)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    lines = [
        ("dppl_vs_dense", "ours", "dense", "dense conditioning in JAX (n x n covariance)"),
        ("dppl_overhead", "ours", "forward", "FNO backbone forward (width 32, 12 modes, 4 layers)"),
        ("train_step", "with", "without", "the same training step without the DPPL"),
    ]
    for case, our_key, peer_key, peer_name in lines:
        our_s, peer_s = median[our_key], median[peer_key]
        line = {
            "case": f"{case}_n{nt * nx}_r{args.rank}_m{nt}_b{args.batch}",
            "ours": our_s,
            "peer": peer_s,
            "unit": "s",
            "speedup": peer_s / our_s,
            "ours_best": best[our_key],
            "peer_best": best[peer_key],
            "peer_name": peer_name,
            **common,
            "repeats": args.repeats,
            "jax": jax.__version__,
            "device": device,
        }
        if case == "dppl_overhead":
            net = median["ours"] - median["unprojected"]
            line |= {
                "overhead_vs_backbone_forward": our_s / peer_s,
                "overhead_vs_backbone_forward_best": best["ours"] / best["forward"],
                "unprojected_loss": median["unprojected"],
                "dppl_net_overhead_vs_backbone_forward": net / peer_s,
            }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
