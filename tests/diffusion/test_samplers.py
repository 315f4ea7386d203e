"""Samplers driven by the exact denoiser of ``x0 ~ N(M, S^2)`` must reproduce M and S.

Tolerances: the sample mean and standard deviation of N independent draws have standard errors
``S / sqrt(N)`` and ``S / sqrt(2 N)`` (0.0079 and 0.0056 here); we allow 4 of them, plus each
case's discretisation bias, bounded from runs with 200k draws in float64 (listed per case).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.diffusion import (
    EDM,
    CosineVP,
    FlowMatching,
    StochasticInterpolant,
    ddim,
    edm_heun,
    ensemble,
    flow_euler,
    flow_ode,
)
from sciml.diffusion.evaluation import calibrate_spread
from tests.diffusion import gaussian_model

M, S, N = 1.0, 0.5, 4000
PARAMS = {"m": jnp.float32(M), "s": jnp.float32(S)}
INTERPOLANT = StochasticInterpolant(scale=1.0, sigma_min=0.1)

# (id, sampler, schedule, kind, options, expected std, allowed bias of mean and std). The
# comments give the bias of the std measured with 200k draws (+-0.001 of Monte-Carlo error).
TSIT5 = {"solver": "tsit5", "return_steps": True}
CASES = [
    # DDIM is first order: -0.023 at 32 steps, -0.0035 at 256.
    ("ddim-v", ddim, CosineVP(), "v", {"n_steps": 256}, S, 0.005),
    ("ddim-eps-eta1", ddim, CosineVP(), "eps", {"n_steps": 512, "eta": 1.0}, S, 0.006),  # -0.004
    # Heun is second order: +0.2 at 8 levels, +0.008 at 32, +0.0006 at 128. The mean is biased
    # by -M S / sqrt(S^2 + 80^2) = -0.006 by the N(0, 80^2) prior (the data mean is ignored).
    ("heun-edm", edm_heun, EDM(), "edm", {"n_steps": 32}, S, 0.01),
    ("heun-vp-x0", edm_heun, CosineVP(), "x0", {"n_steps": 128}, S, 0.005),  # +0.004
    ("euler-fm", flow_euler, FlowMatching(), "flow", {"n_steps": 400}, S, 0.004),  # -0.002
    ("tsit5-fm", flow_ode, FlowMatching(), "flow", TSIT5, S, 2e-3),  # +0.0005
    # 16 fixed Heun steps: +0.002.
    ("heun-fixed-vp", flow_ode, CosineVP(), "v", {"solver": "heun", "adaptive": False}, S, 4e-3),
    # The interpolant's t = 0 marginal is the data blurred by N(0, sigma_min^2): +0.0008.
    ("dopri5-interp", flow_ode, INTERPOLANT, "x0", {"solver": "dopri5"}, np.hypot(S, 0.1), 2e-3),
]


@pytest.mark.parametrize(
    ("sampler", "schedule", "kind", "options", "std", "bias"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_sampler_reproduces_gaussian_data_deterministically_and_compiles_once(
    sampler, schedule, kind, options, std, bias
):
    traces = []
    model = gaussian_model(schedule, kind, traces=traces)

    def run(key, params=PARAMS):
        out = sampler(
            model, params, None, key=key, shape=(N, 1), schedule=schedule, kind=kind, **options
        )
        if options.get("return_steps"):
            out, steps = out
            assert 0 < int(steps) < 64  # adaptive steps on a smooth (here affine) flow
        return out

    x = run(jax.random.key(0))
    assert x.shape == (N, 1) and x.dtype == jnp.float32
    n_traces = len(traces)
    # The same key gives the same sample (also for eta > 0: the step noise comes from the key);
    # new keys and parameter values reuse the compiled program.
    np.testing.assert_array_equal(run(jax.random.key(0)), x)
    other = run(jax.random.key(1), {"m": jnp.float32(-1.0), "s": jnp.float32(2.0)})
    assert len(traces) == n_traces and not np.allclose(other, x)

    x = np.asarray(x, np.float64)
    assert abs(x.mean() - M) < 4 * S / np.sqrt(N) + bias
    assert abs(x.std() - std) < 4 * S / np.sqrt(2 * N) + bias


def test_ensemble_stacks_independent_members():
    schedule = FlowMatching()
    model = gaussian_model(schedule, "flow")
    kwargs = {"shape": (2, 4, 1), "schedule": schedule, "n_steps": 2}
    key = jax.random.key(5)
    members = ensemble(flow_euler, key, 3, model, PARAMS, None, **kwargs)
    assert members.shape == (3, 2, 4, 1)
    assert not np.allclose(members[0], members[1])
    # Member i is the sampler at the i-th split key, whether vmapped or drawn in chunks.
    single = flow_euler(model, PARAMS, None, key=jax.random.split(key, 3)[1], **kwargs)
    np.testing.assert_allclose(members[1], single, rtol=1e-6, atol=1e-6)
    chunked = ensemble(flow_euler, key, 3, model, PARAMS, None, batch_size=2, **kwargs)
    np.testing.assert_allclose(chunked, members, rtol=1e-6, atol=1e-6)


def test_heun_uses_two_n_minus_one_network_calls():
    calls = []
    schedule = EDM()
    base = gaussian_model(schedule, "edm")

    def counted(params, x, t, cond):
        jax.debug.callback(lambda: calls.append(1))
        return base(params, x, t, cond)

    edm_heun(
        counted, PARAMS, None, key=jax.random.key(0), shape=(2, 1), schedule=schedule, n_steps=6
    )
    jax.effects_barrier()
    assert len(calls) == 2 * 6 - 1


def _ddim_gaussian_moments(schedule, n_steps, eta, t_min, denoise_last, t_max=1.0):
    """Exact mean and std of `ddim` driven by the exact denoiser of ``N(M, S^2)``.

    Every step is affine in x plus independent noise, ``x' = A x + B + c z`` (x0_hat and eps_hat
    are affine in x), so the mean and variance follow ``mu' = A mu + B``, ``v' = A^2 v + c^2``
    from the prior ``N(0, sigma(t_max)^2)``, in float64.
    """
    ts = np.linspace(t_max, t_min, n_steps + 1)
    alphas = np.asarray(schedule.alpha(ts), np.float64)
    sigmas = np.asarray(schedule.sigma(ts), np.float64)
    mu, var = 0.0, sigmas[0] ** 2
    for i in range(n_steps):
        a_t, s_t = alphas[i], sigmas[i]
        g = a_t * S**2 / (a_t**2 * S**2 + s_t**2)  # x0_hat = M + g (x - a_t M)
        x0_a, x0_b = g, M - g * a_t * M
        eps_a, eps_b = (1 - a_t * x0_a) / s_t, -a_t * x0_b / s_t
        if denoise_last and i == n_steps - 1:
            a_s, s_s = 1.0, 0.0
        else:
            a_s, s_s = alphas[i + 1], sigmas[i + 1]
        c = eta * s_s / s_t * np.sqrt(max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0))
        d = np.sqrt(max(s_s**2 - c**2, 0.0))
        coef, shift = a_s * x0_a + d * eps_a, a_s * x0_b + d * eps_b
        mu, var = coef * mu + shift, coef**2 * var + c**2
    if not denoise_last:
        mu, var = mu / alphas[-1], var / alphas[-1] ** 2
    return mu, np.sqrt(var)


def test_two_step_ddim_shrinks_towards_the_mean_and_a_noisy_end_restores_the_spread():
    """FLEX's 2-call DDIM with the exact denoiser: the first call at t = 1 sees no data
    (alpha(1) ~ 5e-5), so the output is the posterior mean at t = 1/2, std 0.2 for S = 0.5,
    with or without eta; ending on the noisy x_{t_min} / alpha(t_min) instead adds spread.
    Draws against the exact moments (`_ddim_gaussian_moments`; 4 standard errors, no bias)."""
    schedule = CosineVP()
    model = gaussian_model(schedule, "v")
    # Many ancestral steps ending noisy: data plus N(0, (sigma / alpha)^2) (a check of the
    # moments' semantics; the exact recursion, no sampling).
    a, s = float(schedule.alpha(0.3)), float(schedule.sigma(0.3))
    mu, std = _ddim_gaussian_moments(schedule, 1024, 1.0, 0.3, False)
    assert abs(mu - M) < 1e-3 and abs(std - np.hypot(S, s / a)) < 2e-3
    assert _ddim_gaussian_moments(schedule, 2, 0.0, 0.0, True)[1] < 0.41 * S
    for eta, t_min, denoise_last in [(0.0, 0.0, True), (1.0, 0.15, False)]:
        options = {"eta": eta, "t_min": t_min, "denoise_last": denoise_last}
        x = ddim(
            model,
            PARAMS,
            None,
            key=jax.random.key(3),
            shape=(N, 1),
            schedule=schedule,
            n_steps=2,
            kind="v",
            **options,
        )
        mu, std = _ddim_gaussian_moments(schedule, 2, eta, t_min, denoise_last)
        x = np.asarray(x, np.float64)
        assert abs(x.mean() - mu) < 4 * std / np.sqrt(N), (options, x.mean(), mu)
        assert abs(x.std() - std) < 4 * std / np.sqrt(2 * N), (options, x.std(), std)


def test_calibrating_the_noisy_end_restores_the_data_spread():
    """`calibrate_spread` over t_min for 2-call DDIM ending noisy (eta = 1), exact denoiser of
    N(M, S^2), targets drawn from it: spread/skill is 1 where the draws' std equals S, so the
    chosen t_min is the candidate whose exact std (`_ddim_gaussian_moments`) is closest to S
    (std / S = 0.51, 0.78, 1.12, 1.54 at t_min = 0.1, 0.2, 0.3, 0.4: 0.3 wins by a margin far
    above the sampling noise of 4000 targets)."""
    schedule = CosineVP()
    model = gaussian_model(schedule, "v")
    target = M + S * jax.random.normal(jax.random.key(0), (N, 1))

    def sample(t_min):
        options = {"eta": 1.0, "t_min": t_min, "denoise_last": False}
        draw = functools.partial(
            ddim, model, PARAMS, None, shape=(N, 1), schedule=schedule, n_steps=2, **options
        )
        return jax.vmap(lambda k: draw(key=k))(jax.random.split(jax.random.key(1), 8))

    levels, m = (0.1, 0.2, 0.3, 0.4), 8
    best, ratios = calibrate_spread(sample, target, levels)
    for t in levels:
        # spread std_t; the ensemble mean misses a target by S^2 + bias^2 + std_t^2 / m
        mu, std = _ddim_gaussian_moments(schedule, 2, 1.0, t, False)
        skill = np.sqrt(S**2 + (mu - M) ** 2 + std**2 / m)
        expected = np.sqrt((m + 1) / m) * std / skill
        assert abs(ratios[t] / expected - 1) < 0.05, (t, ratios[t], expected)
    assert best == 0.3
