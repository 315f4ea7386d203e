"""Load trained models: `load(name_or_path) -> (model, params, metadata)`.

A name resolves to a checkpoint shipped inside the package (``sciml/checkpoints/<name>``); a path
may be a run directory, its ``checkpoints/`` directory, or one step directory. Checkpoints are read
as JSON metadata plus orbax arrays: nothing is unpickled, and the model class must lie inside
`sciml` (its import path is checked before anything is imported).
"""

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sciml import config as config_lib
from sciml.errors import CheckpointError, ConfigError
from sciml.train.checkpoint import read_metadata, restore_raw_state, steps_in

SHIPPED = Path(__file__).parent / "checkpoints"
FORMAT = 1


def available() -> list[str]:
    """Names of the checkpoints shipped with the package."""
    return sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()) if SHIPPED.is_dir() else []


def resolve(name_or_path: str | Path) -> tuple[Path, int]:
    """The checkpoint directory and step that `name_or_path` refers to (best step of a run)."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in available():
        path = SHIPPED / str(name_or_path)
    if not path.exists():
        names = ", ".join(available()) or "none"
        raise CheckpointError(
            f"no checkpoint named or at {str(name_or_path)!r}; shipped names: {names}"
        )
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if (path / "metadata").is_dir() and path.name.isdigit():
        return path.parent, int(path.name)
    steps = steps_in(path)
    if not steps:
        raise CheckpointError(
            f"{path} holds no finished checkpoint (an interrupted save leaves none)"
        )
    return path, best_step(path, steps)


def best_step(directory: Path, steps: list[int], metric: str = "valid_rel_l2") -> int:
    """The step with the lowest `metric` in its metadata, else the latest."""
    scored = [(read_metadata(directory, s)["metrics"].get(metric), s) for s in steps]
    scored = [(v, s) for v, s in scored if v is not None]
    return min(scored)[1] if scored else max(steps)


def show(name_or_path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, without loading arrays."""
    directory, step = resolve(name_or_path)
    return read_metadata(directory, step)


def load(name_or_path: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild the model and its evaluation parameters (the EMA where trained with one).

    Returns:
        ``(model, params, metadata)``; ``model.apply(params, x)`` maps inputs of shape
        (batch, *spatial, metadata['data']['in_channels']) to predictions.

    Raises:
        CheckpointError: unknown name, missing/corrupt/truncated files, unsupported format, a model
            outside sciml, or arrays that do not fit the model the metadata describes.
    """
    directory, step = resolve(name_or_path)
    meta = read_metadata(directory, step)
    if meta.get("checkpoint_format") != FORMAT:
        raise CheckpointError(
            f"{directory / str(step)} has checkpoint format {meta.get('checkpoint_format')!r}; this sciml"
            f" reads format {FORMAT}: use the sciml version that wrote it ({meta.get('sciml_version')})"
        )
    try:
        model = config_lib.build(meta["model"], where="checkpoint model")
    except (ConfigError, KeyError) as err:
        raise CheckpointError(f"{directory / str(step)}: cannot rebuild its model: {err}") from None
    state = restore_raw_state(directory, step)
    params = state.get("ema_params") or state.get("params")
    if params is None:
        raise CheckpointError(f"{directory / str(step)} holds no parameters")
    expected = jax.eval_shape(model.init, jax.random.key(0), *example_inputs(meta))
    _check_same_shapes(expected, params, directory / str(step))
    return model, jax.tree.map(jnp.asarray, params), meta


def example_inputs(meta: dict[str, Any]) -> tuple[Any, ...]:
    """Zero arrays shaped like the model's positional arguments, to rebuild its parameters.

    From the metadata's "init_inputs" (one entry per argument: a shape, or a dict of shapes, as
    FLEX's ``(x_t, t, cond)``), else one input (1, *spatial_shape, in_channels).
    """
    spec = meta.get("init_inputs")
    if spec is None:
        data = meta["data"]
        spec = [[1, *data["spatial_shape"], data["in_channels"]]]

    def is_shape(s: Any) -> bool:
        return isinstance(s, list) and all(isinstance(n, int) for n in s)

    return tuple(jax.tree.map(lambda s: jnp.zeros(s, jnp.float32), spec, is_leaf=is_shape))


def _check_same_shapes(expected: Any, params: Any, where: Path) -> None:
    exp_leaves = dict(_leaf_shapes(expected))
    got_leaves = dict(_leaf_shapes(params))
    if exp_leaves != got_leaves:
        diff = sorted(set(exp_leaves.items()) ^ set(got_leaves.items()))[:3]
        raise CheckpointError(
            f"{where}: its arrays do not fit the model its metadata describes (first differences:"
            f" {diff}); the checkpoint belongs to another model"
        )


def _leaf_shapes(tree: Any) -> list[tuple[str, tuple[int, ...]]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path), tuple(np.shape(leaf))) for path, leaf in flat]


def export(run_dir: str | Path, destination: str | Path) -> Path:
    """Copy the best checkpoint of `run_dir` to `destination` with only its evaluation parameters.

    The result is small (no optimiser state) and loads with `load(destination)`; shipped
    checkpoints are made this way by ``scripts/make_pretrained.py``.
    """
    from sciml.train.checkpoint import Checkpointer  # only exporting needs the writer

    directory, step = resolve(run_dir)
    meta = read_metadata(directory, step)
    state = restore_raw_state(directory, step)
    params = state.get("ema_params") or state["params"]
    destination = Path(destination)
    if destination.exists():
        raise CheckpointError(f"{destination} exists; remove it first to export again")
    saver = Checkpointer(destination, keep=1)
    try:
        body = {k: v for k, v in meta.items() if k not in ("step", "metrics")}
        saver.save(step, {"params": params}, body, meta["metrics"])
    finally:
        saver.close()
    return destination
