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


LOSSES = {"relative_l2": relative_l2, "mse": mse}
