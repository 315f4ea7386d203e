import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.diffusion import CosineVP
from sciml.diffusion.forecast import (
    KolmogorovForecast,
    checkpoint_metadata,
    conditioning,
    evaluate_forecast,
    extrapolation,
    forecast_pairs,
    residual_model,
    target_indices,
    task_from_metadata,
)
from sciml.diffusion.kolmogorov import (
    make_loss,
    make_regression_loss,
    residual_variance,
    task_kind,
    tiny_flex,
    train_diffusion,
)

# A 32^2 task with the 2-level FLEX of widths 4 and 8 of test_superres: compiling is most of the time.
CONFIG = KolmogorovForecast(n=32)
MODEL = tiny_flex(channels=(4, 8), blocks=(0, 0), depth=1, heads=1, groups=4)


def _drifting_trajectories(n_traj: int, snapshots: int, seed: int = 0) -> np.ndarray:
    """(n_traj, snapshots, 32, 32, 1): smooth random periodic fields moving 1 point per snapshot
    along x, so x_{n+1} is a deterministic function of the past."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(CONFIG.n, 1 / CONFIG.n)
    mask = (np.abs(k)[:, None] <= 4) & (np.abs(k)[None, :] <= 4)
    spec = (rng.normal(size=(n_traj, CONFIG.n, CONFIG.n)) + 1j) * mask
    x0 = np.real(np.fft.ifft2(spec))
    traj = np.stack([np.roll(x0, s, axis=1) for s in range(snapshots)], axis=1)
    return (traj / traj.std())[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def initial_params():
    """MODEL's initial parameters for a 2-snapshot cond (compiling init takes a while)."""
    past, x = forecast_pairs(_drifting_trajectories(1, 3), CONFIG.history)
    cond = conditioning(past, np.array([2e-3]), CONFIG)
    return jax.jit(MODEL.init)(jax.random.key(0), jnp.asarray(x), jnp.zeros((1,)), cond)


@pytest.mark.parametrize("history", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 2])
def test_pairs_forecast_the_next_snapshot_of_the_same_trajectory(history, channels):
    n_traj, snapshots = 3, 6
    # Every value names its (trajectory, snapshot, channel): 100 t + 10 s + c.
    t, s, c = np.meshgrid(
        np.arange(n_traj), np.arange(snapshots), np.arange(channels), indexing="ij"
    )
    traj = np.broadcast_to(
        (100 * t + 10 * s + c)[:, :, None, None, :], (n_traj, snapshots, 4, 4, channels)
    ).astype(np.float32)
    past, target = forecast_pairs(traj, history)
    per_traj = snapshots - history
    assert past.shape == (n_traj * per_traj, 4, 4, history * channels)
    assert target.shape == (n_traj * per_traj, 4, 4, channels)
    np.testing.assert_array_equal(target_indices(snapshots, history), np.arange(history, snapshots))
    for p in range(n_traj * per_traj):
        i, j = divmod(p, per_traj)
        j += history  # the target's snapshot
        np.testing.assert_array_equal(target[p, 0, 0], 100 * i + 10 * j + np.arange(channels))
        # oldest first, channels of one snapshot together; all from trajectory i, none later
        expected = [
            100 * i + 10 * (j - history + h) + ch for h in range(history) for ch in range(channels)
        ]
        np.testing.assert_array_equal(past[p, 0, 0], expected)
    with pytest.raises(ValueError, match="history"):
        forecast_pairs(traj, snapshots)


def test_zero_residual_reconstructs_persistence_exactly():
    traj = _drifting_trajectories(2, 5)
    past, x = forecast_pairs(traj, CONFIG.history)
    cond = conditioning(past, np.full((len(x),), 3e-3), CONFIG)
    assert cond["field"].shape == (6, 32, 32, 2) and cond["params"].shape == (6, 1)
    np.testing.assert_allclose(cond["params"], CONFIG.reference_viscosity / 3e-3, rtol=1e-6)
    residual = residual_model(CONFIG)
    previous = traj[:, 1:-1].reshape(x.shape)  # x_n of every target x_{n+1}
    np.testing.assert_array_equal(residual.reconstruct(jnp.zeros_like(x), cond), previous)
    np.testing.assert_array_equal(residual.residual(jnp.asarray(x), cond), x - previous)
    np.testing.assert_array_equal(extrapolation(cond), 2 * previous - traj[:, :-2].reshape(x.shape))
    variance = residual_variance(x, cond, residual)
    assert 0 < variance["ratio"] < 1  # a 1-point drift of fields with |k| <= 4: ratio ~0.2


def test_training_reduces_the_loss_and_the_pipeline_runs(initial_params):
    past, x = forecast_pairs(_drifting_trajectories(4, 6), CONFIG.history)
    nu = np.repeat([2e-3, 4e-3], 8)
    cond = conditioning(past, nu, CONFIG)
    residual = residual_model(CONFIG)
    key = jax.random.key(0)
    kw = {"residual": residual, "batch_size": 8, "lr": 1e-2, "ema_decay": None}
    state, losses = train_diffusion(key, MODEL, x, cond, steps=20, **kw)
    assert len(losses) == 20 and np.isfinite(losses).all()
    loss_fn = jax.jit(make_loss(MODEL, residual, CosineVP()))
    # The same t and eps (fixed keys) before and after 20 steps; the initial network outputs 0
    # (zero-initialised last conv), so the first loss is E|v|. Averaged over 4 keys.
    keys = [jax.random.key(i) for i in range(4)]
    before = np.mean([loss_fn(initial_params, (x, cond), k)[0] for k in keys])
    after = np.mean([loss_fn(state.params, (x, cond), k)[0] for k in keys])
    assert after < 0.97 * before, (before, after)  # deterministic: same keys
    # The regression (trained by the script; a second train step would double this test's
    # compile time) starts from persistence: its initial MSE is the mean squared residual.
    mse = jax.jit(make_regression_loss(MODEL, residual))(initial_params, (x, cond), key)[0]
    np.testing.assert_allclose(mse, np.mean((x - past[..., -1:]) ** 2), rtol=1e-6)

    split = (x[:4], jax.tree.map(lambda a: a[:4], cond))
    table = evaluate_forecast(
        MODEL,
        state.params,
        {"a": split},
        key,
        CONFIG,
        steps=(2,),
        n_members=4,
        regression=(MODEL, initial_params),
    )
    row = table["a"]
    assert set(row) == {"persistence", "extrapolation", "regression", "flex_2", "variance"}
    assert np.isfinite(row["flex_2"]["rfne"]) and np.isfinite(row["flex_2"]["crps"])
    # The initial network outputs 0: its regression is persistence itself.
    assert row["regression"]["rfne"] == pytest.approx(row["persistence"]["rfne"], abs=1e-7)


def test_task_kind_in_metadata_selects_the_task():
    meta = checkpoint_metadata(MODEL, CONFIG, scale=2.0)
    assert task_kind(meta) == "forecast" and task_from_metadata(meta) == CONFIG
    assert meta["init_inputs"][2]["field"] == [1, 32, 32, 2]
    old_superres = {"config": {"task": {"n": 32, "factor": 4}}}  # written before "kind" existed
    assert task_kind(old_superres) == "superres"
    with pytest.raises(ValueError, match="superres model, not a forecast"):
        task_from_metadata(old_superres)
    with pytest.raises(ValueError, match="flex_forecast.py"):
        task_from_metadata({"model": {}})


def test_sample_cli_draws_scored_forecast_ensembles(tmp_path, initial_params):
    from sciml import cli, pretrained
    from sciml.train import Checkpointer

    task = dataclasses.replace(CONFIG, warmup=0.2, dt=0.05, spacing=0.1, snapshots=4)
    saver = Checkpointer(tmp_path / "ckpt", keep=1)
    saver.save(1, {"params": initial_params}, checkpoint_metadata(MODEL, task, scale=2.0), {})
    saver.close()
    model, loaded, _ = pretrained.load(tmp_path / "ckpt")  # rebuilt from init_inputs
    assert model == MODEL
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), initial_params, loaded))

    out = tmp_path / "samples"
    argv = ["sample", str(tmp_path / "ckpt"), "--n", "1", "--members", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    data = np.load(out / "samples.npz")
    n_pairs = task.snapshots - task.history
    assert data["members"].shape == (4, n_pairs, task.n, task.n, 1)
    assert data["truth"].shape == data["base"].shape == (n_pairs, task.n, task.n, 1)
    assert np.isfinite(data["members"]).all() and float(data["viscosity"]) == 3e-3  # held out
    # One trajectory: the base (persistence) of forecast p + 1 is the truth of forecast p.
    np.testing.assert_allclose(data["base"][1:], data["truth"][:-1], rtol=1e-6)
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "forecast" and report["baseline"] == "persistence"
    assert report["held_out"] and np.isfinite(report["metrics"]["flex_2"]["crps"])
    for name in ("ensemble_0.png", "ensemble_1.png", "spectra.png", "pull.png"):
        assert (out / name).stat().st_size > 0
