import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.diffusion import (
    EDM,
    CosineVP,
    FlowMatching,
    StochasticInterpolant,
    convert,
    denoise,
    edm_preconditioning,
    from_x0_eps,
    network_target,
    to_eps,
    to_x0,
    to_x0_eps,
)
from tests.diffusion import gaussian_model

SPACES = ("eps", "x0", "v", "flow")
SCHEDULES = [CosineVP(), EDM(), FlowMatching(), StochasticInterpolant(sigma_min=0.1)]


def _batch(schedule, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    t = jax.random.uniform(k1, (6,), jnp.float64, 0.05, 0.95)  # alpha, sigma > 0
    x0 = jax.random.normal(k2, (6, 5, 3), jnp.float64)
    eps = jax.random.normal(k3, (6, 5, 3), jnp.float64)
    coefs = schedule.alpha(t), schedule.sigma(t), schedule.d_alpha(t), schedule.d_sigma(t)
    a, s = coefs[0][:, None, None], coefs[1][:, None, None]
    return t, x0, eps, a * x0 + s * eps, coefs


@pytest.mark.parametrize(("schedule", "kind"), list(itertools.product(SCHEDULES, SPACES)))
def test_every_prediction_recovers_x0_and_eps(schedule, kind, x64):
    _, x0, eps, x_t, (a, s, da, ds) = _batch(schedule)
    pred = from_x0_eps(x0, eps, a, s, kind, d_alpha=da, d_sigma=ds)
    x0_back, eps_back = to_x0_eps(pred, x_t, a, s, kind, d_alpha=da, d_sigma=ds)
    # Linear maps with coefficients O(1..100) (EDM's sigma up to 80): float64 round-off.
    np.testing.assert_allclose(x0_back, x0, atol=1e-11)
    np.testing.assert_allclose(eps_back, eps, atol=1e-11)
    np.testing.assert_allclose(to_x0(pred, x_t, a, s, kind, d_alpha=da, d_sigma=ds), x0_back)
    np.testing.assert_allclose(to_eps(pred, x_t, a, s, kind, d_alpha=da, d_sigma=ds), eps_back)


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(SPACES, 2)))
def test_conversions_round_trip(source, target, x64):
    schedule = CosineVP(shift=0.5)
    _, x0, eps, x_t, (a, s, da, ds) = _batch(schedule, seed=1)
    pred = from_x0_eps(x0, eps, a, s, source, d_alpha=da, d_sigma=ds)
    there = convert(pred, x_t, a, s, source, target, d_alpha=da, d_sigma=ds)
    np.testing.assert_allclose(there, from_x0_eps(x0, eps, a, s, target, d_alpha=da, d_sigma=ds))
    back = convert(there, x_t, a, s, target, source, d_alpha=da, d_sigma=ds)
    np.testing.assert_allclose(back, pred, atol=1e-12)


def test_v_prediction_matches_flex_formulas(x64):
    # FLEX (variance preserving): x_hat = alpha z - sigma v, eps_hat = sigma z + alpha v.
    _, x0, eps, x_t, (a, s, _, _) = _batch(CosineVP())
    a, s = a[:, None, None], s[:, None, None]
    v = a * eps - s * x0
    np.testing.assert_allclose(to_x0(v, x_t, a, s, "v"), a * x_t - s * v, atol=1e-13)
    np.testing.assert_allclose(to_eps(v, x_t, a, s, "v"), s * x_t + a * v, atol=1e-13)


def test_flow_needs_derivatives():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="d_alpha"):
        to_x0(x, x, 0.5, 0.5, "flow")


def test_edm_preconditioning_identities(x64):
    sd = 0.5
    sigma = jnp.geomspace(0.002, 80.0, 25)
    c = edm_preconditioning(sigma, sd)
    np.testing.assert_allclose(c.c_skip, sd**2 / (sigma**2 + sd**2), rtol=1e-14)
    np.testing.assert_allclose(c.c_skip + (c.c_out / sd) ** 2, 1.0, rtol=1e-14)
    np.testing.assert_allclose(c.c_in**2 * (sigma**2 + sd**2), 1.0, rtol=1e-14)
    np.testing.assert_allclose(c.c_noise, np.log(sigma) / 4, rtol=1e-14)
    # x0 ~ N(0, sd^2): the target F = (x0 - c_skip (x0 + sigma eps)) / c_out has variance
    # ((1 - c_skip)^2 sd^2 + c_skip^2 sigma^2) / c_out^2 = 1 exactly.
    var = ((1 - c.c_skip) ** 2 * sd**2 + c.c_skip**2 * sigma**2) / c.c_out**2
    np.testing.assert_allclose(var, 1.0, rtol=1e-13)


def test_edm_network_target_has_unit_variance_when_sampled(x64):
    schedule = EDM()
    n = 40000
    k1, k2 = jax.random.split(jax.random.key(3))
    x0 = schedule.sigma_data * jax.random.normal(k1, (n, 1), jnp.float64)
    eps = jax.random.normal(k2, (n, 1), jnp.float64)
    for t in (0.2, 0.5, 0.9):
        target = network_target(x0, eps, jnp.full((n,), t), schedule, "edm", schedule.sigma_data)
        # Sample variance of n unit Gaussians: standard error sqrt(2 / n) = 0.007; 5 of them.
        assert abs(float(jnp.var(target)) - 1.0) < 5 * np.sqrt(2 / n)


@pytest.mark.parametrize("schedule", [CosineVP(), EDM(), FlowMatching()])
@pytest.mark.parametrize("kind", ["eps", "x0", "v", "flow", "edm"])
def test_denoise_returns_the_posterior_mean_for_every_kind(schedule, kind, x64):
    m, s = 0.3, 0.8
    t, _, _, x_t, (a, sg, _, _) = _batch(schedule, seed=2)
    params = {"m": jnp.float64(m), "s": jnp.float64(s)}
    x0_hat, eps_hat = denoise(
        gaussian_model(schedule, kind), params, x_t, t, None, schedule, kind=kind
    )
    a, sg = a[:, None, None], sg[:, None, None]
    var = a**2 * s**2 + sg**2
    np.testing.assert_allclose(x0_hat, m + a * s**2 / var * (x_t - a * m), atol=1e-11)
    np.testing.assert_allclose(eps_hat, sg / var * (x_t - a * m), atol=1e-11)
