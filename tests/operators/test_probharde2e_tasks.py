import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.constraints import coherency_constraint
from sciml.operators import GaussianField
from sciml.pde.analytic import stefan_solution
from sciml.plotting import plot_predictive_interval
from sciml.probabilistic import (
    PROJECTIONS,
    front_error,
    front_errors,
    front_position,
    front_threshold,
    predictive_marginals,
)
from tests.conftest import REPO

N_CELLS = 100
CENTRES = (np.arange(N_CELLS) + 0.5) / N_CELLS


def _pme(m: float, t: float) -> np.ndarray:
    return (m * np.maximum(t - CENTRES, 0.0)) ** (1 / m)


@pytest.mark.parametrize(
    "kind, profile, front",
    [
        ("porous_medium", _pme(2.0, 0.4), 40.0),
        ("porous_medium", _pme(3.0, 0.637), 63.7),
        ("porous_medium", _pme(6.0, 0.25), 25.0),
        ("stefan", None, None),
    ],
)
def test_front_position_of_exact_profiles_is_within_a_cell(kind, profile, front):
    if kind == "stefan":  # the similarity solution; its front is where u first falls below p*
        p_star, t = 0.6, 0.05
        profile = np.asarray(stefan_solution(t, CENTRES, p_star))
        front = N_CELLS * CENTRES[np.argmax(profile < p_star)]
    # Cell-centre sampling puts the crossing within one cell of the exact front (interpolation
    # error of a profile that is steep but monotone across the last cell).
    found = float(front_position(jnp.asarray(profile, jnp.float32), front_threshold(kind)))
    assert abs(found - front) < 1.0
    # The error counts cells: shifting the profile by 3 cells moves the front by 3.
    shifted = np.concatenate([profile[:1].repeat(3), profile[:-3]])
    error = front_error(
        jnp.asarray(shifted)[None, :, None],
        jnp.asarray(profile)[None, :, None],
        front_threshold(kind),
    )
    assert np.isclose(float(error), 3.0, atol=1e-4)


def test_front_position_edge_cases_and_heat_has_no_front():
    levels = jnp.stack([jnp.zeros(8), jnp.ones(8), jnp.linspace(1.0, 0.0, 8)])
    found = front_position(levels, 0.5)
    # All below: 0; all above: n; linear from 1 to 0 over centres 0.5..7.5: crossing at x = 4.
    np.testing.assert_allclose(np.asarray(found), [0.0, 8.0, 4.0], atol=1e-5)
    assert front_threshold("heat") is None


def test_front_errors_per_projection_are_zero_for_the_truth():
    truth = jnp.asarray(np.stack([_pme(2.0, 0.3), _pme(2.5, 0.5)]))[..., None]
    scale, offset = np.array([2.0]), np.array([0.1])
    normalised = (truth - offset[None, None]) / scale[None, None]
    field = GaussianField(normalised, 1e-4 * jnp.ones_like(normalised))
    errors = front_errors(field, normalised, 0.05, scale, offset)
    assert set(errors) == set(PROJECTIONS)
    # An exact mean meets the conservation law already: no projection moves it.
    assert max(float(v) for v in errors.values()) < 1e-3


def test_predictive_interval_plot_writes_a_png(tmp_path):
    keys = jax.random.split(jax.random.key(0), 3)
    mean = jax.random.normal(keys[0], (2, 32, 1))
    field = GaussianField(mean, jnp.exp(jax.random.normal(keys[1], mean.shape)))
    y = mean + jax.random.normal(keys[2], mean.shape)
    mu, std = predictive_marginals(field, y, "dppl")
    assert mu.shape == std.shape == y.shape
    path = tmp_path / "interval.png"
    mu, std, y = (np.asarray(a[0]) for a in (mu, std, y))
    plot_predictive_interval(path, mu, std, y, inputs=y, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def timeseries():
    spec = importlib.util.spec_from_file_location(
        "probharde2e_timeseries", REPO / "scripts" / "probharde2e_timeseries.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coherency_projection_makes_aggregates_the_sums(timeseries):
    horizon, n = 3, 3 * 7
    constraint = coherency_constraint(timeseries.CHILDREN, n_series=7, horizon=horizon)
    keys = jax.random.split(jax.random.key(0), 3)
    forecast = timeseries.GaussianForecast(
        mean=jax.random.normal(keys[0], (2, n)),
        variance=jnp.exp(jax.random.normal(keys[1], (2, n))),
        factor=0.5 * jax.random.normal(keys[2], (2, n, 2)),
    )

    @jax.jit
    def project_and_draw(forecast):
        post = timeseries.project_forecast(forecast, constraint, "dppl")
        return post.mean, jax.vmap(lambda g: g.sample(jax.random.key(3), 4))(post)

    def gaps(u):  # parent minus the sum of its children, every step
        u = u.reshape(*u.shape[:-1], horizon, 7)
        return jnp.stack(
            [u[..., p] - u[..., list(k)].sum(-1) for p, k in timeseries.CHILDREN.items()]
        )

    mean, draws = project_and_draw(forecast)
    assert float(jnp.abs(gaps(forecast.mean)).max()) > 0.1  # the prior is incoherent
    assert float(jnp.abs(gaps(mean)).max()) < 1e-5  # float32 round-off of O(1) sums
    assert float(jnp.abs(gaps(draws)).max()) < 1e-5  # and so is every draw


def test_timeseries_script_trains_and_scores_on_a_tiny_problem(timeseries):
    series = timeseries.make_hierarchy(np.random.default_rng(0), 120)
    np.testing.assert_allclose(series[:, 0], series[:, 3:].sum(1), rtol=1e-5)
    x, y = timeseries.make_windows(series / np.abs(series).max(), 8, 2)
    assert x.shape == (111, 8, 7) and y.shape == (111, 2, 7)
    np.testing.assert_array_equal(y[0, 0], x[1, -1])
    constraint = coherency_constraint(timeseries.CHILDREN, n_series=7, horizon=2)
    model = timeseries.Forecaster(horizon=2, hidden=16, rank=2)
    params, _ = timeseries.train_forecaster(
        jax.random.key(0), model, constraint, x, y, projection="dppl", steps=3, batch_size=8
    )
    rows = {
        p: timeseries.forecast_metrics(
            jax.random.key(1), model, params, constraint, x, y, p, scale=2.0, n_samples=4
        )
        for p in ("none", "dppl")
    }
    assert rows["dppl"]["coherency_error"] < 1e-4 < rows["none"]["coherency_error"]
    assert rows["dppl"]["sample_coherency_error"] < 1e-4
    assert all(np.isfinite(v) for row in rows.values() for v in row.values())
