import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.diffusion import (
    EDM,
    CosineVP,
    FlowMatching,
    StochasticInterpolant,
    karras_sigmas,
)

SCHEDULES = [
    CosineVP(),
    CosineVP(logsnr_min=-15.0, logsnr_max=10.0, shift=-1.5),
    EDM(),
    FlowMatching(),
    FlowMatching(sigma_min=0.05),
    StochasticInterpolant(scale=0.7, sigma_min=0.1),
]
INTERIOR = np.linspace(0.02, 0.98, 49)


@pytest.mark.parametrize("schedule", [CosineVP(), CosineVP(shift=2.0), CosineVP(-10.0, 5.0, -1.0)])
def test_cosine_is_variance_preserving_with_the_stated_log_snr_range(schedule, x64):
    t = jnp.linspace(0.0, 1.0, 101)
    # float64 round-off of sqrt(sigmoid) sums.
    np.testing.assert_allclose(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2, 1.0, atol=1e-14)
    ends = schedule.log_snr(jnp.array([0.0, 1.0]))
    expected = np.array([schedule.logsnr_max, schedule.logsnr_min]) + 2 * schedule.shift
    np.testing.assert_allclose(ends, expected, rtol=1e-10)
    # Unclipped and unshifted, the middle of the range is the plain cosine schedule's value.
    plain = CosineVP(logsnr_min=-80.0, logsnr_max=80.0)
    np.testing.assert_allclose(plain.log_snr(0.3), -2 * np.log(np.tan(np.pi * 0.3 / 2)), rtol=1e-12)


@pytest.mark.parametrize(
    ("schedule", "at0", "at1"),
    [
        (EDM(), (1.0, 0.002), (1.0, 80.0)),
        (FlowMatching(), (1.0, 0.0), (0.0, 1.0)),
        (FlowMatching(sigma_min=0.05), (1.0, 0.05), (0.0, 1.0)),
        (StochasticInterpolant(scale=0.7, sigma_min=0.1), (1.0, 0.1), (0.0, 0.1)),
    ],
)
def test_endpoint_values(schedule, at0, at1, x64):
    for t, (alpha, sigma) in ((0.0, at0), (1.0, at1)):
        np.testing.assert_allclose(schedule.alpha(t), alpha, atol=1e-14)
        np.testing.assert_allclose(schedule.sigma(t), sigma, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_log_snr_agrees_with_alpha_sigma_and_inverts(schedule, x64):
    t = jnp.asarray(INTERIOR)
    lam = schedule.log_snr(t)
    np.testing.assert_allclose(
        lam, 2 * np.log(schedule.alpha(t) / schedule.sigma(t)), rtol=1e-12, atol=1e-12
    )
    assert np.all(np.diff(lam) < 0)  # noise grows with t
    np.testing.assert_allclose(schedule.t_of_log_snr(lam), t, atol=1e-10)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_time_derivatives_match_autodiff(schedule, x64):
    t = jnp.asarray(INTERIOR)
    for value, derivative in (
        (schedule.alpha, schedule.d_alpha),
        (schedule.sigma, schedule.d_sigma),
    ):
        np.testing.assert_allclose(
            derivative(t), jax.vmap(jax.grad(value))(t), rtol=1e-10, atol=1e-12
        )


def test_karras_sigmas_endpoints_monotonicity_and_formula(x64):
    n, lo, hi, rho = 18, 0.002, 80.0, 7.0
    sigmas = np.asarray(karras_sigmas(n, lo, hi, rho))
    assert sigmas.shape == (n + 1,) and sigmas[-1] == 0.0
    np.testing.assert_allclose(sigmas[[0, n - 1]], [hi, lo], rtol=1e-12)
    assert np.all(np.diff(sigmas) < 0)
    i = np.arange(n)
    formula = (hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    np.testing.assert_allclose(sigmas[:-1], formula, rtol=1e-12)
    # The EDM schedule on a uniform grid in t is the same grid.
    schedule = EDM(sigma_min=lo, sigma_max=hi, rho=rho)
    np.testing.assert_allclose(schedule.sigmas(n), sigmas, rtol=1e-12)
    np.testing.assert_allclose(schedule.sigma(jnp.linspace(1.0, 0.0, n)), formula, rtol=1e-12)


def test_edm_training_times_follow_the_log_normal():
    schedule = EDM()
    n = 20000
    t = schedule.sample_t(jax.random.key(0), (n,))
    assert t.shape == (n,) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    log_sigma = np.log(np.asarray(schedule.sigma(t), np.float64))
    # Mean and std of N(-1.2, 1.2^2) from n draws: standard errors 1.2 / sqrt(n) and
    # 1.2 / sqrt(2 n) (0.0085, 0.006); 5 of them, plus float32 round-off of the t <-> sigma map.
    assert abs(log_sigma.mean() - schedule.p_mean) < 5 * 1.2 / np.sqrt(n) + 1e-3
    assert abs(log_sigma.std() - schedule.p_std) < 5 * 1.2 / np.sqrt(2 * n) + 1e-3


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_are_hashable_leafless_pytrees(schedule):
    assert jax.tree.leaves(schedule) == []
    assert hash(schedule) == hash(type(schedule)(**vars(schedule)))

    @jax.jit
    def f(s, t):
        return s.sigma(t)

    np.testing.assert_allclose(f(schedule, 0.5), schedule.sigma(0.5), rtol=1e-6)
