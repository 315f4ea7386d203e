"""Normalisation statistics in The Well's ``stats.yaml`` format, and normalising with them."""

from pathlib import Path

import numpy as np
import yaml

from sciml.data.well import Trajectories
from sciml.errors import DatasetError

STAT_KEYS = ("mean", "std", "rms", "mean_delta", "std_delta", "rms_delta")


def compute_stats(traj: Trajectories) -> dict[str, dict[str, float | list[float]]]:
    """Mean, std and rms of each field and of its step-to-step change, per component.

    Scalars for a scalar field; lists over (flattened) components for vector and tensor fields.
    The ``*_delta`` entries are left out for fields with a single time step.
    Returns ``{stat: {field: value}}`` as in The Well's stats.yaml.
    """
    stats: dict[str, dict] = {key: {} for key in STAT_KEYS}
    for name, array in traj.fields.items():
        n_comp_axes = traj.tensor_order(name)
        values = array.reshape(-1, *array.shape[array.ndim - n_comp_axes :]).astype(np.float64)
        delta = np.diff(array, axis=1).astype(np.float64)
        delta = delta.reshape(-1, *array.shape[array.ndim - n_comp_axes :])
        # A single snapshot (steady problems such as Darcy) has no step-to-step change.
        pairs = [("", values)] + ([("_delta", delta)] if array.shape[1] > 1 else [])
        for suffix, data in pairs:
            data = data.reshape(data.shape[0], -1)
            for stat, value in (
                ("mean", data.mean(0)),
                ("std", data.std(0)),
                ("rms", np.sqrt((data**2).mean(0))),
            ):
                stats[stat + suffix][name] = float(value[0]) if n_comp_axes == 0 else value.tolist()
    return stats


def write_stats(path: str | Path, stats: dict) -> None:
    Path(path).write_text(yaml.safe_dump(stats, sort_keys=False))


def read_stats(path: str | Path) -> dict:
    """Read a stats.yaml, checking that it has every statistic."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} not found; it is written with the dataset by `sciml generate`")
    stats = yaml.safe_load(path.read_text())
    if not isinstance(stats, dict) or any(k not in stats for k in ("mean", "std")):
        raise DatasetError(f"{path} lacks 'mean'/'std' entries; regenerate the dataset")
    return stats


def channel_stats(stats: dict, fields: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std) for `fields` laid out as channels, shape (C,) each."""
    means, stds = [], []
    for name in fields:
        if name not in stats["mean"]:
            raise DatasetError(
                f"stats.yaml has no entry for field {name!r}; regenerate the dataset"
            )
        means.extend(np.atleast_1d(stats["mean"][name]))
        stds.extend(np.atleast_1d(stats["std"][name]))
    std = np.asarray(stds, dtype=np.float32)
    return np.asarray(means, dtype=np.float32), np.where(std > 0, std, 1.0).astype(np.float32)
