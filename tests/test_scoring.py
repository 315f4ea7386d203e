import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from sciml import scoring

# Exact identities are checked in float64 to 1e-12: a few dozen roundings of order-one numbers.
EXACT = 1e-12


def crps_brute_force(samples: np.ndarray, y: float, fair: bool) -> float:
    s = samples.size
    pairs = np.abs(samples[:, None] - samples[None, :]).sum()
    return np.abs(samples - y).mean() - pairs / (2 * s * (s - 1 if fair else s))


def test_crps_gaussian_matches_its_integral_definition(x64):
    # CRPS(F, y) = integral (F(x) - 1{x >= y})^2 dx, integrated by adaptive quadrature.
    for m, s, y in [(0.0, 1.0, 0.3), (1.5, 0.2, -0.4), (-2.0, 3.0, -2.0)]:
        cdf = stats.norm(m, s).cdf
        left, err_l = integrate.quad(lambda x, cdf=cdf: cdf(x) ** 2, -np.inf, y)
        right, err_r = integrate.quad(lambda x, cdf=cdf: (1 - cdf(x)) ** 2, y, np.inf)
        value = scoring.crps_gaussian(jnp.array(m), jnp.array(s**2), jnp.array(y))
        assert abs(float(value) - (left + right)) <= 10 * (err_l + err_r) + EXACT


def test_crps_gaussian_agrees_with_the_ensemble_estimators(x64):
    n_points, s = 2000, 32
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=n_points), np.linspace(0.5, 2.0, n_points)
    samples = mean[None] + std[None] * rng.normal(size=(s, n_points))
    y = np.zeros(n_points)
    exact = scoring.crps_gaussian(mean, std**2, y, reduction="none")
    fair = scoring.crps_ensemble(samples, y, fair=True, reduction="none")
    standard = scoring.crps_ensemble(samples, y, reduction="none")
    # Unbiased up to Monte Carlo error: 5 standard errors of the mean over independent points.
    diff = np.asarray(fair - exact)
    assert abs(diff.mean()) < 5 * diff.std() / np.sqrt(n_points)
    # The standard estimator is biased by E|X - X'| / (2 s) = std / (sqrt(pi) s), which this
    # sample size resolves (about 7 standard errors for this seed).
    bias = std / (np.sqrt(np.pi) * s)
    diff = np.asarray(standard - exact - bias)
    assert abs(diff.mean()) < 5 * diff.std() / np.sqrt(n_points)
    assert bias.mean() > 5 * diff.std() / np.sqrt(n_points)


@pytest.mark.parametrize("fair", [False, True])
def test_crps_ensemble_matches_the_pair_sum(x64, fair):
    rng = np.random.default_rng(0)
    samples, y = rng.normal(size=(9, 5)), rng.normal(size=5)
    expected = [crps_brute_force(samples[:, j], y[j], fair) for j in range(5)]
    got = scoring.crps_ensemble(jnp.asarray(samples), jnp.asarray(y), fair=fair, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=EXACT, atol=EXACT)


@pytest.mark.parametrize("fair", [False, True])
def test_crps_of_a_point_mass_is_the_absolute_error(x64, fair):
    x, y = jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 1.0, 2.0])
    samples = jnp.broadcast_to(x, (7, 3))
    got = scoring.crps_ensemble(samples, y, fair=fair, reduction="none")
    np.testing.assert_allclose(got, jnp.abs(x - y), atol=EXACT)
    # A zero variance is a point mass too (the coordinates a hard constraint fixes).
    zero = scoring.crps_gaussian(x, jnp.zeros(3), y, reduction="none")
    np.testing.assert_allclose(zero, jnp.abs(x - y), atol=EXACT)


@pytest.mark.parametrize("fair", [False, True])
def test_energy_score_is_the_crps_in_one_dimension(x64, fair):
    samples = np.random.default_rng(1).normal(size=(11, 6, 1))
    y = np.linspace(-1, 1, 6)[:, None]
    energy = scoring.energy_score(samples, y, fair=fair, reduction="none")
    crps = scoring.crps_ensemble(samples[..., 0], y[:, 0], fair=fair, reduction="none")
    np.testing.assert_allclose(energy, crps, rtol=EXACT, atol=EXACT)


@pytest.mark.parametrize("fair", [False, True])
def test_energy_score_matches_the_pair_sum(x64, fair):
    rng = np.random.default_rng(2)
    samples, y = rng.normal(size=(6, 3, 4, 2)), rng.normal(size=(3, 4, 2))
    flat = samples.reshape(6, 3, -1)
    expected = []
    for b in range(3):
        to_obs = np.linalg.norm(flat[:, b] - y[b].reshape(-1), axis=-1).mean()
        pairs = np.linalg.norm(flat[:, None, b] - flat[None, :, b], axis=-1).sum()
        expected.append(to_obs - pairs / (2 * 6 * (5 if fair else 6)))
    got = scoring.energy_score(jnp.asarray(samples), jnp.asarray(y), fair=fair)
    assert np.isclose(got, np.mean(expected), rtol=EXACT)


def test_gaussian_nll_matches_scipy(x64):
    rng = np.random.default_rng(3)
    mean, var, y = rng.normal(size=7), rng.uniform(0.1, 2, size=7), rng.normal(size=7)
    got = scoring.gaussian_nll(jnp.asarray(mean), jnp.asarray(var), jnp.asarray(y), reduction="sum")
    expected = -stats.norm(mean, np.sqrt(var)).logpdf(y).sum()
    assert np.isclose(got, expected, rtol=EXACT)


def test_scores_jit_and_have_finite_gradients():
    samples = jnp.asarray(np.random.default_rng(4).normal(size=(8, 2, 5)))
    y = jnp.zeros((2, 5))

    @jax.jit
    def total(samples, mean, var):
        return (
            scoring.energy_score(samples, y)
            + scoring.crps_ensemble(samples, y, fair=True)
            + scoring.crps_gaussian(mean, var, y)
            + scoring.gaussian_nll(mean, var, y)
        )

    # Identical samples put every pair at distance 0, where a naive norm has a NaN gradient.
    for s in [samples, jnp.zeros_like(samples)]:
        grads = jax.grad(total, argnums=(0, 1, 2))(s, y + 0.1, jnp.ones_like(y))
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_reductions():
    mean, var, y = jnp.zeros((3, 4)), jnp.ones((3, 4)), jnp.ones((3, 4))
    each = scoring.crps_gaussian(mean, var, y, reduction="none")
    assert each.shape == (3, 4)
    assert np.isclose(scoring.crps_gaussian(mean, var, y, reduction="sum"), each.sum(), rtol=1e-6)
    assert np.isclose(scoring.crps_gaussian(mean, var, y), each.mean(), rtol=1e-6)
    # Under the tests' runtime type checks the Literal annotation rejects it before our check does.
    with pytest.raises((TypeError, ValueError), match="reduction"):
        scoring.crps_gaussian(mean, var, y, reduction="max")
    with pytest.raises(ValueError, match="2 samples"):
        scoring.crps_ensemble(jnp.zeros((1, 4)), jnp.zeros(4), fair=True)
