import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.data import shard_batch
from sciml.errors import NonFiniteLossError
from sciml.operators import FNO
from sciml.train import Checkpointer, TrainState, fit, make_mesh, make_train_step, replicate


def _problem(seed=0):
    model = FNO(out_channels=1, modes=4, width=8, n_layers=2, projection_width=16)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 32, 1)).astype(np.float32)
    y = np.roll(x, 3, axis=1) ** 2
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]))

    def loss_fn(params, batch, key):
        xb, yb = batch
        return jnp.mean((model.apply(params, xb) - yb) ** 2), {}

    return params, loss_fn, (x, y)


def test_train_step_compiles_once_and_learns():
    params, loss_fn, batch = _problem()
    traces = []

    def counting_loss(p, b, k):
        traces.append(1)  # runs only while tracing
        return loss_fn(p, b, k)

    opt = optax.adam(1e-2)
    step = make_train_step(counting_loss, opt)
    state = TrainState.create(params, opt, jax.random.key(1))
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert len(traces) == 1 and int(state.step) == 30
    assert losses[-1] < 0.75 * losses[0]  # it learns (a noise-to-noise map: slow, but steady)


def test_ema_follows_its_definition():
    params, loss_fn, batch = _problem()
    opt = optax.sgd(0.1)
    state = TrainState.create(params, opt, jax.random.key(1), ema=True)
    new, _ = make_train_step(loss_fn, opt, ema_decay=0.9)(state, batch)
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, state.ema_params, new.params)
    assert all(
        np.allclose(a, b, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(new.ema_params))
    )


def test_data_parallel_step_on_8_devices_equals_one_device():
    params, loss_fn, batch = _problem()
    opt = optax.adam(1e-2)
    step = make_train_step(loss_fn, opt)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = make_mesh(devices)
        with jax.set_mesh(mesh):
            state = replicate(TrainState.create(params, opt, jax.random.key(1)), mesh)
            sharded = shard_batch(batch, mesh)
            assert len(sharded[0].addressable_shards) == len(devices)
            for _ in range(3):
                state, _ = step(state, sharded)
        results.append(jax.tree.map(np.asarray, state.params))
    assert jax.device_count() == 8
    # Same math, different reduction order over the batch: float32 round-off, amplified a little by
    # Adam's normalisation over 3 steps, stays far below 1e-4 relative.
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    params, loss_fn, (x, y) = _problem()
    opt = optax.adam(1e-3)
    state = TrainState.create(params, opt, jax.random.key(1))
    bad = np.full_like(x, np.nan)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    with pytest.raises(
        NonFiniteLossError, match=r"loss became nan at step 8; last good checkpoint: step 6"
    ):
        fit(
            state,
            make_train_step(loss_fn, opt),
            lambda s: (bad if s == 7 else x, y),
            steps=20,
            run_dir=tmp_path,
            checkpointer=checkpointer,
            metadata={},
            checkpoint_every=3,
        )
    assert checkpointer.latest_step() == 6
    restored = checkpointer.restore(6, state)
    assert int(restored.step) == 6 and all(
        np.isfinite(leaf).all() for leaf in jax.tree.leaves(restored.params)
    )
    checkpointer.close()
