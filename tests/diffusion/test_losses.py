import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.diffusion import (
    EDM,
    CosineVP,
    FlowMatching,
    diffusion_loss,
    edm_preconditioning,
    edm_weight,
    flow_matching_loss,
    pointwise_loss,
    sigmoid_weight,
)
from tests.diffusion import gaussian_model

M, S = 0.3, 0.6
N = 20000


def _data(n=N, seed=0):
    return M + S * jax.random.normal(jax.random.key(seed), (n, 1))


def _params(m=M, s=S):
    return {"m": jnp.float32(m), "s": jnp.float32(s)}


def _conditional_variance(schedule, kind, t):
    """Var[target | x_t] per element for x0 ~ N(M, S^2): for target = c . (x0, eps) and
    x_t = b . (x0, eps), it is c' Sigma c - (c' Sigma b)^2 / (b' Sigma b), Sigma = diag(S^2, 1)."""
    a, s = np.asarray(schedule.alpha(t)), np.asarray(schedule.sigma(t))
    da, ds = np.asarray(schedule.d_alpha(t)), np.asarray(schedule.d_sigma(t))
    c = {"eps": (0 * a, 1 + 0 * a), "x0": (1 + 0 * a, 0 * a), "v": (-s, a), "flow": (da, ds)}[kind]
    ccov = c[0] ** 2 * S**2 + c[1] ** 2
    cross = c[0] * a * S**2 + c[1] * s
    return ccov - cross**2 / (a**2 * S**2 + s**2)


@pytest.mark.parametrize(
    ("schedule", "kind"),
    [(CosineVP(), "eps"), (CosineVP(), "x0"), (CosineVP(shift=1.0), "v"), (FlowMatching(), "flow")],
)
def test_optimal_predictor_reaches_the_irreducible_loss(schedule, kind):
    t = (np.arange(20000) + 0.5) / 20000  # midpoint rule for t ~ U(0, 1)
    var = _conditional_variance(schedule, kind, t.astype(np.float64))
    expected = var.mean()
    # Given t the squared error of the posterior mean is var(t) chi^2_1, so one sample's loss has
    # variance <= E[3 var^2]; 4 standard errors of the mean of N, and float32 round-off.
    tolerance = 4 * np.sqrt(3 * np.mean(var**2) / N) + 1e-4 * expected
    key = jax.random.key(1)
    loss = diffusion_loss(
        gaussian_model(schedule, kind), _params(), _data(), None, key, schedule, kind=kind
    )
    assert abs(float(loss) - expected) < tolerance
    perturbed = jax.tree.map(lambda p: p + 0.1, _params())
    worse = diffusion_loss(
        gaussian_model(schedule, kind), perturbed, _data(), None, key, schedule, kind=kind
    )
    assert float(worse) > float(loss)


def test_flow_matching_loss_is_the_velocity_loss():
    schedule = FlowMatching()
    model = gaussian_model(schedule, "flow")
    key = jax.random.key(2)
    a = flow_matching_loss(model, _params(0.5), _data(), None, key)
    b = diffusion_loss(model, _params(0.5), _data(), None, key, schedule, kind="flow")
    assert float(a) == float(b)


def test_loss_space_compares_in_another_parameterisation():
    # A v-network scored in eps space is an eps-network of the same function (imperfect model).
    schedule = CosineVP()
    key = jax.random.key(3)
    wrong = _params(0.5, 0.4)
    via_v = diffusion_loss(
        gaussian_model(schedule, "v"),
        wrong,
        _data(),
        None,
        key,
        schedule,
        kind="v",
        loss_space="eps",
    )
    direct = diffusion_loss(
        gaussian_model(schedule, "eps"), wrong, _data(), None, key, schedule, kind="eps"
    )
    np.testing.assert_allclose(via_v, direct, rtol=1e-4)  # float32 conversions


def test_edm_preconditioned_loss_is_the_edm_weighted_x0_loss():
    # lambda(sigma) |D - x0|^2 = lambda c_out^2 |F - F_target|^2 and lambda c_out^2 = 1.
    schedule = EDM()
    key = jax.random.key(4)
    wrong = _params(0.5, 0.4)
    edm = diffusion_loss(
        gaussian_model(schedule, "edm"), wrong, _data(), None, key, schedule, kind="edm"
    )
    x0 = diffusion_loss(
        gaussian_model(schedule, "x0"),
        wrong,
        _data(),
        None,
        key,
        schedule,
        kind="x0",
        weighting="edm",
    )
    np.testing.assert_allclose(edm, x0, rtol=1e-4)


def test_weightings(x64):
    log_snr = jnp.linspace(-10.0, 10.0, 41)
    np.testing.assert_allclose(sigmoid_weight(jnp.array([1.5]), bias=1.5), [0.5])
    assert np.all(np.diff(sigmoid_weight(log_snr)) < 0)
    c = edm_preconditioning(jnp.exp(-log_snr / 2), 0.5)
    np.testing.assert_allclose(edm_weight(log_snr, 0.5) * c.c_out**2, 1.0, rtol=1e-12)


def test_pointwise_losses():
    d = jnp.array([-3.0, -0.5, 0.0, 0.25, 2.0])
    np.testing.assert_allclose(pointwise_loss(d, "l2"), d**2)
    np.testing.assert_allclose(pointwise_loss(d, "l1"), jnp.abs(d))
    np.testing.assert_allclose(
        pointwise_loss(d, "huber", huber_delta=1.0), [2.5, 0.125, 0.0, 0.03125, 1.5]
    )
    # The Literal annotation is type-checked in tests; the ValueError guards untyped callers.
    with pytest.raises((ValueError, TypeError)):
        pointwise_loss(d, "l3")


def test_loss_is_differentiable_through_the_network():
    x0 = jax.random.normal(jax.random.key(0), (4, 8, 2))
    params = {"w": jnp.float32(0.3), "b": jnp.ones(2)}

    def apply_fn(p, x, t, cond):
        return p["w"] * x + t[:, None, None] * p["b"][None, None, :]

    value, grads = jax.jit(
        jax.value_and_grad(
            lambda p: diffusion_loss(
                apply_fn,
                p,
                x0,
                None,
                jax.random.key(2),
                CosineVP(),
                loss="huber",
                weighting="sigmoid",
            )
        )
    )(params)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))
