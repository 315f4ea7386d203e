import jax.numpy as jnp
import numpy as np
import pytest

from sciml import fields, losses, metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 32, 16, 2))
    return jnp.asarray(target + 0.1 * rng.normal(size=target.shape)), jnp.asarray(target)


def test_relative_l2_matches_its_definition(pair):
    pred, target = np.asarray(pair[0]), np.asarray(pair[1])
    per_sample = [np.linalg.norm(p - t) / np.linalg.norm(t) for p, t in zip(pred, target)]
    assert np.isclose(metrics.relative_l2(*pair), np.mean(per_sample), rtol=1e-5)
    assert np.isclose(losses.relative_l2(*pair), np.mean(per_sample), rtol=1e-5)


def test_perfect_prediction_scores_zero(pair):
    values = metrics.all_metrics(pair[1], pair[1])
    assert all(float(v) == 0.0 for v in values.values())


def test_vrmse_of_the_mean_predictor_is_one(pair):
    target = pair[1]
    mean = jnp.broadcast_to(target.mean(axis=(1, 2), keepdims=True), target.shape)
    assert np.isclose(metrics.vrmse(mean, target), 1.0, atol=1e-5)


def test_fourier_bands_add_up_to_the_rmse(pair):
    bands = metrics.fourier_band_rmse(*pair)
    total = np.sqrt(np.mean((np.asarray(pair[0]) - np.asarray(pair[1])) ** 2))
    assert np.isclose(sum(float(v) ** 2 for v in bands.values()), total**2, rtol=1e-5)


def test_fourier_bands_locate_the_error():
    x = np.arange(64) / 64
    target = np.zeros((1, 64, 1))
    pred = np.sin(2 * np.pi * 20 * x)[None, :, None]  # error only at |k| = 20: the high band
    bands = metrics.fourier_band_rmse(jnp.asarray(pred), jnp.asarray(target))
    assert float(bands["low"]) < 1e-6 and float(bands["mid"]) < 1e-6
    assert np.isclose(float(bands["high"]), np.sqrt(0.5), rtol=1e-5)


def test_spectral_error_ratio_locates_the_error_in_its_shell(x64):
    x = fields.grid(32)
    truth = sum(np.cos(2 * np.pi * k * x) / k for k in range(1, 16))[None, :, None]
    pred = truth + 0.1 * np.cos(2 * np.pi * 12 * x)[None, :, None]
    k, ratio = metrics.spectral_error_ratio(jnp.asarray(pred), jnp.asarray(truth))
    # Error energy 0.1^2/4 against the truth's (1/12)^2/4 in shell 12, nothing elsewhere.
    assert np.isclose(ratio[12], (0.1 * 12) ** 2, rtol=1e-10)
    assert np.allclose(np.delete(ratio, 12), 0, atol=1e-20)


def test_resolution_consistency_is_zero_for_one_band_limited_function(x64):
    fine = fields.spectral_resample(
        jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 1))), 64
    )
    coarse = fields.spectral_resample(fine, 16)
    assert metrics.resolution_consistency(fine, coarse) < 1e-12
    assert metrics.resolution_consistency(coarse, fine) < 1e-12
    wiggle = fine + 0.1 * np.cos(np.pi * np.arange(64))[None, :, None]  # grid-scale mode only
    assert metrics.resolution_consistency(wiggle, coarse) < 1e-12  # invisible on 16 points
    shifted = fine.at[:, :, 0].add(0.1)
    assert metrics.resolution_consistency(shifted, coarse) > 0.01


def test_relative_h1_weighs_an_error_by_its_wavenumber(x64):
    x = fields.grid(128)
    target = jnp.asarray(np.sin(2 * np.pi * x)[None, :, None])
    error = 0.01 * np.sin(2 * np.pi * 8 * x)[None, :, None]
    assert float(losses.relative_h1(target, target)) == 0.0
    # |sin(2 pi k x)|_H1^2 ~ (1 + (2 pi k)^2) / 2; central differences shrink 2 pi k by
    # sin(2 pi k / n) n / (2 pi k) (0.974 at k = 8, n = 128), so compare with that factor.
    k_eff = np.sin(2 * np.pi * 8 / 128) * 128
    expected = 0.01 * np.sqrt((1 + k_eff**2) / (1 + (2 * np.pi) ** 2))
    assert np.isclose(float(losses.relative_h1(target + error, target)), expected, rtol=0.01)


def test_lowpass_keeps_exactly_the_band(x64):
    x, y = np.meshgrid(fields.grid(32), fields.grid(16), indexing="ij")
    low = np.cos(2 * np.pi * (3 * x - 2 * y))
    high = np.sin(2 * np.pi * (3 * x + 5 * y)) + np.cos(2 * np.pi * 9 * x)
    u = jnp.asarray((low + high)[None, ..., None])
    out = fields.lowpass(u, 4, ndim=2)
    np.testing.assert_allclose(out[0, ..., 0], low, atol=1e-12)
    np.testing.assert_allclose(fields.lowpass(out, 4, ndim=2), out, atol=1e-12)
