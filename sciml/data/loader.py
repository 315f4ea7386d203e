"""Deterministic batching and placement of batches on a device mesh.

The batch of step `s` is a pure function of (seed, s): each epoch is a fresh permutation drawn from
``numpy.random.default_rng([seed, epoch])``. A run resumed at step s therefore sees exactly the
batches an uninterrupted run would, and no loader state needs checkpointing.
"""

from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sciml.data.windows import WindowDataset
from sciml.errors import DatasetError

DATA_AXIS = "data"


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Sample indices of training step `step`: slice `step mod E` of epoch `step // E`'s permutation.

    E = n // batch_size batches per epoch (the remainder of each permutation is dropped).
    """
    if batch_size > n:
        raise DatasetError(
            f"train.batch_size={batch_size} exceeds the {n} training samples; lower it"
        )
    per_epoch = n // batch_size
    epoch, position = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[position * batch_size : (position + 1) * batch_size]


def shard_batch(batch: tuple[np.ndarray, ...], mesh: Mesh) -> tuple[jax.Array, ...]:
    """Place a global batch on `mesh`, split along the leading axis over the data axis.

    Every process holds the same global batch on the host and contributes its own contiguous slice,
    so this works unchanged on one host or many.
    """
    n_devices = mesh.shape[DATA_AXIS]
    size = batch[0].shape[0]
    if size % n_devices:
        raise DatasetError(
            f"batch of {size} samples cannot be split evenly over {n_devices} devices;"
            f" choose a batch size that is a multiple of {n_devices}"
        )
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    n_proc, rank = jax.process_count(), jax.process_index()
    per_process = size // n_proc
    return tuple(
        jax.make_array_from_process_local_data(
            sharding, a[rank * per_process : (rank + 1) * per_process], a.shape
        )
        for a in batch
    )


def train_batches(
    dataset: WindowDataset, batch_size: int, seed: int, start_step: int, mesh: Mesh
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Endless sharded training batches from step `start_step` on."""
    step = start_step
    while True:
        yield shard_batch(
            dataset.get_batch(batch_indices(len(dataset), batch_size, seed, step)), mesh
        )
        step += 1


def eval_batches(
    dataset: WindowDataset, batch_size: int, mesh: Mesh
) -> Iterator[tuple[jax.Array, jax.Array, int]]:
    """Every window once, in order, as sharded ``(x, y, n_valid)``.

    The last batch is padded (repeating its final sample) to a multiple of the device count; only
    its first `n_valid` rows are real.
    """
    n_devices = mesh.shape[DATA_AXIS]
    batch_size = max(n_devices, batch_size - batch_size % n_devices)
    for start in range(0, len(dataset), batch_size):
        idx = np.arange(start, min(start + batch_size, len(dataset)))
        n_valid = len(idx)
        padded = -(-n_valid // n_devices) * n_devices
        idx = np.concatenate([idx, np.full(padded - n_valid, idx[-1])])
        x, y = shard_batch(dataset.get_batch(idx), mesh)
        yield x, y, n_valid
