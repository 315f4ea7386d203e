"""Benchmark: FNO training step and inference against neuraloperator (PyTorch), in one run.

Prints one JSON line per case: {"case", "ours", "peer", "unit", "speedup", ...} with
speedup = peer time / our time (above 1: we are faster). Times are medians over `--repeats`
blocks of `--steps` calls each, after compilation and warm-up.

Both sides run the same architecture: grid coordinates appended to the input, one pointwise
lifting layer to `width`, `n_layers` Fourier layers (spectral convolution + linear skip, GELU
between layers), a two-layer pointwise projection with 2 * width hidden units; neuraloperator's
``n_modes = 2 * modes`` (both signs) is our ``modes`` per sign, and the last (rfft) axis keeps
``modes + 1`` on both sides. Training: relative-L2 loss, AdamW, clipping at 1. Parameter counts
of both sides are printed (neuraloperator's lifting is a two-layer MLP: +1,056 parameters).
Differences left in: our GELU is the tanh form, neuraloperator's the exact one.

Peer: `pip install -e .[bench]` (torch 2.13.0 CPU wheel, neuraloperator 2.0.0); if it is
missing the line says so and no speedup is given.

Usage: python scripts/bench_operators.py [--cases fno2d,fno1d] [--steps 10] [--repeats 5]
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

from sciml.losses import relative_l2
from sciml.operators import FNO
from sciml.train import TrainState, make_train_step

CASES = {
    # name: (spatial shape, batch, width, modes per sign, layers)
    "fno2d": ((64, 64), 16, 32, 8, 4),
    "fno1d": ((256,), 32, 64, 16, 4),  # the quickstart model
}


def _median_time(fn, steps: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(steps)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _problem(shape, batch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape, 1)).astype(np.float32)
    y = np.roll(x, 3, axis=1).astype(np.float32)
    return x, y


def bench_ours(shape, batch, width, modes, layers, steps, repeats) -> dict:
    ndim = len(shape)
    model = FNO(
        out_channels=1,
        modes=(modes,) * (ndim - 1) + (modes + 1,),
        width=width,
        n_layers=layers,
        projection_width=2 * width,
    )
    x, y = (jnp.asarray(a) for a in _problem(shape, batch))
    params = model.init(jax.random.key(0), x[:1])
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))

    def loss_fn(p, b, key):
        return relative_l2(model.apply(p, b[0]), b[1]), {}

    step = make_train_step(loss_fn, optimizer)
    state = TrainState.create(params, optimizer, jax.random.key(1))
    start = time.perf_counter()
    compiled = step.lower(state, (x, y)).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def train(n):
        s = holder["state"]
        for _ in range(n):
            s, metrics = compiled(s, (x, y))
        jax.block_until_ready(metrics["loss"])
        holder["state"] = s

    forward = jax.jit(model.apply)

    def infer(n):
        for _ in range(n):
            out = forward(params, x)
        jax.block_until_ready(out)

    train(3)
    infer(3)
    return {
        "train": _median_time(train, steps, repeats),
        "forward": _median_time(infer, steps, repeats),
        "compile_s": compile_s,
        "params": int(sum(p.size for p in jax.tree.leaves(params))),
    }


def bench_peer(shape, batch, width, modes, layers, steps, repeats) -> dict:
    try:
        import neuralop
        import torch
        from neuralop.models import FNO as NeuralopFNO
    except ImportError as err:
        return {"error": f"peer not installed ({err}): pip install -e .[bench]"}
    torch.manual_seed(0)
    model = NeuralopFNO(
        n_modes=(2 * modes,) * len(shape),
        in_channels=1,
        out_channels=1,
        hidden_channels=width,
        n_layers=layers,
        lifting_channel_ratio=1,
        projection_channel_ratio=2,
        use_channel_mlp=False,
        fno_skip="linear",
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = (torch.tensor(np.moveaxis(a, -1, 1)).contiguous() for a in _problem(shape, batch))

    def train(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            err = (model(x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
            err.mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    def infer(n):
        with torch.no_grad():
            for _ in range(n):
                model(x)

    train(3)
    infer(3)
    return {
        "train": _median_time(train, steps, repeats),
        "forward": _median_time(infer, steps, repeats),
        "name": f"neuraloperator {neuralop.__version__} FNO (torch {torch.__version__})",
        "params": int(sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="fno2d,fno1d")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in args.cases.split(","):
        shape, batch, width, modes, layers = CASES[name]
        sizes = (shape, batch, width, modes, layers, args.steps, args.repeats)
        ours, peer = bench_ours(*sizes), bench_peer(*sizes)
        res = "x".join(map(str, shape))
        for kind, unit in (("train", "s/step"), ("forward", "s/batch")):
            line = {
                "case": f"{name}_{kind}_n{res}_b{batch}_w{width}_m{modes}_l{layers}",
                "ours": ours[kind],
                "peer": peer.get(kind),
                "unit": unit,
                "speedup": peer[kind] / ours[kind] if kind in peer else None,
                "ours_compile_s": ours["compile_s"],
                "ours_params": ours["params"],
                "peer_name": peer.get("name"),
                "peer_params": peer.get("params"),
                "peer_threads": peer.get("threads"),
                "peer_error": peer.get("error"),
                "jax": jax.__version__,
                "device": jax.devices()[0].device_kind,
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
