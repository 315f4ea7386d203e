import numpy as np
import pytest

from sciml.diffusion.evaluation import (
    calibrate_spectrum,
    crps,
    ensemble_metrics,
    psnr,
    pull_statistics,
    rfne,
    rfne_batch,
    spectrum_error,
    spread_skill,
    ssim,
)

RNG = np.random.default_rng(0)


def _fields(batch: int = 3, n: int = 32) -> np.ndarray:
    return RNG.normal(size=(batch, n, n, 1)).astype(np.float32)


def test_rfne_of_a_scaled_field_is_the_scale_minus_one():
    x = _fields()
    # (1 + a) x - x = a x exactly up to float32 round-off (~1e-7 relative).
    np.testing.assert_allclose(rfne(1.25 * x, x), 0.25, rtol=1e-5)
    np.testing.assert_allclose(rfne_batch(0.5 * x, x), 0.5, rtol=1e-5)


def test_rfne_per_sample_differs_from_batch_when_errors_differ():
    x = _fields(2)
    pred = x.copy()
    pred[1] *= 2.0
    np.testing.assert_allclose(rfne(pred, x), [0.0, 1.0], atol=1e-6)
    expected = np.linalg.norm(x[1]) / np.linalg.norm(x)
    np.testing.assert_allclose(rfne_batch(pred, x), expected, rtol=1e-5)


def test_psnr_of_a_known_mse():
    x = np.zeros((2, 16, 16, 1), np.float32)
    x[:, 0, 0] = 1.0  # range 1
    pred = x + 0.1  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    np.testing.assert_allclose(psnr(pred, x), 20.0, rtol=1e-5)
    np.testing.assert_allclose(psnr(pred, x, data_range=10.0), 40.0, rtol=1e-5)


def test_ssim_is_one_for_identical_fields_and_decreases_with_noise():
    x = _fields(2)
    np.testing.assert_allclose(ssim(x, x), 1.0, rtol=1e-5)
    values = [float(ssim(x + s * _fields(2), x).mean()) for s in (0.1, 0.5, 2.0)]
    assert 1.0 > values[0] > values[1] > values[2], values


def test_ssim_rejects_grids_smaller_than_the_window():
    x = _fields(1, 8)
    with pytest.raises(ValueError, match="window"):
        ssim(x, x)


def test_spectrum_error_is_zero_for_identical_fields_and_sees_the_high_band():
    x = _fields(2)
    assert spectrum_error(x, x, k_min=4) == {"rel": 0.0, "log": 0.0}
    # Doubling the field quadruples the energy in every shell.
    np.testing.assert_allclose(spectrum_error(2 * x, x, k_min=4)["rel"], 3.0, rtol=1e-5)
    # A smooth (low-passed) prediction misses the band above the cut-off.
    spec = np.fft.fft2(x, axes=(1, 2))
    k = np.fft.fftfreq(32, 1 / 32)
    keep = (np.abs(k)[:, None] <= 4) & (np.abs(k)[None, :] <= 4)
    smooth = np.real(np.fft.ifft2(spec * keep[None, :, :, None], axes=(1, 2)))
    assert spectrum_error(smooth, x, k_min=8)["rel"] > 0.99


def test_calibrating_the_spectrum_picks_the_level_that_restores_the_band_energy():
    """Two members = the targets with the shells above |k| = 4 scaled by the level and by 1.2
    times it: band energy ratios level^2 and 1.44 level^2 in every shell, so the error averaged
    over the members is (|level^2 - 1| + |1.44 level^2 - 1|) / 2 exactly; 0.9 minimises it."""
    x = _fields(4)
    spec = np.fft.fft2(x, axes=(1, 2))
    k = np.abs(np.fft.fftfreq(32, 1 / 32))
    low = (np.rint(np.hypot(k[:, None], k[None, :])) <= 4)[None, :, :, None]  # "round" shells

    def sample(level):
        scale = [np.where(low, 1.0, a) for a in (level, 1.2 * level)]
        return np.stack([np.real(np.fft.ifft2(spec * s, axes=(1, 2))) for s in scale])

    best, errors = calibrate_spectrum(sample, x, (0.5, 0.8, 0.9, 1.0, 1.5), k_min=4, k_max=10)
    assert best == 0.9
    for level, error in errors.items():
        expected = (abs(level**2 - 1) + abs(1.44 * level**2 - 1)) / 2
        np.testing.assert_allclose(error, expected, atol=1e-5)


def test_pull_of_a_calibrated_gaussian_ensemble_is_student_t():
    # Truth and m members drawn from the same N(mu, s^2) per element: z is t with m - 1 dof,
    # std sqrt((m - 1) / (m - 3)). 4096 elements: MC error of the mean ~ 1/64, of the std ~ 1/90;
    # tolerance 4 standard errors.
    m, shape = 16, (4, 32, 32, 1)
    mu = RNG.normal(size=shape)
    s = np.exp(RNG.normal(size=shape) * 0.3)
    y = mu + s * RNG.normal(size=shape)
    samples = mu + s * RNG.normal(size=(m, *shape))
    pull = pull_statistics(samples.astype(np.float32), y.astype(np.float32))
    n = y.size
    assert abs(pull["mean"]) < 4 * np.sqrt(15 / 13) / np.sqrt(n)
    assert abs(pull["std"] - np.sqrt(15 / 13)) < 4 * 1.2 / np.sqrt(2 * n)
    ratio = spread_skill(samples.astype(np.float32), y.astype(np.float32))["ratio"]
    assert abs(ratio - 1) < 0.1  # spread estimated from 64k values: error ~1%


def test_pull_detects_an_overconfident_ensemble_and_crps_of_a_point_mass():
    shape = (2, 16, 16, 1)
    y = RNG.normal(size=shape).astype(np.float32)
    samples = (0.2 * RNG.normal(size=(32, *shape))).astype(np.float32)
    assert pull_statistics(samples, y)["std"] > 3
    # An ensemble of identical members is a point mass: CRPS = mean |x - y|.
    point = np.broadcast_to(y + 0.5, (4, *shape))
    np.testing.assert_allclose(crps(point, y), 0.5, rtol=1e-5)


def test_ensemble_metrics_keys():
    y = _fields(2)
    out = ensemble_metrics(y[None] + 0.1 * RNG.normal(size=(8, *y.shape)), y, k_min=8)
    for key in ("rfne", "mean_rfne", "psnr", "ssim", "spectrum_rel", "crps", "pull_std"):
        assert np.isfinite(out[key]), key
