"""FLEX residual forecasting of Kolmogorov flow at CPU size, end to end.

Generates 64^2 vorticity trajectories at 3 training viscosities and 1 held-out one
(`KolmogorovForecast`: snapshots 0.2 time units apart, 6 per trajectory), builds
(x_{n-1}, x_n) -> x_{n+1} pairs within each trajectory, trains a tiny FLEX on the residual
x_{n+1} - x_n and a deterministic regression of the same network (MSE on the same residual),
evaluates persistence, linear extrapolation, the regression and FLEX with 2 and 16 DDIM steps on
test trajectories of every viscosity, prints one JSON table per split and then a summary (target
variances raw vs residual, losses, timings), and saves the FLEX train state with orbax under
`--run-dir` (metadata config.task.kind = "forecast", so `sciml sample` draws forecasts from it).

Usage: python scripts/flex_forecast.py [--steps 200] [--batch 16] [--trajectories 16]
       [--regression-steps 200 (0: no regression)] [--preset cpu|gpu]

`--preset gpu` is the GPU-sized run (256^2, FLEX-small, 20k steps of batch 32, lower
viscosities; see PRESETS); explicit options override the preset's values.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import jax
import numpy as np

from sciml.diffusion.forecast import (
    KolmogorovForecast,
    checkpoint_metadata,
    conditioning,
    evaluate_forecast,
    generate_split,
    residual_model,
)
from sciml.diffusion.kolmogorov import (
    GPU_FLOW,
    GPU_MODEL,
    residual_variance,
    tiny_flex,
    train_diffusion,
    train_regression,
)
from sciml.train import Checkpointer

# Run sizes. "cpu": the tiny FLEX on 64^2 (minutes on 2 cores). "gpu": FLEX's scale (256^2,
# FLEX-small, `GPU_FLOW` / `GPU_MODEL`) for one H100, snapshots 0.1 apart (persistence RFNE
# ~0.6 at 0.2 on that grid, measured on one trajectory per viscosity); not yet run.
PRESETS = {
    "cpu": {
        "task": {},
        "model": {},
        "steps": 200,
        "batch": 16,
        "optimizer": "adamw",
        "betas": None,
        "lr": 2e-3,
        "ema": 0.99,
        "trajectories": 16,
        "test_trajectories": 2,
    },
    "gpu": {
        "task": {**GPU_FLOW, "spacing": 0.1},
        "model": GPU_MODEL,
        "steps": 20000,
        "batch": 32,
        "optimizer": "lion",  # FLEX's optimizer and settings
        "betas": (0.9, 0.98),
        "lr": 1e-5,
        "ema": 0.999,
        "trajectories": 64,
        "test_trajectories": 4,
    },
}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--steps", type=int, help="default: the preset's (cpu 200)")
    parser.add_argument("--regression-steps", type=int, default=None, help="default --steps")
    parser.add_argument("--batch", type=int, help="default: the preset's (cpu 16)")
    parser.add_argument("--lr", type=float, help="default: the preset's (cpu 2e-3)")
    parser.add_argument("--ema", type=float, help="EMA decay; default: the preset's (cpu 0.99)")
    parser.add_argument(
        "--optimizer", choices=["adamw", "lion"], help="default: the preset's (cpu adamw)"
    )
    parser.add_argument("--trajectories", type=int, help="training, per viscosity (cpu 16)")
    parser.add_argument("--test-trajectories", type=int, help="per viscosity (cpu 2)")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--run-dir", default="runs/flex_forecast")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    for name, value in preset.items():
        if name not in ("task", "model", "betas") and getattr(args, name) is None:
            setattr(args, name, value)
    if args.regression_steps is None:
        args.regression_steps = args.steps

    start = time.perf_counter()
    config = KolmogorovForecast(**preset["task"])
    key = jax.random.key(args.seed)
    k_train, k_test, k_fit, k_reg, k_eval = jax.random.split(key, 5)
    train_past, train_x, train_nu, tests = [], [], [], {}
    for i, nu in enumerate(config.viscosities):
        if nu in config.train_viscosities:
            past, x = generate_split(jax.random.fold_in(k_train, i), config, nu, args.trajectories)
            train_past.append(past)
            train_x.append(x)
            train_nu.append(np.full((len(x),), nu))
        past, x = generate_split(jax.random.fold_in(k_test, i), config, nu, args.test_trajectories)
        held = "heldout " if nu in config.test_viscosities else ""
        tests[f"{held}nu={nu:g}"] = (past, x, np.full((len(x),), nu))
    x = np.concatenate(train_x)
    scale = float(x.std())
    x = x / scale
    cond = conditioning(np.concatenate(train_past) / scale, np.concatenate(train_nu), config)
    t_data = time.perf_counter() - start

    residual = residual_model(config)
    model = tiny_flex(**preset["model"])
    train_kw = {
        "residual": residual,
        "batch_size": args.batch,
        "lr": args.lr,
        "ema_decay": args.ema,
        "optimizer": args.optimizer,
        "betas": preset["betas"] if args.optimizer == preset["optimizer"] else None,
    }
    state, losses = train_diffusion(k_fit, model, x, cond, steps=args.steps, **train_kw)
    t_train = time.perf_counter() - start - t_data
    regression, reg_losses = None, []
    if args.regression_steps > 0:
        reg_state, reg_losses = train_regression(
            k_reg, model, x, cond, steps=args.regression_steps, **train_kw
        )
        regression = (model, reg_state.eval_params)
    t_regression = time.perf_counter() - start - t_data - t_train

    splits = {
        name: (w / scale, conditioning(p / scale, v, config)) for name, (p, w, v) in tests.items()
    }
    table = evaluate_forecast(
        model,
        state.eval_params,
        splits,
        k_eval,
        config,
        steps=(2, 16),
        n_members=args.members,
        regression=regression,
    )
    t_eval = time.perf_counter() - start - t_data - t_train - t_regression

    run_dir = args.run_dir
    metadata = checkpoint_metadata(model, config, scale)
    metadata["config"] |= vars(args)
    # The script always trains from scratch: replace the checkpoint of an earlier run.
    shutil.rmtree(f"{run_dir}/checkpoints", ignore_errors=True)
    ckpt = Checkpointer(f"{run_dir}/checkpoints", keep=1, best_metric="heldout_rfne_flex_2")
    heldout = next(v for k, v in table.items() if k.startswith("heldout"))
    ckpt.save(args.steps, state, metadata, {"heldout_rfne_flex_2": heldout["flex_2"]["rfne"]})
    ckpt.close()

    for name, row in table.items():
        print(json.dumps({"split": name, **row}, indent=1))
    summary = {
        "n_train": int(x.shape[0]),
        "spacing": config.spacing,
        "train_variance": residual_variance(x, cond, residual),
        "loss_first10": float(np.mean(losses[:10])),
        "loss_last10": float(np.mean(losses[-10:])),
        "regression_mse_last10": float(np.mean(reg_losses[-10:])) if reg_losses else None,
        "seconds": {"data": t_data, "train": t_train, "regression": t_regression, "eval": t_eval},
        "checkpoint": f"{run_dir}/checkpoints",
    }
    print(json.dumps(summary, indent=1))
    return run_dir


if __name__ == "__main__":
    main()
