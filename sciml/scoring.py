"""Proper scoring rules for probabilistic predictions: CRPS, energy score, Gaussian NLL.

Lower is better for all of them. Each scores every element (or every batch member, for the
energy score) and then reduces by `reduction`: "mean" (default, comparable across sizes), "sum"
(ProbHardE2E's training loss sums the CRPS over coordinates) or "none". All are jit-able and
differentiable; they are
compiled once per input shape and option.
"""

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Float

Reduction = Literal["mean", "sum", "none"]
Input = Float[Array | np.ndarray, "*shape"]


def _reduce(score: Array, reduction: Reduction) -> Array:
    if reduction == "mean":
        return jnp.mean(score)
    if reduction == "sum":
        return jnp.sum(score)
    if reduction == "none":
        return score
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


@functools.partial(jax.jit, static_argnames=("reduction",))
def crps_gaussian(
    mean: Input, variance: Input, y: Input, *, reduction: Reduction = "mean"
) -> Float[Array, "..."]:
    """Closed-form CRPS of ``N(mean, variance)`` at y, elementwise, then reduced.

    ``CRPS(N(m, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``, ``z = (y - m) / s``.
    The variance is floored at the smallest normal float, so a zero variance (a coordinate fixed
    by a hard constraint) scores ``|y - m|``, the CRPS of a point mass.

    Args:
        mean, variance, y: arrays of one shape.
        reduction: keyword-only, see the module docstring.
    Returns:
        A scalar, or the elementwise scores for ``reduction="none"``.
    """
    mean, variance, y = jnp.asarray(mean), jnp.asarray(variance), jnp.asarray(y)
    std = jnp.sqrt(jnp.maximum(variance, jnp.finfo(variance.dtype).tiny))
    z = (y - mean) / std
    pdf = jnp.exp(-0.5 * z**2) / jnp.sqrt(2 * jnp.pi)
    # s z = y - m, written so that a floored std cannot turn z into inf * 0.
    score = (y - mean) * (2 * ndtr(z) - 1) + std * (2 * pdf - 1 / jnp.sqrt(jnp.pi))
    return _reduce(score, reduction)


def _pair_weights(n_samples: int, fair: bool) -> tuple[float, float]:
    if fair and n_samples < 2:
        raise ValueError("the fair estimator needs at least 2 samples")
    return 1 / n_samples, 1 / (2 * n_samples * (n_samples - 1 if fair else n_samples))


@functools.partial(jax.jit, static_argnames=("fair", "reduction"))
def crps_ensemble(
    samples: Float[Array | np.ndarray, " s *shape"],
    y: Input,
    *,
    fair: bool = False,
    reduction: Reduction = "mean",
) -> Float[Array, "..."]:
    """Sample-based CRPS of an ensemble at y, elementwise, then reduced.

    ``CRPS = (1/s) sum_i |x_i - y| - c sum_{i,j} |x_i - x_j|`` with ``c = 1/(2 s^2)`` (standard:
    the CRPS of the empirical distribution, biased upwards by ``E|X - X'| / (2 s)``) or
    ``c = 1/(2 s (s - 1))`` (``fair=True``: unbiased for the CRPS of the sampled distribution).
    The pair sum costs O(s log s) per element: sorted, ``sum_{i,j} |x_i - x_j| =
    2 sum_k (2k - s - 1) x_(k)``.

    Args:
        samples: shape (s, *shape), the ensemble members along the first axis.
        y: observation, shape (*shape).
        fair: keyword-only; the unbiased estimator.
        reduction: keyword-only, see the module docstring.
    """
    samples, y = jnp.asarray(samples), jnp.asarray(y)
    s = samples.shape[0]
    w_obs, w_pairs = _pair_weights(s, fair)
    to_obs = jnp.sum(jnp.abs(samples - y[None]), axis=0)
    ranks = 2 * jnp.arange(1, s + 1, dtype=samples.dtype) - s - 1
    ordered = jnp.sort(samples, axis=0)
    pairs = 2 * jnp.tensordot(ranks, ordered, axes=(0, 0))
    return _reduce(w_obs * to_obs - w_pairs * pairs, reduction)


def _norm(x: Array, axes: tuple[int, ...]) -> Array:
    # sqrt has an infinite slope at 0, and the pairs i = j are exactly 0: keep their gradient 0.
    sq = jnp.sum(x**2, axis=axes)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


@functools.partial(jax.jit, static_argnames=("fair", "reduction"))
def energy_score(
    samples: Float[Array | np.ndarray, "s b *event"],
    y: Float[Array | np.ndarray, " b *event"],
    *,
    fair: bool = False,
    reduction: Reduction = "mean",
) -> Float[Array, "..."]:
    """Sample-based energy score of multivariate predictions, per batch member, then reduced.

    ``ES = (1/s) sum_i ||x_i - y|| - c sum_{i,j} ||x_i - x_j||`` with Euclidean norms over the
    event axes and c as in `crps_ensemble` (standard or ``fair``); for a one-dimensional event
    it is the CRPS. Pairs are formed one sample at a time, so memory is O(s b d), not O(s^2 b d).

    Args:
        samples: shape (s, b, *event).
        y: observations, shape (b, *event).
        fair: keyword-only; the unbiased estimator.
        reduction: keyword-only, over the batch axis.
    Returns:
        A scalar, or shape (b,) for ``reduction="none"``.
    """
    samples, y = jnp.asarray(samples), jnp.asarray(y)
    s = samples.shape[0]
    w_obs, w_pairs = _pair_weights(s, fair)
    event = tuple(range(2, samples.ndim))
    to_obs = jnp.sum(_norm(samples - y[None], event), axis=0)
    pairs = jnp.sum(jax.lax.map(lambda x: _norm(samples - x[None], event), samples), axis=(0, 1))
    return _reduce(w_obs * to_obs - w_pairs * pairs, reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def gaussian_nll(
    mean: Input,
    variance: Input,
    y: Input,
    *,
    min_variance: float = 1e-6,
    reduction: Reduction = "mean",
) -> Float[Array, "..."]:
    """Negative log-likelihood of y under ``N(mean, variance)``, elementwise, then reduced.

    ``NLL = (log(2 pi v) + (y - m)^2 / v) / 2`` with ``v = max(variance, min_variance)``; the
    floor keeps coordinates pinned by a hard constraint (zero variance) finite.

    Args:
        mean, variance, y: arrays of one shape.
        min_variance: keyword-only variance floor.
        reduction: keyword-only, see the module docstring.
    """
    mean, variance, y = jnp.asarray(mean), jnp.asarray(variance), jnp.asarray(y)
    v = jnp.maximum(variance, min_variance)
    return _reduce(0.5 * (jnp.log(2 * jnp.pi * v) + (y - mean) ** 2 / v), reduction)
