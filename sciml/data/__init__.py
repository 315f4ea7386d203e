"""Datasets: The Well's HDF5 schema, normalisation stats, windows, deterministic sharded batches."""

from sciml.data.generate import Generator, generate_dataset, resample_trajectories, resolution_root
from sciml.data.loader import DATA_AXIS, batch_indices, eval_batches, shard_batch, train_batches
from sciml.data.multires import MultiResolutionSchedule, assign_resolutions
from sciml.data.readers import read_fno_mat, read_pdebench
from sciml.data.stats import channel_stats, compute_stats, read_stats, write_stats
from sciml.data.well import SPLITS, Trajectories, read_well, split_path, write_well
from sciml.data.windows import WindowDataset

__all__ = [
    "DATA_AXIS",
    "SPLITS",
    "Generator",
    "MultiResolutionSchedule",
    "Trajectories",
    "WindowDataset",
    "assign_resolutions",
    "batch_indices",
    "channel_stats",
    "compute_stats",
    "eval_batches",
    "generate_dataset",
    "read_stats",
    "read_fno_mat",
    "read_pdebench",
    "read_well",
    "resample_trajectories",
    "resolution_root",
    "shard_batch",
    "split_path",
    "train_batches",
    "write_stats",
    "write_well",
]
