"""Multi-resolution training: each sample at exactly one resolution, batches per resolution.

The protocol of Sakarvadia et al. (2025): training samples are assigned to resolutions with given
proportions (mostly cheap low-resolution samples, a small share of high-resolution ones), batches
are built per resolution so shapes stay static (one compilation per resolution), and the order of
batches is shuffled every epoch. Everything is a pure function of (seed, step), like the
single-resolution loader, so resumed runs replay the same batches.
"""

import dataclasses

import numpy as np

from sciml.errors import DatasetError


def assign_resolutions(n: int, proportions: dict[int, float], seed: int) -> dict[int, np.ndarray]:
    """Split sample indices 0..n-1 into disjoint sets, one per resolution, of exact sizes.

    Sizes are the largest-remainder rounding of ``p_i * n`` (they sum to n); which samples go where
    is a random permutation drawn from `seed`.
    """
    if not proportions or any(p < 0 for p in proportions.values()):
        raise DatasetError(f"resolution proportions must be non-negative, got {proportions}")
    total = sum(proportions.values())
    if total <= 0:
        raise DatasetError("resolution proportions must not all be zero")
    resolutions = sorted(proportions)
    exact = np.array([proportions[r] / total * n for r in resolutions])
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {r: np.sort(perm[bounds[i] : bounds[i + 1]]) for i, r in enumerate(resolutions)}


@dataclasses.dataclass(frozen=True)
class MultiResolutionSchedule:
    """Which resolution and which samples make up the batch of each training step.

    Attributes:
        assignment: resolution -> sample indices (from `assign_resolutions`).
        batch_size: samples per batch (every batch holds one resolution).
        seed: shuffling seed.
    """

    assignment: dict[int, np.ndarray]
    batch_size: int
    seed: int

    def __post_init__(self):
        small = {r: len(ix) for r, ix in self.assignment.items() if 0 < len(ix) < self.batch_size}
        if small:
            raise DatasetError(
                f"resolutions {small} have fewer samples than train.batch_size={self.batch_size};"
                " raise their proportion or lower the batch size"
            )

    @property
    def batches_per_epoch(self) -> dict[int, int]:
        return {r: len(ix) // self.batch_size for r, ix in self.assignment.items()}

    def batch(self, step: int) -> tuple[int, np.ndarray]:
        """(resolution, sample indices) of training step `step`."""
        per_res = self.batches_per_epoch
        epoch_len = sum(per_res.values())
        epoch, position = divmod(step, epoch_len)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(np.repeat(sorted(per_res), [per_res[r] for r in sorted(per_res)]))
        res = int(order[position])
        k = int(np.sum(order[:position] == res))  # how many batches of `res` came before
        shuffled = np.random.default_rng([self.seed, epoch, res]).permutation(self.assignment[res])
        return res, shuffled[k * self.batch_size : (k + 1) * self.batch_size]

    def grid_points_per_sample(self, ndim: int) -> float:
        """Average grid points per training sample, sum_i p_i N_i^d (the protocol's cost axis)."""
        n = sum(len(ix) for ix in self.assignment.values())
        return sum(len(ix) / n * r**ndim for r, ix in self.assignment.items())
