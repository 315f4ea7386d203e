import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import config, constraints, scoring
from sciml.errors import ConfigError
from sciml.operators import GaussianField, GaussianHead, ProbabilisticOperator, to_gaussians

# jit-initialised with an "rbg" key: threefry's initialisers are slow to compile on XLA:CPU.
KEY = "rbg"
BACKBONE = {"type": "sciml.operators.FNO", "modes": 3, "width": 8, "n_layers": 2}


@pytest.mark.parametrize("covariance", ["diagonal", "lowrank"])
def test_head_shapes_and_positive_variance(covariance):
    head = GaussianHead(out_channels=2, covariance=covariance, rank=3, min_variance=1e-4)
    features = 30.0 * jax.random.normal(jax.random.key(0), (2, 6, 5, 4))  # softplus saturates
    params = jax.jit(head.init)(jax.random.key(0, impl=KEY), features)
    out = jax.jit(head.apply)(params, features)
    assert out.mean.shape == out.variance.shape == (2, 6, 5, 2)
    assert float(out.variance.min()) >= np.float32(1e-4)  # the floor, however negative the input
    if covariance == "diagonal":
        assert out.factor is None
    else:
        assert out.factor.shape == (2, 6, 5, 2, 3)


@pytest.mark.parametrize("rank", [None, 3])
def test_to_gaussians_flattens_row_major_and_keeps_the_diagonal(rank):
    keys = jax.random.split(jax.random.key(0), 3)
    mean = jax.random.normal(keys[0], (2, 4, 3, 2))
    variance = jnp.exp(jax.random.normal(keys[1], (2, 4, 3, 2)))
    factor = None if rank is None else jax.random.normal(keys[2], (2, 4, 3, 2, rank))
    field = GaussianField(mean, variance, factor)
    gaussians = to_gaussians(*field)
    assert gaussians.mean.shape == (2, 24)
    np.testing.assert_array_equal(gaussians.mean[1], np.asarray(mean[1]).reshape(-1))
    diagonal = jax.vmap(constraints.Gaussian.variance)(gaussians)
    np.testing.assert_allclose(diagonal, field.marginal_variance().reshape(2, -1), rtol=1e-6)
    expected = variance if factor is None else variance + jnp.sum(factor**2, axis=-1)
    np.testing.assert_allclose(diagonal, expected.reshape(2, -1), rtol=1e-6)
    if factor is not None:
        # Entry (i, j) of the dense covariance pairs field points i and j in row-major order.
        dense = jax.vmap(lambda g: g.cov.dense())(gaussians)[0]
        f = np.asarray(factor[0]).reshape(24, rank)
        np.testing.assert_allclose(dense, f @ f.T + np.diag(variance[0].reshape(-1)), rtol=1e-5)


@pytest.mark.parametrize("covariance", ["diagonal", "lowrank"])
def test_projection_of_the_predicted_gaussians_conserves_mass(covariance):
    # A (time, space) field: the spatial integral must equal U(t) at every time. The projected mean
    # satisfies it to float32 round-off (~1e-6 relative), and the CRPS loss has finite gradients.
    nt, nx = 4, 16
    model = ProbabilisticOperator(
        backbone=BACKBONE, out_channels=1, covariance=covariance, rank=2, features=8
    )
    x = jax.random.normal(jax.random.key(1), (3, nt, nx, 1))
    y = jax.random.normal(jax.random.key(2), (3, nt, nx, 1))
    params = jax.jit(model.init)(jax.random.key(0, impl=KEY), x)
    totals = jnp.linspace(0.5, 1.0, nt)
    constraint = constraints.conservation_constraint(jnp.full((nx,), 1.0 / nx), totals)

    def loss(params):
        prior = to_gaussians(*model.apply(params, x))
        post = jax.vmap(constraints.project_gaussian, in_axes=(0, None))(prior, constraint)
        variance = jax.vmap(constraints.Gaussian.variance)(post)
        crps = scoring.crps_gaussian(post.mean, variance, y.reshape(3, -1), reduction="sum")
        return crps, (post.mean, variance)

    (value, (mean, variance)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert mean.shape == (3, nt * nx)
    masses = mean.reshape(3, nt, nx).mean(axis=-1)
    np.testing.assert_allclose(masses, np.broadcast_to(totals, (3, nt)), atol=1e-5)
    assert float(variance.min()) > -1e-6
    assert np.isfinite(float(value))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_probabilistic_operator_builds_from_a_config():
    spec = {
        "type": "sciml.operators.ProbabilisticOperator",
        "out_channels": 2,
        "covariance": "lowrank",
        "rank": 4,
        "features": 8,
        "backbone": {"type": "sciml.operators.UNO", "modes": 3, "widths": [8, 8]},
    }
    model = config.build(spec, "model")
    x = jnp.zeros((2, 12, 1))
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    assert set(params["params"]) == {"backbone", "head"}
    out = jax.eval_shape(model.apply, params, x)
    assert out.mean.shape == (2, 12, 2) and out.factor.shape == (2, 12, 2, 4)


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        ({**BACKBONE, "widht": 8}, "unknown key 'widht'"),
        ({**BACKBONE, "out_channels": 3}, "set by the wrapper"),
        ({"type": "sciml.operators.Nope"}, "does not exist"),
    ],
)
def test_probabilistic_operator_rejects_a_bad_backbone_at_build_time(backbone, message):
    spec = {"type": "sciml.operators.ProbabilisticOperator", "out_channels": 1}
    with pytest.raises(ConfigError, match=message):
        config.build({**spec, "backbone": backbone}, "model")
