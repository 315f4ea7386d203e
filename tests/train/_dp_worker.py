"""One process of the two-process data-parallel test (run by test_distributed.py)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from sciml.data import shard_batch
from sciml.operators import FNO
from sciml.train import TrainState, initialize_distributed, make_mesh, make_train_step, replicate


def run(out_path=None, devices=None):
    model = FNO(out_channels=1, modes=4, width=8, n_layers=2, projection_width=16)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 32, 1)).astype(np.float32)
    y = np.roll(x, 3, axis=1) ** 2
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]))
    opt = optax.adam(1e-2)

    def loss_fn(p, batch, key):
        return jnp.mean((model.apply(p, batch[0]) - batch[1]) ** 2), {}

    mesh = make_mesh(devices)
    with jax.set_mesh(mesh):
        state = replicate(TrainState.create(params, opt, jax.random.key(1)), mesh)
        step = make_train_step(loss_fn, opt)
        for _ in range(3):
            state, metrics = step(state, shard_batch((x, y), mesh))
        params = multihost_utils.process_allgather(state.params, tiled=True)
    return jax.tree.map(np.asarray, params), float(metrics["loss"])


if __name__ == "__main__":
    assert initialize_distributed(), "expected a multi-process launch"
    params, loss = run()
    assert jax.device_count() == 2 * jax.local_device_count()
    if jax.process_index() == 0:
        flat = {
            jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]
        }
        np.savez(sys.argv[1], loss=loss, **flat)
    jax.distributed.shutdown()
