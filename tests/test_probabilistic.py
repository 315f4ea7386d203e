import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import config
from sciml.constraints import LinearConstraint, project_gaussian
from sciml.probabilistic import (
    GaussianField,
    conservation_matrix,
    conserved_totals,
    gaussian_loss,
    probabilistic_metrics,
    project_field,
    to_gaussians,
)


def _field(rank: int | None, shape=(3, 10, 2)):
    keys = jax.random.split(jax.random.key(0), 4)
    mean = jax.random.normal(keys[0], shape)
    variance = jnp.exp(jax.random.normal(keys[1], shape))
    factor = None if rank is None else 0.5 * jax.random.normal(keys[2], (*shape, rank))
    return GaussianField(mean, variance, factor), jax.random.normal(keys[3], shape)


@pytest.mark.parametrize("rank", [None, 2])
def test_dppl_conserves_exactly_and_differentiates(rank):
    field, y = _field(rank)
    post = project_field(field, conserved_totals(y), "dppl")
    matrix = jnp.asarray(conservation_matrix((10,), 2))
    residual = jax.vmap(lambda m: matrix @ m)(post.mean) - conserved_totals(y)
    assert float(jnp.abs(residual).max()) < 1e-5  # float32 round-off of means of O(1) values
    # The projected variance of each conserved mean is zero: A Sigma' A^T = 0.
    along = jax.vmap(lambda g: matrix @ g.cov.matmul(matrix.T))(post)
    assert float(jnp.abs(along).max()) < 1e-5

    def loss(mean, field):
        return gaussian_loss(field._replace(mean=mean), y, projection="dppl")

    grad = jax.grad(loss)(field.mean, field)
    assert bool(jnp.all(jnp.isfinite(grad)))
    # With an isotropic covariance the projection is orthogonal: moving every point of a channel
    # by the same amount (a direction the constraint fixes) changes nothing.
    iso = GaussianField(field.mean, jnp.ones_like(field.variance))
    shift = jnp.zeros_like(field.mean).at[..., 0].add(0.3)
    assert np.isclose(float(loss(iso.mean + shift, iso)), float(loss(iso.mean, iso)), rtol=1e-5)


def test_mass_energy_dppl_conserves_both_exactly_and_differentiates():
    field, y = _field(2)
    totals = conserved_totals(y, "mass_energy")
    assert totals.shape == (3, 4)  # two means, then two mean squares
    post = project_field(field, totals, "dppl", constraint="mass_energy")
    achieved = conserved_totals(post.mean.reshape(y.shape), "mass_energy")
    # Newton stops at 100 float32 eps (1.2e-5) of these O(1) quantities.
    assert float(jnp.abs(achieved - totals).max()) < 1.2e-5
    grad = jax.grad(
        lambda mean: gaussian_loss(
            field._replace(mean=mean), y, projection="dppl", constraint="mass_energy"
        )
    )(field.mean)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0
    with pytest.raises(ValueError, match="linear constraints only"):
        config.TrainConfig(projection="probconserv", constraint="mass_energy")


@pytest.mark.parametrize("projection", ["dppl", "probconserv"])
@pytest.mark.parametrize("rank", [None, 2])
def test_structured_conservation_matches_the_dense_matrix(rank, projection):
    field, y = _field(rank)
    totals = conserved_totals(y)
    post = project_field(field, totals, projection)
    matrix = jnp.asarray(conservation_matrix((10,), 2))
    noise = 1e-3 if projection == "probconserv" else 0.0

    def dense(gaussian, target):
        constraint = LinearConstraint(matrix=matrix, target=target)
        return project_gaussian(gaussian, constraint, noise_variance=noise)

    reference = jax.vmap(dense)(to_gaussians(*field), totals)
    # float32 round-off of O(1) values through sums of 10 terms (measured 5e-7).
    np.testing.assert_allclose(post.mean, reference.mean, atol=1e-5)
    variances = [jax.vmap(lambda g: g.variance())(p) for p in (post, reference)]
    np.testing.assert_allclose(*variances, rtol=1e-5, atol=1e-6)


def test_probconserv_tends_to_the_hard_projection():
    field, y = _field(None)
    totals = conserved_totals(y)
    hard = project_field(field, totals, "dppl").mean
    soft = [
        project_field(field, totals, "probconserv", noise_variance=s).mean for s in (1e-1, 1e-5)
    ]
    assert float(jnp.abs(soft[1] - hard).max()) < 1e-3 < float(jnp.abs(soft[0] - hard).max())


def test_coverage_of_a_calibrated_gaussian_is_nominal():
    # The truth drawn from the predicted Gaussian: coverage of the 90% interval is 0.9 up to
    # Monte-Carlo error sqrt(0.9 * 0.1 / 40000) = 0.0015 (bound: 4 of those).
    keys = jax.random.split(jax.random.key(1), 2)
    mean = jax.random.normal(keys[0], (4, 100, 100, 1))
    std = 0.3 * jnp.ones_like(mean)
    y = mean + std * jax.random.normal(keys[1], mean.shape)
    out = probabilistic_metrics(GaussianField(mean, std**2), y, "none", np.ones(1))
    assert abs(float(out["coverage90"]) - 0.9) < 0.006
    # For y ~ N(m, s^2), E CRPS = E|X - y| - E|X - X'| / 2 = 2 s / sqrt(pi) - s / sqrt(pi).
    assert np.isclose(float(out["crps"]), 0.3 / np.sqrt(np.pi), rtol=0.01)


@pytest.mark.parametrize("constraint", ["mass", "mass_energy"])
def test_probharde2e_trains_end_to_end(tiny_config, constraint):
    from sciml.experiment import predict_split, train

    overrides = [
        "model={type: sciml.operators.ProbabilisticOperator, out_channels: 1, covariance: lowrank,"
        " rank: 2, features: 8, backbone: {type: sciml.operators.FNO, modes: 4, width: 8,"
        " n_layers: 2, projection_width: 16}}",
        "train.loss=crps",
        "train.projection=dppl",
        f"train.constraint={constraint}",
        "train.steps=6",
    ]
    run_dir = train(config.load(tiny_config, overrides))  # on the 8-device data mesh
    report = json.loads((run_dir / "report.json").read_text())
    rows = report["probabilistic"]
    # ProbConserv's soft update is linear only; Newton stops at 100 float32 eps for mass_energy.
    assert set(rows) == (
        {"none", "dppl", "probconserv"} if constraint == "mass" else {"none", "dppl"}
    )
    assert rows["dppl"]["constraint_error"] < 1e-5 < rows["none"]["constraint_error"]
    assert np.isfinite(report["metrics"]["rel_l2"])
    # Point predictions (validation, best-checkpoint choice, the report's metrics) are the mean
    # under the projection trained with: it conserves, whereas the raw head's mean drifts.
    _, prediction, truth = predict_split(run_dir, "test", 4)
    mass = [v.reshape(len(v), -1).mean(axis=1) for v in (prediction, truth)]
    np.testing.assert_allclose(mass[0], mass[1], atol=1e-5 * float(np.abs(truth).max()))


def test_a_probabilistic_loss_needs_a_gaussian_head(tiny_config):
    from sciml.errors import ConfigError
    from sciml.experiment import train

    with pytest.raises(ConfigError, match="go with a Gaussian head"):
        train(config.load(tiny_config, ["train.loss=crps", "train.steps=2"]))
