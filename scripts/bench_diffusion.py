"""Benchmark: FLEX (ours) against an equally sized DiffusionUNet (peer) for super-resolution.

Both networks get the same widths and ResBlocks per level (`tiny_flex` by default, or FLEX-small's
with ``--size small``); FLEX adds its task encoder and transformer bottleneck, the U-Net two
middle ResBlocks instead. Cases: ``sample_2step`` (samples/s of FLEX's default 2-step DDIM, base +
residual) and ``train_step`` (train steps/s, v-prediction L1 loss, AdamW), on random fields of the
Kolmogorov SR shapes (the cost does not depend on the values).

Prints one JSON line per case: ``{"case", "ours", "peer", "unit", "speedup", ...}``, the median
of `--repeats` runs after a compiling warm-up; speedup = ours / peer (higher is better for a rate).

Usage: python scripts/bench_diffusion.py [--n 64] [--batch 16] [--repeats 5] [--size tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sciml.diffusion import CosineVP, DiffusionUNet, ddim
from sciml.diffusion.superres import (
    KolmogorovSR,
    conditioning,
    make_loss,
    residual_model,
    tiny_flex,
)
from sciml.train import TrainState, make_train_step


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn(0))
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(r + 1))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny")
    args = parser.parse_args()

    config = KolmogorovSR(n=args.n)
    if args.size == "tiny":
        flex = tiny_flex()
    else:
        flex = tiny_flex(
            channels=(64, 128, 128, 256), blocks=(2, 3, 3, 3), depth=13, heads=4, groups=32
        )
    unet = DiffusionUNet(
        out_channels=1,
        channels=flex.channels,
        blocks=flex.blocks,
        groups=flex.groups,
        padding=flex.padding,
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, args.n, args.n, 1)), jnp.float32)
    cond = conditioning(x, np.full((args.batch,), 3e-3), config)
    residual, schedule = residual_model(config), CosineVP()
    optimizer = optax.adamw(1e-3)

    results: dict[str, dict[str, float]] = {}
    n_params = {}
    for name, model in (("ours", flex), ("peer", unet)):
        params = jax.jit(model.init)(
            jax.random.key(0), x[:1], jnp.zeros((1,)), jax.tree.map(lambda a: a[:1], cond)
        )
        n_params[name] = sum(p.size for p in jax.tree.leaves(params))

        def sample(seed, model=model, params=params):
            return residual.sample(
                ddim,
                model.apply,
                params,
                cond,
                key=jax.random.key(seed),
                schedule=schedule,
                n_steps=2,
            )

        state = TrainState.create(params, optimizer, jax.random.key(1))
        step = make_train_step(make_loss(model, residual, schedule), optimizer)
        holder = {"state": state}

        def train(_, step=step, holder=holder):
            holder["state"], metrics = step(holder["state"], (x, cond))
            return metrics["loss"]

        results.setdefault("sample_2step", {})[name] = args.batch / _median_seconds(
            sample, args.repeats
        )
        results.setdefault("train_step", {})[name] = 1.0 / _median_seconds(train, args.repeats)

    units = {"sample_2step": "samples/s", "train_step": "steps/s"}
    for case, r in results.items():
        line = {
            "case": case,
            "ours": r["ours"],
            "peer": r["peer"],
            "unit": units[case],
            "speedup": r["ours"] / r["peer"],
            "grid": args.n,
            "batch": args.batch,
            "size": args.size,
            "params_ours": n_params["ours"],
            "params_peer": n_params["peer"],
            "device": jax.devices()[0].platform,
        }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
