"""The fit loop: train steps, progress, JSON-lines metrics, evaluation, checkpoints, resume."""

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from sciml.errors import NonFiniteLossError
from sciml.train.checkpoint import Checkpointer
from sciml.train.state import TrainState

METRICS_FILE = "metrics.jsonl"


def fit(
    state: TrainState,
    train_step: Callable[[TrainState, Any], tuple[TrainState, dict]],
    batch_for_step: Callable[[int], Any],
    *,
    steps: int,
    run_dir: str | Path,
    checkpointer: Checkpointer,
    metadata: dict,
    evaluate: Callable[[TrainState], dict[str, float]] | None = None,
    eval_every: int = 250,
    checkpoint_every: int = 250,
    log_every: int = 50,
) -> TrainState:
    """Train `state` up to `steps` updates, resuming from the latest checkpoint in `checkpointer`.

    The batch of step s is ``batch_for_step(s)``, so a resumed run replays exactly the batches of an
    uninterrupted one and reaches the same parameters bit for bit. Every `log_every` steps a line
    with loss, grad norm, steps/s and elapsed time goes to ``run_dir/metrics.jsonl``; every
    `eval_every` steps (and at every checkpoint) `evaluate(state)` adds ``valid_*`` metrics; every
    `checkpoint_every` steps and at the end the state is saved.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; nothing of that step is saved and the
            last good checkpoint stays the latest.
    """
    run_dir = Path(run_dir)
    primary = jax.process_index() == 0
    latest = checkpointer.latest_step()
    if latest is not None:
        state = checkpointer.restore(latest, state)
    start = int(state.step)
    if primary:
        _truncate_metrics(run_dir / METRICS_FILE, start)

    t0, last_log = time.perf_counter(), (time.perf_counter(), start)
    with tqdm(
        total=steps, initial=start, desc="train", unit="step", disable=None if primary else True
    ) as bar:
        for step in range(start, steps):
            new_state, metrics = train_step(state, batch_for_step(step))
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                checkpointer.wait()
                good = checkpointer.latest_step()
                where = (
                    f"step {good} in {checkpointer.directory}" if good is not None else "none yet"
                )
                raise NonFiniteLossError(
                    f"loss became {loss} at step {step + 1}; last good checkpoint: {where}."
                    " Lower train.lr or set train.grad_clip, then run again (it resumes from there)"
                )
            state, done = new_state, step + 1
            bar.update(1)
            record: dict[str, float] = {}
            if done % log_every == 0 or done == steps:
                now = time.perf_counter()
                rate = (done - last_log[1]) / max(now - last_log[0], 1e-9)
                last_log = (now, done)
                record |= {k: float(v) for k, v in metrics.items()}
                record |= {"steps_per_s": rate, "elapsed_s": now - t0}
                bar.set_postfix(loss=f"{loss:.3e}")
            save = done % checkpoint_every == 0 or done == steps
            if evaluate is not None and (done % eval_every == 0 or save):
                record |= {f"valid_{k}": v for k, v in evaluate(state).items()}
            if record and primary:
                _append_metrics(run_dir / METRICS_FILE, {"step": done, **record})
            if save:
                checkpointer.save(
                    done,
                    state,
                    metadata,
                    {k: v for k, v in record.items() if k.startswith("valid_")},
                )
    checkpointer.wait()
    return state


def _append_metrics(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past `step` (written after the checkpoint a resumed run starts from)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in kept))
    os.replace(tmp, path)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / METRICS_FILE
    return (
        [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        if path.exists()
        else []
    )


def tree_equal(a: Any, b: Any) -> bool:
    """Whether two pytrees have the same structure and bitwise-equal leaves."""
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )
