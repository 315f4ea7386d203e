"""Training losses on channels-last batches (batch, *spatial, channels)."""

import jax.numpy as jnp
from jaxtyping import Array, Float

_EPS = 1e-12


def _per_sample_norm(x: Array, p: int) -> Array:
    flat = x.reshape(x.shape[0], -1)
    return jnp.linalg.norm(flat, ord=p, axis=1)


def relative_lp(
    pred: Float[Array, "b ..."], target: Float[Array, "b ..."], p: int = 2
) -> Float[Array, ""]:
    """Mean over the batch of ``||pred - target||_p / ||target||_p`` (norms over all non-batch axes)."""
    return jnp.mean(_per_sample_norm(pred - target, p) / (_per_sample_norm(target, p) + _EPS))


def relative_l2(pred: Float[Array, "b ..."], target: Float[Array, "b ..."]) -> Float[Array, ""]:
    """Mean relative L2 error, the standard neural-operator loss."""
    return relative_lp(pred, target, 2)


def mse(pred: Float[Array, "b ..."], target: Float[Array, "b ..."]) -> Float[Array, ""]:
    """Mean squared error over every element."""
    return jnp.mean((pred - target) ** 2)


def relative_h1(
    pred: Float[Array, "b *spatial c"], target: Float[Array, "b *spatial c"]
) -> Float[Array, ""]:
    """Mean over the batch of the relative H1 error ``|e|_H1 / |target|_H1``, e = pred - target.

    ``|v|_H1^2 = sum v^2 + sum |grad v|^2`` with gradients by second-order finite differences
    (one-sided at the edges) on a unit domain per axis (spacing 1/n), so the derivative term
    weighs high wavenumbers as a Sobolev norm does, at any resolution.
    """

    def h1_squared(v: Array) -> Array:
        total = jnp.sum(v**2, axis=tuple(range(1, v.ndim)))
        for axis in range(1, v.ndim - 1):
            grad = jnp.gradient(v, 1.0 / v.shape[axis], axis=axis)
            total = total + jnp.sum(grad**2, axis=tuple(range(1, v.ndim)))
        return total

    return jnp.mean(jnp.sqrt(h1_squared(pred - target) / (h1_squared(target) + _EPS)))


LOSSES = {"relative_l2": relative_l2, "mse": mse, "relative_h1": relative_h1}
