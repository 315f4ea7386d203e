"""A feature network of our own for distribution distances between sets of generated fields.

No pretrained feature extractor exists for PDE fields, so `FeatureNet` is trained here: a small
strided conv encoder, globally pooled to `features` numbers, with a linear head regressing the
physical parameters of the data family (for Stokes' second problem k and w). The pooled
features of a trained net summarise what distinguishes members of the family; the Fréchet
distance between the features of generated and true fields (`sciml.metrics.frechet_distance`,
FID's formula) then scores the whole distribution, beyond the pixelwise mean and spread.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.metrics import frechet_distance
from sciml.train import TrainState, make_train_step


class FeatureNet(nn.Module):
    """(b, *spatial, c) -> features (b, `features`) and, with ``head=True``, (b, `outputs`)."""

    outputs: int
    features: int = 32
    widths: tuple[int, ...] = (16, 32, 64)

    @nn.compact
    def __call__(self, x: Float[Array, "b *spatial c"], head: bool = True) -> Array:
        ndim = x.ndim - 2
        for width in self.widths:
            x = nn.gelu(nn.Conv(width, (3,) * ndim, strides=2)(x))
        pooled = jnp.mean(x, axis=tuple(range(1, ndim + 1)))
        feats = nn.Dense(self.features)(pooled)
        return nn.Dense(self.outputs)(nn.gelu(feats)) if head else feats


def train_feature_network(
    key: PRNGKeyArray,
    fields: Float[np.ndarray, "n *spatial c"],
    targets: Float[np.ndarray, "n p"],
    *,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> tuple[FeatureNet, Any, float]:
    """Fit a `FeatureNet` regressing standardised `targets` from `fields` (MSE, Adam, cosine).

    Returns (model, params, final training MSE in standardised units: 1 is no skill).
    """
    targets = np.asarray(targets, np.float32)
    mean, std = targets.mean(0), targets.std(0) + 1e-8
    y = jnp.asarray((targets - mean) / std)
    x = jnp.asarray(fields)
    model = FeatureNet(outputs=y.shape[1])
    k_init, k_batches, k_state = jax.random.split(key, 3)
    params = model.init(k_init, x[:1])
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss_fn(p, batch, _key):
        return jnp.mean((model.apply(p, batch[0]) - batch[1]) ** 2), {}

    step = make_train_step(loss_fn, optimizer)
    state = TrainState.create(params, optimizer, k_state)
    index = jax.random.randint(k_batches, (steps, batch_size), 0, len(x))
    for i in range(steps):
        state, _ = step(state, (x[index[i]], y[index[i]]))
    mse = jnp.mean((jax.jit(model.apply)(state.params, x) - y) ** 2)
    return model, state.params, float(mse)


def feature_distance(
    model: FeatureNet,
    params: Any,
    samples: Float[Array | np.ndarray, "n *spatial c"],
    truth: Float[Array | np.ndarray, "m *spatial c"],
) -> float:
    """Fréchet distance between the pooled features of `samples` and of `truth`."""
    embed = jax.jit(lambda x: model.apply(params, x, head=False))
    return frechet_distance(embed(jnp.asarray(samples)), embed(jnp.asarray(truth)))
