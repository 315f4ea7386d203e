import jax
import numpy as np
import scipy.linalg

from sciml.diffusion.features import feature_distance, train_feature_network
from sciml.metrics import frechet_distance
from sciml.pde.sampling_tasks import StokesTask


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4)) + 0.5
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(
        ca + cb - 2 * np.real(scipy.linalg.sqrtm(ca @ cb))
    )
    np.testing.assert_allclose(frechet_distance(a, b), expected, rtol=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-8
    np.testing.assert_allclose(frechet_distance(a, a + 2.0), 4 * 4.0, rtol=1e-8)  # |shift|^2


def test_stokes_feature_network_learns_the_parameters_and_separates_families():
    task = StokesTask(n_t=16, n_y=16)
    key = jax.random.key(0)
    fields, params = task.sample_with_parameters(key, 512)
    np.testing.assert_array_equal(fields, task.sample(key, 512))
    model, weights, mse = train_feature_network(
        jax.random.key(1), fields, params, steps=200, batch_size=32
    )
    assert mse < 0.2  # standardised: 1 would be no skill
    truth = task.sample(jax.random.key(2), 256)
    same = feature_distance(model, weights, task.sample(jax.random.key(3), 256), truth)
    other = feature_distance(model, weights, task.sample(jax.random.key(4), 256, k=5.0), truth)
    assert other > 10 * same, (same, other)
