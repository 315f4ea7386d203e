import jax
import numpy as np
import pytest

from sciml.pde import gaussian_random_field, truncated_fourier_series


def test_grf_has_the_requested_spectrum():
    # The coefficient of e^(i k x) in sqrt(2) Re(sum a xi e) is (a_k xi_k + a_-k conj(xi_-k)) / sqrt(2),
    # whose mean power is 2 a_k^2 (E|xi|^2 = 2): check mode 1 over many samples.
    n, sigma, tau, alpha = 64, 25.0, 5.0, 2.0
    keys = jax.random.split(jax.random.key(0), 4000)
    u = jax.vmap(lambda k: gaussian_random_field(k, (n,), sigma=sigma, tau=tau, alpha=alpha))(keys)
    power = np.mean(np.abs(np.fft.fft(np.asarray(u), norm="forward", axis=1)) ** 2, axis=0)
    amplitude = sigma * ((2 * np.pi) ** 2 + tau**2) ** (-alpha / 2)
    assert abs(np.asarray(u).mean()) < 1e-6 * np.abs(np.asarray(u)).max() * n
    # Modes +1 and -1 average 4000 samples each: relative std of the estimate ~ 1/sqrt(4000) = 1.6%,
    # so 8% is five standard deviations.
    assert power[1] == pytest.approx(2 * amplitude**2, rel=0.08)


def test_burgers_dataset_shapes_reproducibility_and_invariants():
    from sciml import config
    from tests.conftest import TINY_CONFIG

    gen = config.build(TINY_CONFIG["data"]["generator"], "generator")
    a = gen.generate(jax.random.key(1), 3)
    b = gen.generate(jax.random.key(1), 3)
    assert a.fields["u"].shape == (3, 3, 32) and np.array_equal(a.fields["u"], b.fields["u"])
    assert np.allclose(a.time, [0, 0.1, 0.2])
    # Burgers conserves the mean and dissipates energy.
    u = a.fields["u"]
    assert np.allclose(u.mean(-1), u[:, :1].mean(-1), atol=1e-5)
    assert np.all(np.diff((u**2).mean(-1), axis=1) < 0)


def test_truncated_fourier_series_is_band_limited_and_scaled():
    u = np.asarray(
        truncated_fourier_series(jax.random.key(0), (32, 32), max_wavenumber=3, amplitude=2.0)
    )
    assert np.isclose(np.abs(u).max(), 2.0, rtol=1e-5)
    spec = np.abs(np.fft.fft2(u))
    k = np.abs(np.fft.fftfreq(32, 1 / 32))
    assert spec[(k[:, None] > 3) | (k[None, :] > 3)].max() < 1e-3 * spec.max()
    assert abs(u.mean()) < 1e-5
