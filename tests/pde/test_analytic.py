import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from sciml.pde.analytic import (
    HeatModeDataset,
    PorousMediumWaveDataset,
    StefanDataset,
    StokesDataset,
    heat_mode,
    porous_medium_mass,
    porous_medium_wave,
    stefan_front_coefficient,
    stefan_mass,
    stefan_solution,
    stokes_second_problem,
    stokes_viscosity,
)


def _d(f, argnum, order=1):
    for _ in range(order):
        f = jax.grad(f, argnum)
    return f


def _stokes_residual(t, y, k=7.0, w=5.0):
    u = lambda t, y: stokes_second_problem(t, y, k, w)  # noqa: E731
    return _d(u, 0)(t, y) - stokes_viscosity(k, w) * _d(u, 1, 2)(t, y), _d(u, 0)(t, y)


def _heat_residual(t, x, nu=3.0, phi=1.0):
    u = lambda t, x: heat_mode(t, x, nu, phi)  # noqa: E731
    return _d(u, 0)(t, x) - nu * _d(u, 1, 2)(t, x), _d(u, 0)(t, x)


def _pme_residual(t, x, m=2.5):
    u = lambda t, x: porous_medium_wave(t, x, m)  # noqa: E731
    flux = lambda t, x: u(t, x) ** m * _d(u, 1)(t, x)  # noqa: E731
    return _d(u, 0)(t, x) - _d(flux, 1)(t, x), _d(u, 0)(t, x)


def _stefan_residual(t, x, p_star=0.6):
    u = lambda t, x: stefan_solution(t, x, p_star)  # noqa: E731
    return _d(u, 0)(t, x) - _d(u, 1, 2)(t, x), _d(u, 0)(t, x)


def _points(key, n, t_range, x_range, keep):
    t, x = jax.random.uniform(key, (2, n), jnp.float64)
    t = t_range[0] + (t_range[1] - t_range[0]) * t
    x = x_range[0] + (x_range[1] - x_range[0]) * x
    mask = np.asarray(keep(t, x))
    return t[mask], x[mask]


_LAM = (
    0.5  # below stefan_front_coefficient(0.6) = 0.526, so x < 2 * 0.5 sqrt(t) is behind the front
)


@pytest.mark.parametrize(
    "residual, t_range, x_range, keep",
    [
        (_stokes_residual, (0, 1), (0, 1), lambda t, x: t >= 0),
        (_heat_residual, (0, 1), (0, 2 * np.pi), lambda t, x: t >= 0),
        # away from the front x = t, where u ~ (t - x)^(1/m) is not differentiable
        (_pme_residual, (0, 1), (0, 1), lambda t, x: t - x > 0.05),
        # behind the front, and after t = 0.01 (the similarity solution is singular at t = 0)
        (_stefan_residual, (0.01, 0.1), (0, 1), lambda t, x: x < 2 * _LAM * jnp.sqrt(t)),
    ],
    ids=["stokes", "heat", "porous_medium", "stefan"],
)
def test_analytic_families_satisfy_their_pde(x64, residual, t_range, x_range, keep):
    # jax.grad differentiates the closed forms exactly up to float64 round-off; the terms reach
    # O(k^2) ~ 1e2 (Stokes) or (m s)^(1/m - 1) ~ 1e1 (PME near the front), so the residual is
    # ~1e-14 of the largest term and 1e-10 relative leaves a wide margin.
    t, x = _points(jax.random.key(0), 400, t_range, x_range, keep)
    assert t.shape[0] > 50
    res, u_t = jax.vmap(residual)(t, x)
    assert jnp.abs(res).max() < 1e-10 * jnp.abs(u_t).max(), float(jnp.abs(res).max())


def test_stefan_front_conditions(x64):
    # At the front s = 2 lambda sqrt(t): u(s-) = p*, the Stefan condition p* s' = -u_x(s-), u = 0
    # ahead and u >= p* behind (so k = 1 there); all exact, so round-off tolerances.
    p_star = 0.62
    lam = stefan_front_coefficient(p_star)
    t = jnp.linspace(0.01, 0.1, 7)
    s = 2 * lam * jnp.sqrt(t)
    u_front = jax.vmap(lambda t, s: stefan_solution(t, s, p_star))(t, s)
    u_x = jax.vmap(jax.grad(lambda t, x: stefan_solution(t, x, p_star), 1))(t, s)
    assert jnp.abs(u_front - p_star).max() < 1e-13
    assert jnp.abs(p_star * lam / jnp.sqrt(t) + u_x).max() < 1e-12 * jnp.abs(u_x).max()
    x = jnp.linspace(0, 1, 201)
    u = stefan_solution(t[:, None], x[None], p_star)
    behind = x[None] <= s[:, None]
    assert jnp.all(jnp.where(behind, u >= p_star - 1e-14, u == 0))
    assert (
        jnp.all(stefan_solution(t, 0.0, p_star) == 1.0) and stefan_solution(0.0, 0.0, p_star) == 1
    )


@pytest.mark.parametrize("p_star", [0.05, 0.55, 0.7, 0.95])
def test_stefan_front_coefficient_solves_its_equation(x64, p_star):
    lam = stefan_front_coefficient(p_star)
    lhs = jnp.sqrt(jnp.pi) * lam * jnp.exp(lam**2) * jax.scipy.special.erf(lam)
    assert abs(float(lhs) - (1 - p_star) / p_star) < 1e-13 * (1 - p_star) / p_star


def test_masses_match_quadrature(x64):
    # scipy's adaptive quadrature (told where the kink is) is accurate to ~1e-12 here.
    m, t = 2.5, 0.7
    exact = quad(lambda x: float(porous_medium_wave(t, x, m)), 0, 1, points=[t])[0]
    assert float(porous_medium_mass(t, m)) == pytest.approx(exact, rel=1e-9)
    p_star, t = 0.6, 0.08
    front = 2 * float(stefan_front_coefficient(p_star)) * np.sqrt(t)
    exact = quad(lambda x: float(stefan_solution(t, x, p_star)), 0, front)[0]
    assert float(stefan_mass(t, p_star)) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize(
    "generator, space",
    [
        (StokesDataset(n_t=20, n_x=30), "y"),
        (HeatModeDataset(n_t=20, n_x=30), "x"),
        (PorousMediumWaveDataset(n_t=20, n_x=30), "x"),
        (StefanDataset(n_t=20, n_x=30), "x"),
    ],
    ids=["stokes", "heat", "porous_medium", "stefan"],
)
def test_generators_are_reproducible_and_follow_their_formula(generator, space):
    a = generator.generate(jax.random.key(1), 4)
    b = generator.generate(jax.random.key(1), 4)
    c = generator.generate(jax.random.key(2), 4)
    assert a.fields["u"].shape == (4, 20, 30) and np.all(np.isfinite(a.fields["u"]))
    assert np.array_equal(a.fields["u"], b.fields["u"])
    assert not np.array_equal(a.fields["u"], c.fields["u"])
    assert list(a.coords) == [space] and a.time.shape == (20,)
    params = generator.parameters(jax.random.key(1), 4)
    for name, (low, high) in generator.ranges().items():
        assert np.all((params[name] >= low) & (params[name] <= high))
        assert a.scalars[f"{name}_low"] == low
    one = {name: v[2] for name, v in params.items()}
    expected = generator.solution(a.time[:, None], a.coords[space][None], **one)
    # float32 evaluation of the same formula: a few ulps of O(1) values.
    np.testing.assert_allclose(a.fields["u"][2], expected, atol=1e-5)


def test_degenerate_range_fixes_a_parameter_and_parameter_fields_are_stored():
    gen = StokesDataset(n_t=10, n_x=12, k_range=(5.0, 5.0), parameter_fields=True)
    traj = gen.generate(jax.random.key(3), 3)
    assert np.all(traj.fields["k"] == 5.0) and traj.fields["w"].shape == (3, 10, 12)
    assert np.allclose(traj.fields["w"][:, 0, 0], gen.parameters(jax.random.key(3), 3)["w"])
    # The oscillating wall: u(y = 0, t) = 2 cos(w t).
    w = traj.fields["w"][:, :, 0]
    np.testing.assert_allclose(traj.fields["u"][:, :, 0], 2 * np.cos(w * traj.time), atol=1e-5)
