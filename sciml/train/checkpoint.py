"""Checkpoints: an orbax CheckpointManager in ``<run_dir>/checkpoints`` (async, atomic saves).

Each step directory holds two items: ``state`` (the `TrainState` pytree, saved by orbax's
tensorstore format, never pickled) and ``metadata`` (JSON: model import path and config, data spec
with normalisation stats, package version, and the metrics of that step). The latest `keep` steps
are kept, plus the best one by `best_metric` (lower is better).
"""

import json
import logging
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from sciml.errors import CheckpointError

logging.getLogger("absl").setLevel(logging.ERROR)


class Checkpointer:
    """Save and restore train states in one directory."""

    def __init__(self, directory: str | Path, *, keep: int = 2, best_metric: str = "valid_rel_l2"):
        self.directory = Path(directory).absolute()
        self.best_metric = best_metric
        policy = pp.AnyPreservationPolicy(
            [
                pp.LatestN(keep),
                pp.BestN(get_metric_fn=lambda m: m[best_metric], reverse=True, n=1),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(
        self, step: int, state: Any, metadata: dict, metrics: dict[str, float] | None = None
    ) -> None:
        """Start an asynchronous save of `state` at `step`; returns once arrays are copied off."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self.manager.wait_until_finished()
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                metadata=ocp.args.JsonSave({**metadata, "step": step, "metrics": metrics}),
            ),
            metrics=metrics if self.best_metric in metrics else None,
            force=True,
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, step: int, target: Any) -> Any:
        """Restore the state saved at `step` into the structure, shapes and shardings of `target`."""
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
            )
        except Exception as err:  # orbax raises many types for one cause: files that don't fit
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored into this run's train"
                f" state ({_first_line(err)}); it is corrupt or was written with another model or"
                " optimiser config: delete it or use a new run_dir"
            ) from None
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def read_metadata(directory: str | Path, step: int) -> dict:
    """The JSON metadata of checkpoint `step` in `directory`."""
    path = Path(directory) / str(step) / "metadata" / "metadata"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"{path.parent} is missing or unreadable ({_first_line(err)}); the checkpoint is corrupt"
            " or truncated: delete it"
        ) from None


def restore_raw_state(directory: str | Path, step: int) -> dict:
    """The saved state of checkpoint `step` as nested dicts of arrays (no target structure)."""
    with ocp.StandardCheckpointer() as ckptr:
        try:
            return ckptr.restore(Path(directory).absolute() / str(step) / "state")
        except Exception as err:
            raise CheckpointError(
                f"{Path(directory) / str(step)} is corrupt or truncated ({_first_line(err)})"
            ) from None


def steps_in(directory: str | Path) -> list[int]:
    """Finished checkpoint steps in `directory` (unfinished temporary saves are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "metadata").is_dir()
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
