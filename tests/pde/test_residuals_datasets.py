import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.fields import spectral_resample
from sciml.pde import Burgers, NavierStokes2D, SpectralDataset, initial_condition, residual
from sciml.pde.residuals import time_derivative


def _cole_hopf(x, t, nu, a=2.0, b=1.0):
    decay = b * np.exp(-nu * t)
    return 2 * nu * decay * np.sin(x) / (a + decay * np.cos(x))


def test_residual_of_the_exact_burgers_solution_is_at_discretisation_error(x64):
    nu, n = 0.5, 64
    x = np.arange(n) * 2 * np.pi / n
    problem = Burgers(shape=(n,), viscosity=nu)
    for dt, bound in ((1e-2, 1e-4), (5e-3, 2.5e-5)):
        t = np.arange(0, 0.5 + dt / 2, dt)
        u = jnp.asarray(np.stack([_cole_hopf(x, ti, nu) for ti in t])[..., None])
        r = np.abs(np.asarray(residual(u, jnp.asarray(t), problem))).max()
        # Central differences err by dt^2 |u_ttt| / 6 with |u_ttt| ~ nu^3 |u| ~ 0.03: ~5e-7 at
        # dt = 1e-2; the bound leaves a margin and halving dt must shrink it ~4x (second order).
        assert r < bound
    perturbed = u + 1e-2 * jnp.sin(3 * jnp.asarray(x))[None, :, None]
    assert np.abs(np.asarray(residual(perturbed, jnp.asarray(t), problem))).max() > 1e-2


def test_time_derivative_is_exact_for_quadratics_on_uneven_grids(x64):
    t = jnp.asarray([0.0, 0.1, 0.25, 0.3, 0.6])
    u = (3 * t**2 - t + 1)[:, None, None]
    np.testing.assert_allclose(time_derivative(u, t)[:, 0, 0], 6 * t[1:-1] - 1, rtol=1e-12)


def test_residual_is_a_differentiable_loss():
    problem = NavierStokes2D(shape=(16, 16), viscosity=1e-2)
    t = jnp.linspace(0, 0.2, 5)
    u = jax.random.normal(jax.random.key(0), (5, 16, 16, 1))
    grad = jax.grad(lambda v: jnp.mean(residual(v, t, problem) ** 2))(u)
    assert grad.shape == u.shape and bool(jnp.isfinite(grad).all())


def test_spectral_dataset_samples_parameters_per_trajectory():
    gen = SpectralDataset(
        equation={"type": "sciml.pde.Burgers", "shape": [64], "dt": 0.01, "viscosity": 0.1},
        t_final=0.2,
        n_snapshots=3,
        resolution=32,
        sample={"viscosity": [0.05, 0.2]},
        initial_condition={"kind": "fourier", "max_wavenumber": 3},
    )
    traj = gen.generate(jax.random.key(0), 4)
    u, nus = traj.fields["u"], traj.scalars["viscosity"]
    assert u.shape == (4, 3, 32) and nus.shape == (4,) and np.all((nus >= 0.05) & (nus <= 0.2))
    assert len(set(nus.tolist())) == 4
    # Each trajectory solved with its own viscosity equals a solve with that value alone.
    for i in (0, 3):
        single = Burgers(shape=(64,), dt=0.01, viscosity=float(nus[i]))
        ic_keys = jax.random.split(jax.random.split(jax.random.key(0))[0], 4)
        u0 = initial_condition(ic_keys[i], single, kind="fourier", max_wavenumber=3)
        ref = single.rollout(u0, 20, 10)
        np.testing.assert_allclose(u[i], np.asarray(spectral_resample(ref, 32))[..., 0], atol=1e-5)
    again = gen.generate(jax.random.key(0), 4)
    assert np.array_equal(again.fields["u"], u)


def test_spectral_dataset_rejects_steps_that_do_not_divide():
    gen = SpectralDataset(
        equation={"type": "sciml.pde.Burgers", "shape": [16], "dt": 0.03},
        t_final=0.1,
        n_snapshots=3,
    )
    with pytest.raises(ValueError, match="integer multiple"):
        gen.generate(jax.random.key(0), 1)


def test_darcy_residual_vanishes_on_the_solver_output_only(x64):
    from sciml.pde import darcy_residual, solve_darcy

    n = 33
    x = jnp.linspace(0, 1, n)
    a = 3.0 + 9.0 * (jnp.sin(4 * x)[:, None] * jnp.cos(3 * x)[None, :]) ** 2
    u = solve_darcy(a, 1.0, tol=1e-12)
    # CG stops at a relative residual of 1e-12 of ||f|| = n - 2: entries are below ~1e-9.
    assert float(jnp.abs(darcy_residual(u, a)).max()) < 1e-8
    bumped = u.at[n // 2, n // 2].add(1e-3)
    assert float(jnp.abs(darcy_residual(bumped, a)).max()) > 1.0  # 1e-3 * 4 a / h^2 ~ 10


def test_porous_medium_residual_is_small_on_a_solution(x64):
    from sciml.pde import GeneralizedPorousMedium, porous_medium_residual

    problem = GeneralizedPorousMedium(kind="heat", n_cells=32, rtol=1e-10, atol=1e-12)
    centres = (jnp.arange(32) + 0.5) / 32
    u0 = 1.0 + jnp.cos(2 * jnp.pi * centres)
    t = jnp.linspace(0.0, 0.01, 11)
    u = problem.solve(u0, t, 1.0)
    r = porous_medium_residual(u, t, problem, 1.0)
    # Central differences in time err by dt^2 u_ttt / 6 ~ (1e-3)^2 (4 pi^2)^3 / 6 ~ 1e-2 relative to
    # u_t ~ 4 pi^2 = 40: the residual must sit well below u_t but a perturbation must not.
    assert float(jnp.abs(r).max()) < 0.1
    perturbed = u + 1e-2 * jnp.sin(6 * jnp.pi * centres)[None, :]
    assert float(jnp.abs(porous_medium_residual(perturbed, t, problem, 1.0)).max()) > 1.0
