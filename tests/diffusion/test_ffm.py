"""Functional flow matching: priors, velocity FNO, loss, training and unconstrained samplers.

Keys are "rbg": threefry's bit generator is slow to compile on XLA:CPU, and every sampler here
draws its own noise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml import constraints as C
from sciml.diffusion import (
    FlowMatching,
    GaussianProcess,
    SpectralGRF,
    UniformNoise,
    VelocityFNO,
    WhiteNoise,
    ffm_euler,
    ffm_loss,
    ffm_ode,
    ffm_train_step,
    flow_euler,
    flow_matching_loss,
    observed_condition,
    selection_observation,
)
from sciml.train import TrainState
from tests.diffusion import gaussian_model


def key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


# --- priors -------------------------------------------------------------------------------------

N = 4000  # draws for moment checks: the relative standard error of a variance is sqrt(2 / N) = 2.2%


@pytest.mark.parametrize(
    ("prior", "mean", "var"),
    [
        (WhiteNoise(std=2.0), 0.0, 4.0),
        (UniformNoise(low=-1.0, high=3.0), 1.0, 16 / 12),
        (GaussianProcess(kernel="matern12", length_scale=0.3, variance=2.0), 0.0, 2.0),
        (SpectralGRF(alpha=2.0, tau=3.0, sigma=10.0), 0.0, None),
    ],
    ids=["white", "uniform", "gp", "grf"],
)
def test_prior_shapes_and_pointwise_moments(prior, mean, var):
    shape = (N, 5, 4, 2)
    x = np.asarray(prior.sample(key(0), shape), np.float64)
    assert x.shape == shape
    var = prior.pointwise_variance((5, 4)) if var is None else var
    # Pooled over the 40 points and channels (correlated): 5 standard errors of one point.
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / N)
    np.testing.assert_allclose(x.var(axis=0).mean(), var, rtol=5 * np.sqrt(2 / N))
    np.testing.assert_array_equal(prior.sample(key(0), shape), x.astype(np.float32))


@pytest.mark.parametrize("kernel", ["matern12", "rbf"])
def test_gaussian_process_covariance(kernel):
    prior = GaussianProcess(kernel=kernel, length_scale=0.5, variance=1.5)
    x = np.asarray(prior.sample(key(1), (20000, 3, 2, 1)), np.float64).reshape(20000, 6)
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 2), indexing="ij"), -1)
    r = np.linalg.norm(grid.reshape(6, 1, 2) - grid.reshape(1, 6, 2), axis=-1)
    expected = 1.5 * (np.exp(-r / 0.5) if kernel == "matern12" else np.exp(-0.5 * (r / 0.5) ** 2))
    # Sample covariance entries have standard error <= 1.5 sqrt(2 / 20000) = 0.015.
    np.testing.assert_allclose(np.cov(x.T), expected, atol=0.06)
    with pytest.raises(ValueError, match="SpectralGRF"):
        prior.sample(key(0), (1, 100, 100, 1))


def test_spectral_grf_is_resolution_independent():
    prior = SpectralGRF(alpha=2.5, tau=4.0, sigma=30.0)
    # Refining adds only the summable tail of the spectrum to the pointwise variance ...
    coarse, fine = prior.pointwise_variance((16, 16)), prior.pointwise_variance((64, 64))
    assert abs(fine / coarse - 1) < 0.01
    # ... and a fine field restricted to the coarse grid has the coarse grid's covariance: check
    # the variance of the difference of neighbouring coarse points (spacing 1/16) on both grids.
    a = np.asarray(prior.sample(key(2), (1000, 16, 16, 1)), np.float64)
    b = np.asarray(prior.sample(key(3), (1000, 64, 64, 1)), np.float64)[:, ::4, ::4]
    da, db = np.var(a[:, 1:] - a[:, :-1]), np.var(b[:, 1:] - b[:, :-1])
    assert abs(da / db - 1) < 0.05  # 1000 fields x 240 correlated pairs: ~1-2% of noise


# --- model, loss, training ----------------------------------------------------------------------

MODEL = VelocityFNO(out_channels=1, modes=3, width=8, n_layers=2, projection_width=8, padding=2)


def test_velocity_fno_shapes_conditioning_and_time_dependence():
    x = jax.random.normal(key(0), (2, 10, 6, 1))
    cond = jnp.ones((2, 10, 6, 3))
    params = jax.jit(MODEL.init)(key(1), x, jnp.zeros(2), cond)
    apply = jax.jit(MODEL.apply)
    out = apply(params, x, jnp.array([0.1, 0.9]), cond)
    assert out.shape == (2, 10, 6, 1)
    # Any grid: the layers are resolution independent.
    finer = apply(params, jnp.zeros((1, 14, 8, 1)), jnp.ones(1), jnp.ones((1, 14, 8, 3)))
    assert finer.shape == (1, 14, 8, 1)
    # Time enters through the input channel even while the FiLM layer is still zero.
    other = apply(params, x, jnp.array([0.5, 0.5]), cond)
    assert not np.allclose(out, other)


def test_ffm_loss_with_white_noise_is_flow_matching_loss():
    def apply_fn(params, x, t, cond):
        return params * x + jnp.sin(x) * t[:, None, None]

    x = jax.random.normal(key(0), (8, 5, 1))
    ours = jax.jit(ffm_loss, static_argnums=(0, 5))(apply_fn, 0.7, x, None, key(4), WhiteNoise())
    theirs = jax.jit(flow_matching_loss, static_argnums=(0, 5))(
        apply_fn, 0.7, x, None, key(4), FlowMatching()
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_train_step_compiles_once_and_learns_a_grf_prior_flow():
    # An affine velocity v = p0 x + p1 t + p2 suffices to see the loss wired into the train step.
    data = 1.0 + jnp.sin(2 * np.pi * jnp.linspace(0, 1, 12))[None, :, None] * jnp.ones((16, 1, 1))
    traces = []

    def apply_fn(p, x, t, cond):
        traces.append(1)
        return p[0] * x + p[1] * t[:, None, None] + p[2]

    opt = optax.adam(3e-2)
    step = ffm_train_step(apply_fn, SpectralGRF(sigma=5.0), opt)
    state = TrainState.create(jnp.zeros(3), opt, jax.random.key(1))  # the step folds threefry keys
    losses = []
    for _ in range(60):
        state, metrics = step(state, data)
        losses.append(float(metrics["loss"]))
    assert len(traces) == 1
    # The target noise - data has an irreducible part (the noise); the data part is learnt.
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


# --- unconstrained samplers ---------------------------------------------------------------------


def test_samplers_follow_the_exact_flow_and_are_deterministic():
    # The exact flow of N(m, s^2) data from N(0, 1) noise on the rectified path is affine,
    # x_t = (1 - t) m + sqrt((1 - t)^2 s^2 + t^2) z: the sample of noise z is m + s z.
    schedule = FlowMatching()
    apply_fn = gaussian_model(schedule, "flow")
    params = {"m": jnp.float32(1.0), "s": jnp.float32(0.5)}
    shape = (64, 3, 1)
    exact = 1.0 + 0.5 * WhiteNoise().sample(key(5), shape)

    ours, steps = ffm_ode(apply_fn, params, None, key=key(5), shape=shape, prior=WhiteNoise())
    np.testing.assert_allclose(ours, exact, atol=1e-4)  # the controller's tolerance 1e-5, x10
    assert 0 < int(steps) < 64

    # Euler is the package's flow_euler (same noise draw, same grid) to float32 round-off.
    ours = ffm_euler(apply_fn, params, None, key=key(5), shape=shape, prior=WhiteNoise(), n_steps=8)
    core = flow_euler(apply_fn, params, None, key=key(5), shape=shape, schedule=schedule, n_steps=8)
    np.testing.assert_allclose(ours, core, rtol=1e-5, atol=1e-5)
    again = ffm_euler(
        apply_fn, params, None, key=key(5), shape=shape, prior=WhiteNoise(), n_steps=8
    )
    np.testing.assert_array_equal(ours, again)


def test_core_flow_samplers_start_from_the_given_prior():
    # With zero velocity the sample is the initial noise: sigma(1) prior.sample(key) = the draw.
    prior = UniformNoise(low=2.0, high=3.0)
    zero = lambda params, x, t, cond: jnp.zeros_like(x)  # noqa: E731
    x = flow_euler(
        zero,
        None,
        None,
        key=key(6),
        shape=(2, 3, 1),
        schedule=FlowMatching(),
        n_steps=2,
        prior=prior,
    )
    np.testing.assert_array_equal(x, prior.sample(key(6), (2, 3, 1)))


# --- conditional FFM ----------------------------------------------------------------------------


def test_conditional_inputs_from_a_value_constraint():
    grid = (4, 5)
    u = np.arange(20.0).reshape(grid)
    ic = C.initial_value_constraint(grid, u[0])
    bc = C.slice_constraint(grid, np.s_[1:, 0], u[1:, 0])  # stacked with the IC: no overlap
    values, mask = selection_observation(C.stack_constraints(ic, bc), grid)
    expected = np.zeros(grid, bool)
    expected[0], expected[:, 0] = True, True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(values, np.where(expected, u, 0.0))
    # Training conditions the data on its own entries; sampling on the constraint's values.
    batch = jnp.stack([jnp.asarray(u), -jnp.asarray(u)])[..., None]
    cond = observed_condition(batch, mask[None, ..., None])
    assert cond.shape == (2, 4, 5, 2)
    np.testing.assert_array_equal(cond[0], np.stack([values, expected], -1))
    np.testing.assert_array_equal(cond[1, ..., 0], -values)
    per_sample = observed_condition(batch, jnp.stack([mask, ~mask])[..., None])
    np.testing.assert_array_equal(per_sample[1, ..., 1], ~expected)
    for bad in (
        C.periodic_constraint(grid, axis=-1),
        C.conservation_constraint(np.ones(5), u[:, 0]),
    ):
        with pytest.raises(ValueError, match="fix entries"):
            selection_observation(bad, grid)
    with pytest.raises(ValueError, match="unknowns"):
        selection_observation(ic, (5, 5))


def test_conditional_checkpoint_metadata_rebuilds_the_model():
    from sciml.diffusion import ffm_checkpoint_metadata
    from sciml.pretrained import example_inputs

    meta = ffm_checkpoint_metadata(MODEL, WhiteNoise(), {}, (6, 4), cond_channels=2)
    x, t, cond = example_inputs(meta)
    assert x.shape == (1, 6, 4, 1) and t.shape == (1,) and cond.shape == (1, 6, 4, 2)
    params = jax.eval_shape(MODEL.init, key(0), x, t, cond)
    out = jax.eval_shape(MODEL.apply, params, x, t, cond)
    assert out.shape == x.shape
