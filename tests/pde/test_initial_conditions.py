import jax
import numpy as np
import pytest

from sciml.pde import BurgersDataset, gaussian_random_field


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


def test_dataset_generator_shapes_and_reproducibility():
    gen = BurgersDataset(n_solve=64, resolution=32, dt=0.01, t_final=0.2, n_snapshots=3)
    a = gen.generate(jax.random.key(1), 3)
    b = gen.generate(jax.random.key(1), 3)
    assert a.fields["u"].shape == (3, 3, 32) and np.array_equal(a.fields["u"], b.fields["u"])
    assert np.allclose(a.time, [0, 0.1, 0.2])
    # Burgers conserves the mean and dissipates energy.
    u = a.fields["u"]
    assert np.allclose(u.mean(-1), u[:, :1].mean(-1), atol=1e-5)
    assert np.all(np.diff((u**2).mean(-1), axis=1) < 0)


def test_generator_rejects_a_step_that_does_not_divide_the_snapshots():
    with pytest.raises(ValueError, match="must be an integer multiple"):
        BurgersDataset(dt=0.003, t_final=1.0, n_snapshots=5)
