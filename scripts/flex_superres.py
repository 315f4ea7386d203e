"""FLEX residual super-resolution of Kolmogorov flow at CPU size, end to end.

Generates 64^2 vorticity at 3 training viscosities and 1 held-out one (`KolmogorovSR`), trains a
tiny FLEX on the residual to the bicubic upsampling of the x4 point-subsampled field (the paper:
x8 from 256^2), evaluates FLEX with 2 and 16 DDIM steps against bicubic on test trajectories of
every viscosity, prints one JSON table, and saves the train state with orbax
(`sciml.train.Checkpointer`, metadata in the layout of the other runs) under `--run-dir`.

Usage: python scripts/flex_superres.py [--steps 5000] [--batch 16] [--trajectories 96] [--preset cpu|gpu]
    [--eta E] [--t-min T] [--noisy-end]    (the evaluation's DDIM options, as `sciml sample`)

`--preset gpu` is the GPU-sized run (x8 from 256^2, FLEX-small, 20k steps of batch 32, lower
viscosities; see PRESETS); explicit options override the preset's values.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import jax
import numpy as np

from sciml.cli import add_ddim_arguments, ddim_options
from sciml.diffusion.kolmogorov import GPU_FLOW, GPU_MODEL
from sciml.diffusion.superres import (
    KolmogorovSR,
    checkpoint_metadata,
    conditioning,
    evaluate_superres,
    generate_vorticity,
    residual_model,
    residual_variance,
    tiny_flex,
    train_superres,
)
from sciml.errors import SciMLError
from sciml.train import Checkpointer

# Run sizes. "cpu": the tiny FLEX with 2 ResBlocks per level (463k parameters), 64^2 and x4
# (about 50 minutes on 2 cores). "gpu": FLEX's scale, x8 from 256^2 (coarse 32^2) with
# FLEX-small (`GPU_FLOW` / `GPU_MODEL`) for one H100; not yet run.
PRESETS = {
    "cpu": {
        "task": {},
        "model": {"blocks": (2, 2, 2)},
        "steps": 5000,
        "batch": 16,
        "optimizer": "adamw",
        "betas": None,
        "lr": 2e-3,
        "ema": 0.99,
        "trajectories": 96,
        "test_trajectories": 2,
    },
    "gpu": {
        "task": {**GPU_FLOW, "factor": 8},
        "model": GPU_MODEL,
        "steps": 20000,
        "batch": 32,
        "optimizer": "lion",  # FLEX's optimizer and settings
        "betas": (0.9, 0.98),
        "lr": 1e-5,
        "ema": 0.999,
        "trajectories": 32,
        "test_trajectories": 2,
    },
}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--steps", type=int, help="default: the preset's (cpu 5000)")
    parser.add_argument("--batch", type=int, help="default: the preset's (cpu 16)")
    parser.add_argument("--lr", type=float, help="default: the preset's (cpu 2e-3)")
    parser.add_argument("--ema", type=float, help="EMA decay; default: the preset's (cpu 0.99)")
    parser.add_argument(
        "--optimizer", choices=["adamw", "lion"], help="default: the preset's (cpu adamw)"
    )
    parser.add_argument("--trajectories", type=int, help="training, per viscosity (cpu 96)")
    parser.add_argument("--test-trajectories", type=int, help="per viscosity (cpu 2)")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--run-dir", default="runs/flex_superres")
    parser.add_argument("--seed", type=int, default=0)
    add_ddim_arguments(parser)
    args = parser.parse_args(argv)
    try:
        sampler = ddim_options(args)
    except SciMLError as err:
        parser.error(str(err))
    preset = PRESETS[args.preset]
    for name, value in preset.items():
        if name not in ("task", "model", "betas") and getattr(args, name) is None:
            setattr(args, name, value)

    start = time.perf_counter()
    config = KolmogorovSR(**preset["task"])
    key = jax.random.key(args.seed)
    k_train, k_test, k_fit, k_eval = jax.random.split(key, 4)
    train_x, train_nu, tests = [], [], {}
    for i, nu in enumerate(config.train_viscosities + config.test_viscosities):
        if nu in config.train_viscosities:
            w = generate_vorticity(jax.random.fold_in(k_train, i), config, nu, args.trajectories)
            train_x.append(w)
            train_nu.append(np.full((len(w),), nu))
        w = generate_vorticity(jax.random.fold_in(k_test, i), config, nu, args.test_trajectories)
        held = "heldout " if nu in config.test_viscosities else ""
        tests[f"{held}nu={nu:g}"] = (w, np.full((len(w),), nu))
    x = np.concatenate(train_x)
    scale = float(x.std())
    x = x / scale
    nu = np.concatenate(train_nu)
    cond = conditioning(x, nu, config)
    t_data = time.perf_counter() - start

    residual = residual_model(config)
    model = tiny_flex(**preset["model"])
    state, losses = train_superres(
        k_fit,
        model,
        x,
        cond,
        residual=residual,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        ema_decay=args.ema,
        optimizer=args.optimizer,
        betas=preset["betas"] if args.optimizer == preset["optimizer"] else None,
    )
    t_train = time.perf_counter() - start - t_data

    splits = {
        name: (w / scale, conditioning(w / scale, v, config)) for name, (w, v) in tests.items()
    }
    table = evaluate_superres(
        model,
        state.eval_params,
        splits,
        k_eval,
        config,
        steps=(2, 16),
        n_members=args.members,
        ddim_options=sampler,
    )
    t_eval = time.perf_counter() - start - t_data - t_train

    run_dir = args.run_dir
    metadata = checkpoint_metadata(model, config, scale)
    metadata["config"] |= vars(args)
    # The script always trains from scratch: replace the checkpoint of an earlier run.
    shutil.rmtree(f"{run_dir}/checkpoints", ignore_errors=True)
    ckpt = Checkpointer(f"{run_dir}/checkpoints", keep=1, best_metric="heldout_rfne_flex_2")
    heldout = next(v for k, v in table.items() if k.startswith("heldout"))
    ckpt.save(args.steps, state, metadata, {"heldout_rfne_flex_2": heldout["flex_2"]["rfne"]})
    ckpt.close()

    summary = {
        "n_train": int(x.shape[0]),
        "train_variance": residual_variance(x, cond, residual),
        "loss_first10": float(np.mean(losses[:10])),
        "loss_last10": float(np.mean(losses[-10:])),
        "seconds": {"data": t_data, "train": t_train, "eval": t_eval},
        "table": table,
    }
    print(json.dumps(summary, indent=1))
    return run_dir


if __name__ == "__main__":
    main()
