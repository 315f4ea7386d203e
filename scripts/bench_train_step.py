"""Benchmark: compiled train step of the quickstart FNO against a PyTorch peer, in one run.

Prints one JSON line per case: {"case", "ours", "peer", "unit", "speedup", ...} with
speedup = peer time / our time (above 1: we are faster). Times are the median over `--repeats`
blocks of `--steps` steps each, after warm-up; our compile time is reported separately.

Peer: neuraloperator's FNO (PyTorch) when installed (`pip install -e .[bench]`), else the FNO
paper's reference architecture written in plain PyTorch below (same width, modes, depth).
Both sides: batch of the quickstart config, its resolution, relative-L2 loss, AdamW.

Usage: python scripts/bench_train_step.py [--steps 20] [--repeats 5]
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

from sciml import config
from sciml.losses import relative_l2
from sciml.train import TrainState, make_optimizer, make_train_step


def _median_time(fn, steps: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(steps)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def bench_ours(cfg, x: np.ndarray, y: np.ndarray, steps: int, repeats: int) -> dict:
    model = config.build(cfg.model, "model")
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]))
    optimizer = make_optimizer(cfg.train)

    def loss_fn(p, batch, key):
        return relative_l2(model.apply(p, batch[0]), batch[1]), {}

    step = make_train_step(loss_fn, optimizer)
    state = TrainState.create(params, optimizer, jax.random.key(1))
    batch = (jnp.asarray(x), jnp.asarray(y))
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def run(n):
        s = holder["state"]
        for _ in range(n):
            s, metrics = compiled(s, batch)
        jax.block_until_ready(metrics["loss"])
        holder["state"] = s

    run(3)  # warm-up
    n_params = sum(p.size for p in jax.tree.leaves(params))
    return {
        "step_s": _median_time(run, steps, repeats),
        "compile_s": compile_s,
        "params": int(n_params),
    }


def _torch_model(width: int, modes: int, n_layers: int, projection: int):
    """The peer model: neuraloperator's FNO if importable, else a plain-PyTorch FNO-1D."""
    import torch
    from torch import nn

    try:
        import neuralop
        from neuralop.models import FNO as NeuralopFNO

        model = NeuralopFNO(
            n_modes=(2 * modes,),
            in_channels=1,
            out_channels=1,
            hidden_channels=width,
            n_layers=n_layers,
            projection_channel_ratio=projection // width,
            lifting_channel_ratio=1,
            use_channel_mlp=False,
            fno_skip="linear",
        )
        return (
            model,
            f"neuraloperator {neuralop.__version__} FNO (torch {torch.__version__})",
            "channels_first",
        )
    except Exception:  # not installed, or an API of another version
        pass

    class SpectralConv1d(nn.Module):
        def __init__(self, c: int, m: int):
            super().__init__()
            self.m = m
            self.weight = nn.Parameter(torch.rand(c, c, m, dtype=torch.cfloat) / (c * c))

        def forward(self, v):
            spec = torch.fft.rfft(v)
            out = torch.zeros(v.shape[0], v.shape[1], spec.shape[-1], dtype=torch.cfloat)
            out[..., : self.m] = torch.einsum("bix,iox->box", spec[..., : self.m], self.weight)
            return torch.fft.irfft(out, n=v.shape[-1])

    class FNO1d(nn.Module):
        def __init__(self):
            super().__init__()
            self.lift = nn.Linear(2, width)
            self.spectral = nn.ModuleList([SpectralConv1d(width, modes) for _ in range(n_layers)])
            self.pointwise = nn.ModuleList([nn.Conv1d(width, width, 1) for _ in range(n_layers)])
            self.proj = nn.Sequential(
                nn.Linear(width, projection), nn.GELU("tanh"), nn.Linear(projection, 1)
            )

        def forward(self, x):  # x: (batch, n, 1), channels-last like ours
            grid = torch.linspace(0, 1, x.shape[1] + 1)[:-1].expand(x.shape[0], -1)[..., None]
            v = self.lift(torch.cat([x, grid], -1)).permute(0, 2, 1)
            for i, (k, w) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
                v = k(v) + w(v)
                if i < n_layers - 1:
                    v = nn.functional.gelu(v, approximate="tanh")
            return self.proj(v.permute(0, 2, 1))

    return (
        FNO1d(),
        f"plain PyTorch FNO-1D (torch {torch.__version__}; neuraloperator not installed)",
        "channels_last",
    )


def bench_peer(cfg, x: np.ndarray, y: np.ndarray, steps: int, repeats: int) -> dict:
    try:
        import torch
    except ImportError:
        return {"error": "PyTorch not installed: pip install -e .[bench]"}
    torch.manual_seed(0)
    m = cfg.model
    model, name, layout = _torch_model(
        m["width"], m["modes"], m["n_layers"], m.get("projection_width", 128)
    )
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    xt, yt = torch.tensor(x), torch.tensor(y)
    if layout == "channels_first":
        xt, yt = xt.permute(0, 2, 1).contiguous(), yt.permute(0, 2, 1).contiguous()

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            pred = model(xt)
            err = (pred - yt).flatten(1).norm(dim=1) / yt.flatten(1).norm(dim=1)
            loss = err.mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip or 1e30)
            opt.step()

    run(3)
    n_params = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    return {
        "step_s": _median_time(run, steps, repeats),
        "name": name,
        "params": int(n_params),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = config.load(args.config)
    n = cfg.data.generator["resolution"] if cfg.data.generator else 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(cfg.train.batch_size, n, 1)).astype(np.float32)
    y = np.roll(x, 5, axis=1).astype(np.float32)

    ours = bench_ours(cfg, x, y, args.steps, args.repeats)
    peer = bench_peer(cfg, x, y, args.steps, args.repeats)
    case = (
        f"fno1d_train_step_w{cfg.model['width']}_m{cfg.model['modes']}_n{n}_b{cfg.train.batch_size}"
    )
    line = {
        "case": case,
        "ours": ours["step_s"],
        "peer": peer.get("step_s"),
        "unit": "s/step",
        "speedup": peer["step_s"] / ours["step_s"] if "step_s" in peer else None,
        "ours_steps_per_s": 1 / ours["step_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_params": ours["params"],
        "peer_name": peer.get("name"),
        "peer_params": peer.get("params"),
        "peer_error": peer.get("error"),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "device": jax.devices()[0].device_kind,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
