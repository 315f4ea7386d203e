import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.diffusion import CosineVP
from sciml.diffusion.superres import (
    NOISY_END_LEVELS,
    KolmogorovSR,
    coarsen,
    conditioning,
    evaluate_superres,
    generate_vorticity,
    make_loss,
    noisy_end_options,
    residual_model,
    residual_variance,
    tiny_flex,
    train_superres,
)
from sciml.fields import lowpass
from sciml.pde import NavierStokes2D

# A 32^2 task (coarse 8^2) with a 2-level FLEX of widths 4 and 8: compiling is most of the time.
CONFIG = KolmogorovSR(n=32, factor=4)
MODEL = tiny_flex(channels=(4, 8), blocks=(0, 0), depth=1, heads=1, groups=4)


@pytest.fixture(scope="module")
def initial_params():
    """MODEL's initial parameters (compiling init is a good part of this file's time)."""
    x = _smooth_fields(1)
    cond = conditioning(x, np.array([2e-3]), CONFIG)
    return jax.jit(MODEL.init)(jax.random.key(0), x, jnp.zeros((1,)), cond)


def _smooth_fields(batch: int, seed: int = 0) -> np.ndarray:
    """Random periodic fields with energy at |k| <= 6 (a few modes above the coarse cut-off 4)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(CONFIG.n, 1 / CONFIG.n)
    mask = (np.abs(k)[:, None] <= 6) & (np.abs(k)[None, :] <= 6)
    spec = rng.normal(size=(batch, CONFIG.n, CONFIG.n)) * mask
    x = np.real(np.fft.ifft2(spec + 1j * rng.normal(size=spec.shape) * mask))
    return (x / x.std())[..., None].astype(np.float32)


def test_generated_vorticity_is_finite_and_shaped():
    config = dataclasses.replace(CONFIG, n=16, warmup=0.2, spacing=0.2, snapshots=2, dt=0.05)
    w = generate_vorticity(jax.random.key(0), config, 5e-3, 2)
    assert w.shape == (4, 16, 16, 1) and np.isfinite(w).all()


@pytest.mark.parametrize("n", [15, 16, 31, 32, 48, 64, 256])
def test_max_wavenumber_is_the_largest_mode_the_solver_keeps(n):
    kept = NavierStokes2D(shape=(n, n)).grid.dealias_mask()[0, :, 0]  # along k_x, at k_y = 0
    k = np.abs(np.fft.fftfreq(n, 1 / n))
    assert k[kept].max() == KolmogorovSR(n=n).max_wavenumber


def test_the_task_data_hold_no_modes_above_max_wavenumber():
    """Above max_wavenumber the dealiased nonlinearity adds nothing and the initial modes decay
    by exp(-(nu k^2 + drag) t), below exp(-20) after the 20-unit spin-up at the smallest
    training viscosity. So band-limited sampling (`residual_model`) removes nothing a true
    field holds."""
    task = KolmogorovSR(snapshots=2)
    w = generate_vorticity(jax.random.key(0), task, min(task.train_viscosities), 1)
    outside = w - np.asarray(lowpass(w, task.max_wavenumber, 2))
    assert np.linalg.norm(outside) < 1e-6 * np.linalg.norm(w)  # float32 FFT round-off


def test_coarse_field_base_and_zero_residual_reconstruct_exactly():
    x = _smooth_fields(3)
    cond = conditioning(x, np.full((3,), 3e-3), CONFIG)
    assert cond["field"].shape == x.shape and cond["params"].shape == (3, 1)
    np.testing.assert_allclose(cond["params"], CONFIG.reference_viscosity / 3e-3, rtol=1e-6)
    residual = residual_model(CONFIG)
    base = residual.base_fn(cond)
    assert base.shape == x.shape
    np.testing.assert_array_equal(residual.reconstruct(jnp.zeros_like(base), cond), base)
    x = jnp.asarray(x)
    np.testing.assert_allclose(residual.reconstruct(residual.residual(x, cond), cond), x, atol=1e-6)
    # The aligned bicubic interpolates the coarse points: the residual vanishes on them (up to
    # float32 round-off of the resize weights) and is smaller than the field.
    np.testing.assert_allclose(coarsen(residual.residual(x, cond), 4), 0.0, atol=1e-5)
    variance = residual_variance(x, cond, residual)
    assert 0 < variance["ratio"] < 1


def test_training_reduces_the_loss_and_the_pipeline_runs(initial_params):
    x = _smooth_fields(16)
    nu = np.repeat([2e-3, 4e-3], 8)
    cond = conditioning(x, nu, CONFIG)
    residual = residual_model(CONFIG)
    key = jax.random.key(0)
    state, losses = train_superres(
        key, MODEL, x, cond, residual=residual, steps=20, batch_size=8, lr=1e-2, ema_decay=None
    )
    assert len(losses) == 20 and np.isfinite(losses).all()
    loss_fn = jax.jit(make_loss(MODEL, residual, CosineVP()))
    # The same t and eps (fixed key) before and after 20 steps; the initial network outputs 0
    # (zero-initialised last conv), so the first loss is E|v|. Averaged over 4 keys.
    init = initial_params
    keys = [jax.random.key(i) for i in range(4)]
    before = np.mean([loss_fn(init, (x, cond), k)[0] for k in keys])
    after = np.mean([loss_fn(state.params, (x, cond), k)[0] for k in keys])
    assert after < 0.97 * before, (before, after)  # deterministic: same keys; 0.76 -> 0.70 seen
    table = evaluate_superres(
        MODEL,
        state.params,
        {"a": (x[:4], jax.tree.map(lambda a: a[:4], cond))},
        key,
        CONFIG,
        steps=(2,),
        n_members=4,
    )
    assert set(table["a"]) == {"bicubic", "flex_2", "variance"}
    assert np.isfinite(table["a"]["flex_2"]["rfne"])


def test_sample_cli_draws_scored_ensembles_from_a_flex_checkpoint(tmp_path, initial_params):
    from sciml import cli, pretrained
    from sciml.diffusion.superres import checkpoint_metadata
    from sciml.train import Checkpointer

    task = dataclasses.replace(CONFIG, warmup=0.2, snapshots=2, dt=0.05)
    params = initial_params
    saver = Checkpointer(tmp_path / "ckpt", keep=1)
    saver.save(1, {"params": params}, checkpoint_metadata(MODEL, task, scale=2.0), {})
    saver.close()
    model, loaded, _ = pretrained.load(tmp_path / "ckpt")  # rebuilt from init_inputs
    assert model == MODEL
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, loaded))

    out = tmp_path / "samples"
    argv = ["sample", str(tmp_path / "ckpt"), "--n", "1", "--members", "4", "--out", str(out)]
    # The stochastic DDIM options reach the sampler (the default one is run by the test above).
    assert cli.main([*argv, "--eta", "1", "--t-min", "0.15", "--noisy-end"]) == 0
    data = np.load(out / "samples.npz")
    assert data["members"].shape == (4, 2, task.n, task.n, 1)
    assert data["truth"].shape == data["base"].shape == (2, task.n, task.n, 1)
    assert np.isfinite(data["members"]).all() and float(data["viscosity"]) == 3e-3  # held out
    # The base passes through the coarse points (members need not: the residual is not forced
    # to vanish there, and band-limited draws are projected).
    np.testing.assert_allclose(data["base"][:, ::4, ::4], data["truth"][:, ::4, ::4], atol=1e-4)
    report = json.loads((out / "report.json").read_text())
    assert report["held_out"] and np.isfinite(report["metrics"]["flex_2"]["crps"])
    assert report["ddim_options"] == {"eta": 1.0, "t_min": 0.15, "denoise_last": False}
    for name in ("ensemble_0.png", "ensemble_1.png", "spectra.png", "pull.png"):
        assert (out / name).stat().st_size > 0
    assert cli.main(["sample", str(tmp_path / "ckpt"), "--members", "1", "--out", str(out)]) == 2
    assert cli.main([*argv, "--noisy-end"]) == 2  # a noisy end needs --t-min > 0
    # The calibrated noisy end: t_min chosen on fresh flows of the training viscosities.
    assert cli.main([*argv, "--calibrated", "--eta", "1"]) == 2  # it sets eta itself
    assert cli.main([*argv, "--calibrated", "--steps", "4"]) == 2  # calibrated for 2 calls
    assert cli.main([*argv, "--criterion", "spread"]) == 2  # only with --calibrated
    assert cli.main([*argv, "--calibrated", "--criterion", "spectrum"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["criterion"] == "spectrum"
    assert set(report["calibration"]["t_min"]) == {f"{nu:g}" for nu in task.train_viscosities}
    options = report["ddim_options"]
    assert options["eta"] == 1.0 and not options["denoise_last"]
    assert min(NOISY_END_LEVELS) <= options["t_min"] <= max(NOISY_END_LEVELS)


def test_noisy_end_levels_interpolate_in_log_viscosity_and_clamp():
    levels = {2e-3: 0.3, 8e-3: 0.1}
    assert noisy_end_options(levels, 4e-3) == pytest.approx(
        {"eta": 1.0, "t_min": 0.2, "denoise_last": False}
    )
    assert noisy_end_options(levels, 1e-3)["t_min"] == 0.3
    assert noisy_end_options(levels, 1e-2)["t_min"] == pytest.approx(0.1)
    assert noisy_end_options({3e-3: 0.15}, 5e-3)["t_min"] == 0.15
