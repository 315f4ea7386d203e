"""Periodic ETDRK solvers against exact solutions, measured orders, and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.pde import (
    Advection,
    AdvectionDiffusion,
    AllenCahn,
    Burgers,
    CahnHilliard,
    Diffusion,
    Dispersion,
    FisherKPP,
    GrayScott,
    KdV,
    KuramotoSivashinsky,
    NavierStokes2D,
    SwiftHohenberg,
)

LINEAR_CASES = [
    # (problem, wavevector, exact multiplier of exp(i k.x) after time t: exp(t * lambda))
    (Advection(shape=(32,), velocity=(0.7,), dt=0.05), (3,), lambda k: -1j * 0.7 * k[0]),
    (
        Advection(shape=(16, 24), velocity=(0.3, -1.1), dt=0.05),
        (2, 5),
        lambda k: -1j * (0.3 * k[0] - 1.1 * k[1]),
    ),
    (Diffusion(shape=(32,), viscosity=0.2, dt=0.05), (4,), lambda k: -0.2 * k[0] ** 2),
    (
        Diffusion(shape=(8, 8, 8), viscosity=0.1, dt=0.05),
        (1, 2, 3),
        lambda k: -0.1 * sum(x**2 for x in k),
    ),
    (
        AdvectionDiffusion(shape=(32,), velocity=(1.3,), viscosity=0.05, dt=0.05),
        (5,),
        lambda k: -1.3j * k[0] - 0.05 * k[0] ** 2,
    ),
    (Dispersion(shape=(32,), coefficient=0.01, dt=0.05), (6,), lambda k: 0.01 * (1j * k[0]) ** 3),
]


@pytest.mark.parametrize(("problem", "k", "rate"), LINEAR_CASES)
@pytest.mark.parametrize("order", [1, 4])
def test_linear_modes_are_exact(problem, k, rate, order, x64):
    # N = 0: ETDRK of any order multiplies each mode by exp(dt L) exactly; only FFT round-off
    # (~1e-15 per transform, 20 steps) remains, so 1e-12 is a safe bar.
    import dataclasses

    problem = dataclasses.replace(problem, order=order)
    xs = np.meshgrid(*[np.arange(n) * 2 * np.pi / n for n in problem.shape], indexing="ij")
    phase = sum(kd * x for kd, x in zip(k, xs))
    u0 = np.cos(phase)[..., None]
    t = 20 * problem.dt
    lam = rate(k)
    exact = np.real(np.exp(lam * t) * np.exp(1j * phase))[..., None]
    u = problem.rollout(jnp.asarray(u0), 20, 20)[-1]
    assert np.abs(np.asarray(u) - exact).max() < 1e-12


def _cole_hopf(x, t, nu, a=2.0, b=1.0):
    """Exact Burgers solution u = 2 nu b e^(-nu t) sin x / (a + b e^(-nu t) cos x) on [0, 2 pi)."""
    decay = b * np.exp(-nu * t)
    return 2 * nu * decay * np.sin(x) / (a + decay * np.cos(x))


def _burgers_error(dt, order, nu=0.5, n=128, t=1.0):
    problem = Burgers(shape=(n,), viscosity=nu, dt=dt, order=order)
    x = np.arange(n) * 2 * np.pi / n
    steps = round(t / dt)
    u = problem.rollout(jnp.asarray(_cole_hopf(x, 0.0, nu))[:, None], steps, steps)[-1, :, 0]
    return np.abs(np.asarray(u) - _cole_hopf(x, t, nu)).max()


def test_burgers_matches_cole_hopf_to_1e_10(x64):
    # Modes of the exact solution decay like 0.27^k, so N = 128 is exact to round-off in space;
    # ETDRK4 at dt = 0.005 sits near 1e-12, inside the 1e-10 bar.
    assert _burgers_error(0.005, order=4) < 1e-10


def _kdv_error(dt, order, c=5.0, length=40.0, n=256, t=1.0):
    x = np.arange(n) * length / n

    def soliton(time):
        return c / 2 / np.cosh(np.sqrt(c) / 2 * (x - c * time - 10.0)) ** 2

    problem = KdV(shape=(n,), length=length, dt=dt, order=order)
    steps = round(t / dt)
    u = problem.rollout(jnp.asarray(soliton(0.0))[:, None], steps, steps)[-1, :, 0]
    return np.abs(np.asarray(u) - soliton(t)).max()


def test_kdv_soliton_below_1e_6(x64):
    # The bar; a real-part-only ETDRK4 (the known pitfall) gives ~6e-2 here.
    assert _kdv_error(1e-3, order=4) < 1e-6


# Step sizes per order inside the asymptotic range (errors well above round-off and the spatial
# floor, well below O(1)). KdV has an odd-derivative L: the case where real-part coefficients lose
# order; it runs at n = 512 so that the spatial floor (~1e-10) stays below the finest errors.
CONVERGENCE_CASES = {
    ("burgers", order): (_burgers_error, (0.04, 0.02, 0.01)) for order in (1, 2, 3, 4)
} | {
    ("kdv", 1): (_kdv_error, (1e-3, 5e-4, 2.5e-4)),
    ("kdv", 2): (_kdv_error, (4e-3, 2e-3, 1e-3)),
    ("kdv", 3): (_kdv_error, (4e-3, 2e-3, 1e-3)),
    ("kdv", 4): (_kdv_error, (2e-3, 1e-3, 5e-4)),
}


@pytest.mark.parametrize(("case", "order"), list(CONVERGENCE_CASES), ids=lambda v: str(v))
def test_measured_convergence_order(case, order, x64):
    error_fn, dts = CONVERGENCE_CASES[case, order]
    dts = np.array(dts)
    kwargs = {"n": 512} if error_fn is _kdv_error else {}
    errors = np.array([error_fn(dt, order, **kwargs) for dt in dts])
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.15, (errors, slope)


def test_taylor_green_vorticity_decays_exactly(x64):
    # w = 2 sin x sin y e^(-2 nu t) is an exact solution whose advection term vanishes.
    nu, n = 0.1, 32
    xx, yy = np.meshgrid(*[np.arange(n) * 2 * np.pi / n] * 2, indexing="ij")
    w0 = 2 * np.sin(xx) * np.sin(yy)
    problem = NavierStokes2D(shape=(n, n), viscosity=nu, dt=0.01)
    w = problem.rollout(jnp.asarray(w0)[..., None], 100, 100)[-1, ..., 0]
    assert np.abs(np.asarray(w) - w0 * np.exp(-2 * nu)).max() < 1e-12


@pytest.mark.parametrize("forcing", ["kolmogorov", "fno"])
def test_forced_navier_stokes_reaches_the_forced_steady_state_of_a_single_mode(forcing, x64):
    # Starting from rest, a single-mode forcing f (with Lap f = -|k|^2 f and zero advection of a
    # single mode) gives w(t) = f (1 - e^(-(nu |k|^2 + mu) t)) / (nu |k|^2 + mu) exactly.
    n, nu, mu = 32, 0.05, 0.1
    problem = NavierStokes2D(
        shape=(n, n), viscosity=nu, drag=mu, forcing=forcing, forcing_wavenumber=2, dt=0.02
    )
    f = problem.forcing_field(problem.grid)[0]
    k2 = 4.0 if forcing == "kolmogorov" else 2.0
    rate = nu * k2 + mu
    w = problem.rollout(jnp.zeros((n, n, 1)), 50, 50)[-1, ..., 0]
    assert np.abs(np.asarray(w) - f * (1 - np.exp(-rate * 1.0)) / rate).max() < 1e-12


def _random_state(shape, channels=1, scale=0.1, seed=0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=(*shape, channels)))


@pytest.mark.parametrize(
    "problem",
    [
        Burgers(shape=(32, 32), viscosity=0.05, dt=0.01),
        KuramotoSivashinsky(shape=(64,), length=32 * np.pi, dt=0.05),
        CahnHilliard(shape=(32, 32), gamma=0.05, dt=1e-3),
    ],
    ids=lambda p: type(p).__name__,
)
def test_conservative_equations_keep_the_mean(problem, x64):
    # Each right-hand side is a divergence (or a pure derivative for KS's linear part, and the
    # KS nonlinearity feeds only the mean, which we check is not the case below): the k = 0 mode of
    # Burgers and Cahn-Hilliard is untouched, so the mean is conserved to round-off.
    u = problem.rollout(_random_state(problem.shape), 100, 100)
    if isinstance(problem, KuramotoSivashinsky):
        assert not np.allclose(u[-1].mean(), u[0].mean())  # |grad u|^2 / 2 drives the mean
    else:
        assert abs(float(u[-1].mean() - u[0].mean())) < 1e-13


@pytest.mark.parametrize(
    ("problem", "steps"),
    [
        (AllenCahn(shape=(64,), epsilon=0.1, dt=0.01), 200),
        (FisherKPP(shape=(32, 32), viscosity=0.01, dt=0.05), 200),
        (SwiftHohenberg(shape=(32, 32), length=10 * np.pi, dt=0.1), 200),
        (KuramotoSivashinsky(shape=(32, 32), length=12 * np.pi, dt=0.05), 200),
    ],
    ids=lambda p: type(p).__name__ if not isinstance(p, int) else str(p),
)
def test_reaction_diffusion_bounds(problem, steps):
    # Allen-Cahn has a maximum principle ([-1, 1] for data inside), Fisher-KPP data in [0, 1]
    # converges to the stable state 1 (here t = 10, r = 1: the logistic gap shrinks like e^-10);
    # Swift-Hohenberg and KS saturate at O(1): all must stay finite and bounded in float32.
    u0 = jnp.abs(_random_state(problem.shape, scale=0.3)).astype(jnp.float32)
    u = problem.rollout(u0, steps, steps)[-1]
    assert np.isfinite(np.asarray(u)).all()
    if isinstance(problem, AllenCahn):
        assert float(jnp.abs(u).max()) <= 1.0 + 1e-5
    if isinstance(problem, FisherKPP):
        assert float(jnp.abs(u - 1).max()) < 1e-2
    assert float(jnp.abs(u).max()) < 10


def test_gray_scott_homogeneous_state_matches_the_ode(x64):
    # A spatially uniform state follows the reaction ODE exactly; compare with a fine RK4 solve.
    problem = GrayScott(shape=(8, 8), length=1.0, dt=0.5)
    u0 = jnp.concatenate([jnp.full((8, 8, 1), 0.6), jnp.full((8, 8, 1), 0.3)], -1)
    final = np.asarray(problem.rollout(u0, 40, 40)[-1, 0, 0])

    def rhs(s):
        u, v = s
        return np.array(
            [-u * v * v + problem.feed * (1 - u), u * v * v - (problem.feed + problem.kill) * v]
        )

    s, h = np.array([0.6, 0.3]), 0.001
    for _ in range(20000):
        k1 = rhs(s)
        k2 = rhs(s + h / 2 * k1)
        k3 = rhs(s + h / 2 * k2)
        k4 = rhs(s + h * k3)
        s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    # ETDRK4 at dt = 0.5 on a smooth ODE with rates ~0.1: local error ~ (0.05)^5, global ~1e-7.
    assert np.abs(final - s).max() < 1e-6


def test_batching_by_vmap_equals_a_loop():
    problem = KuramotoSivashinsky(shape=(64,), length=32 * np.pi, dt=0.1)
    u0 = jnp.stack([_random_state((64,), seed=s) for s in range(3)]).astype(jnp.float32)
    batched = jax.vmap(lambda u: problem.rollout(u, 20, 10))(u0)
    looped = jnp.stack([problem.rollout(u, 20, 10) for u in u0])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), rtol=1e-5, atol=1e-6)
    assert batched.shape == (3, 3, 64, 1) and batched.dtype == jnp.float32


def test_navier_stokes_velocity_follows_the_vorticity_convention(x64):
    # w = d_x v - d_y u with u = d_y psi, v = -d_x psi and Lap psi = -w (jax-cfd's convention):
    # w = cos(y) has psi = cos(y), so u = -sin(y) and v = 0.
    n = 16
    y = np.arange(n) * 2 * np.pi / n
    w = np.broadcast_to(np.cos(y)[None, :], (n, n))[..., None]
    vel = np.asarray(NavierStokes2D(shape=(n, n)).velocity(jnp.asarray(w)))
    np.testing.assert_allclose(
        vel[..., 0], np.broadcast_to(-np.sin(y)[None, :], (n, n)), atol=1e-13
    )
    np.testing.assert_allclose(vel[..., 1], 0.0, atol=1e-13)
