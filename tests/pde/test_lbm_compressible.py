"""Compressible two-population shifted-D2Q9 LBM (the NeurDE teacher) and the exact Riemann solver."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.pde.lbm import (
    COMPRESSIBLE_VELOCITIES,
    SOD_CASES,
    CompressibleProblem,
    EulerState,
    compressible_moments,
    compressible_weights,
    cylinder_initial_state,
    f_equilibrium,
    g_equilibrium,
    riemann_solution,
    riemann_star,
    sod_initial_state,
    sod_interface,
    solve_levermore,
)


def _shifted_c(shift):
    c = np.array(COMPRESSIBLE_VELOCITIES, dtype=np.float64)
    return c + np.array([shift, 0.0])


def _random_state(rng, shape, case):
    """Fields inside the range a Sod case visits: u in [0, 1.1 u*], T between its extremes."""
    t_range = {1: (0.025, 0.2), 2: (0.14, 0.23)}[case]
    u_max = {1: 0.066, 2: 0.46}[case]
    rho = rng.uniform(0.1, 2.6, shape)
    u = np.stack([rng.uniform(0.0, u_max, shape), rng.uniform(-0.02, 0.02, shape)])
    T = rng.uniform(*t_range, shape)
    return jnp.asarray(rho), jnp.asarray(u), jnp.asarray(T)


# ---------------------------------------------------------------------------- equilibria


def test_weights_sum_to_one_and_are_standard_at_one_third(x64):
    T = jnp.linspace(0.01, 0.9, 7)
    np.testing.assert_allclose(compressible_weights(T).sum(axis=0), 1.0, rtol=1e-15)
    w = compressible_weights(jnp.full((1,), 1.0 / 3.0))[:, 0]
    np.testing.assert_allclose(w, [1 / 9] * 4 + [1 / 36] * 4 + [4 / 9], rtol=1e-15)


@pytest.mark.parametrize("case", [1, 2])
def test_f_equilibrium_has_the_maxwellian_moments_exactly(case, x64):
    # The product form gives sum f = rho, sum c f = rho u, sum c c f = rho (u u + T I) exactly on
    # the shifted lattice: round-off only (1e-14 relative to rho ~ 1).
    rng = np.random.default_rng(case)
    rho, u, T = _random_state(rng, (16, 3), case)
    shift = SOD_CASES[case]["shift"]
    f = f_equilibrium(rho, u, T, shift)
    c = jnp.asarray(_shifted_c(shift))
    np.testing.assert_allclose(f.sum(axis=0), rho, rtol=1e-14)
    np.testing.assert_allclose(jnp.einsum("ia,i...->a...", c, f), rho[None] * u, atol=1e-14)
    second = jnp.einsum("ia,ib,i...->ab...", c, c, f)
    eye = jnp.eye(2).reshape(2, 2, 1, 1)
    expected = rho[None, None] * (u[:, None] * u[None] + T[None, None] * eye)
    np.testing.assert_allclose(second, expected, atol=1e-14)
    moments = compressible_moments(f, f, SOD_CASES[case]["gamma"], shift)
    np.testing.assert_allclose(moments.u, u, atol=1e-14)


# ---------------------------------------------------------------------------- Newton


@pytest.mark.parametrize("case", [1, 2])
@pytest.mark.parametrize(
    "dtype, residual_tol",
    # Measured residual maxima: ~1e-16 (float64) and ~1e-7 (float32, its round-off on 2E ~ 0.5).
    [("float64", 1e-12), ("float32", 1e-6)],
)
def test_newton_converges_from_zero_and_solves_the_moment_equations(case, dtype, residual_tol):
    with jax.enable_x64(dtype == "float64"):
        rng = np.random.default_rng(10 + case)
        rho, u, T = (x.astype(dtype) for x in _random_state(rng, (64, 8), case))
        gamma, shift = SOD_CASES[case]["gamma"], SOD_CASES[case]["shift"]
        solution = solve_levermore(u, T, gamma, shift)
        iterations = np.asarray(solution.iterations)
        # Cold start from zero takes 5-8 iterations; every cell stops before the cap of 20.
        assert iterations.max() <= 10 and iterations.min() >= 3
        assert np.asarray(solution.residual).max() < residual_tol
        # The equilibrium built from the multipliers has the prescribed energy moments.
        g = g_equilibrium(rho, T, solution.multipliers, shift)
        E = T / (gamma - 1) + 0.5 * (u**2).sum(axis=0)
        c = jnp.asarray(_shifted_c(shift), dtype)
        scale = np.asarray(rho * E).max()
        np.testing.assert_allclose(g.sum(axis=0), 2 * rho * E, atol=10 * residual_tol * scale)
        np.testing.assert_allclose(
            jnp.einsum("ia,i...->a...", c, g),
            2 * rho[None] * u * (E + T)[None],
            atol=10 * residual_tol * scale,
        )


def test_warm_start_from_the_previous_multipliers_needs_fewer_iterations(x64):
    rng = np.random.default_rng(3)
    _, u, T = _random_state(rng, (64, 8), 2)
    gamma, shift = SOD_CASES[2]["gamma"], SOD_CASES[2]["shift"]
    previous = solve_levermore(u, T, gamma, shift)
    # A change of 1e-3 is the size of one time step's change near a front.
    u2 = u * (1 + 1e-3 * jnp.asarray(rng.normal(size=u.shape)))
    T2 = T * (1 + 1e-3 * jnp.asarray(rng.normal(size=T.shape)))
    cold = solve_levermore(u2, T2, gamma, shift)
    warm = solve_levermore(u2, T2, gamma, shift, previous.multipliers)
    # Measured: cold 4-6 iterations (mean 5.0), warm 2-3 (mean 2.4).
    warm_its, cold_its = np.asarray(warm.iterations), np.asarray(cold.iterations)
    assert warm_its.max() <= 3 < cold_its.max() and warm_its.mean() < 0.6 * cold_its.mean()
    assert np.asarray(warm.residual).max() < 1e-12
    np.testing.assert_allclose(warm.multipliers, cold.multipliers, atol=1e-9)


# ---------------------------------------------------------------------------- conservation


def _totals(state):
    """Total mass, x and y momentum (less the constant U times the mass) and energy."""
    c = jnp.asarray(COMPRESSIBLE_VELOCITIES, state.f.dtype)
    momentum = jnp.einsum("ia,i...->a", c, state.f)
    return jnp.stack([state.f.sum(), momentum[0], momentum[1], 0.5 * state.g.sum()])


@pytest.mark.parametrize(
    "shift, conserve_energy",
    [(0.0, False), (0.2, False), (0.2, True)],
    ids=["unshifted", "shifted-released", "shifted-conservative"],
)
def test_periodic_box_conserves_mass_momentum_and_energy(shift, conserve_energy, x64):
    nx, ny = 32, 24
    x, y = np.meshgrid(np.arange(nx) / nx, np.arange(ny) / ny, indexing="ij")
    rng = np.random.default_rng(4)

    def smooth():
        a = rng.normal(size=4)
        return a[0] * np.sin(2 * np.pi * (x + a[2])) + a[1] * np.cos(2 * np.pi * (y + a[3]))

    rho = 1 + 0.05 * smooth()
    u = np.stack([shift + 0.05 * smooth(), 0.05 * smooth()])
    T = 0.15 + 0.01 * smooth()
    problem = CompressibleProblem(
        shape=(nx, ny),
        gamma=1.4,
        viscosity=0.01,
        shift=shift,
        alpha1=1.0,
        boundary_x="periodic",
        conserve_energy=conserve_energy,
    )
    state = problem.equilibrium_state(rho, u, T)
    totals = np.asarray(problem.rollout(state, 50, 10, observe=_totals))
    drift = np.abs(totals - totals[0]) / totals[0, 0]  # relative to the total mass
    # Collision conserves rho and rho u per cell exactly and streaming only moves populations:
    # round-off of ~800 cells x 50 steps (measured < 3e-15).
    assert drift[:, :3].max() < 1e-12
    energy = drift[:, 3].max()
    if shift == 0.0 or conserve_energy:
        # Energy up to the Newton residual (~1e-14 per cell and step; measured < 1e-13).
        assert energy < 1e-11
    else:
        # As released, the heat-flux correction adds sum_i g_is = U q*_x / T: not conserved
        # (measured 2.6e-4 of the total energy after 50 steps here).
        assert 1e-6 < energy < 1e-2


# ---------------------------------------------------------------------------- Sod


SOD_TOLERANCES = {
    # (case, conserve_energy): (plateau rtol, shock position in cells). Measured at 3001 x 1,
    # 1000 steps (the release's grid and horizon), float64:
    # released, case 1: rho_L* +0.4%, rho_R* -2.6%, u* -3.9%, p* +0.7%; shock 16.2 cells ahead;
    # released, case 2: rho_L* +1.8%, rho_R* -1.6%, u* -1.2%, p* -0.5%; shock 2.4 cells ahead;
    # conservative g_is: plateaus within 0.11% in both cases; shock 0.9 (case 1) and 0.1 cells.
    # The LBM is a Navier-Stokes solver with finite viscosity (tau >= 1/2 + limiter), so fronts
    # are smeared; the released g_is also adds energy at fronts, which shifts the plateaus.
    (1, False): (0.05, 20.0),
    (2, False): (0.025, 4.0),
    (1, True): (0.003, 2.0),
    (2, True): (0.003, 1.0),
}


def _plateau_windows(star, x0, n):
    """Middle halves of the star regions left and right of the contact (cell index slices)."""
    tail, contact, shock = x0 + star.left_tail * n, x0 + star.u * n, x0 + star.right_head * n

    def middle(a, b):
        return slice(int(np.ceil(a + 0.25 * (b - a))), int(b - 0.25 * (b - a)))

    return middle(tail, contact), middle(contact, shock)


def _shock_position(rho, star, right, contact):
    """Where rho crosses the mean of the post- and pre-shock densities, right of the contact."""
    mid = 0.5 * (star.rho_right + right.rho)
    start = int(contact) + 10
    behind = (rho[start:] - mid) * np.sign(star.rho_right - right.rho) > 0
    k = start + int(np.argmin(behind))
    return k - 1 + (rho[k - 1] - mid) / (rho[k - 1] - rho[k])


@pytest.mark.parametrize(
    "case, conserve_energy, dtype",
    [
        (1, False, "float64"),
        (2, False, "float64"),
        (1, False, "float32"),
        (1, True, "float64"),
        (2, True, "float64"),
    ],
)
def test_sod_plateaus_and_shock_match_the_exact_riemann_solution(case, conserve_energy, dtype):
    nx, n_steps = 3001, 1000
    with jax.enable_x64(dtype == "float64"):
        problem, state = sod_initial_state(case, nx=nx, ny=1, dtype=dtype)
        problem = dataclasses.replace(problem, conserve_energy=conserve_energy)
        final = jax.tree.map(lambda a: a[-1], problem.rollout(state, n_steps))
        assert final.f.dtype == jnp.dtype(dtype)
        m = problem.moments(final.f, final.g)
        rho, u, p = (np.asarray(a, np.float64) for a in (m.rho[:, 0], m.u[0, :, 0], m.p[:, 0]))
    spec = SOD_CASES[case]
    left = EulerState(spec["left"]["rho"], 0.0, spec["left"]["rho"] * spec["left"]["T"])
    right = EulerState(spec["right"]["rho"], 0.0, spec["right"]["rho"] * spec["right"]["T"])
    star = riemann_star(left, right, spec["gamma"])
    x0 = sod_interface(nx)
    rtol, shock_cells = SOD_TOLERANCES[case, conserve_energy]
    window_l, window_r = _plateau_windows(star, x0, n_steps)
    for window, rho_star in ((window_l, star.rho_left), (window_r, star.rho_right)):
        np.testing.assert_allclose(rho[window], rho_star, rtol=rtol)
        np.testing.assert_allclose(u[window], star.u, rtol=rtol)
        np.testing.assert_allclose(p[window], star.p, rtol=rtol)
    shock = _shock_position(rho, star, right, x0 + star.u * n_steps)
    assert abs(shock - (x0 + star.right_head * n_steps)) < shock_cells
    # Undisturbed states beyond the fastest waves are untouched (float32: its round-off).
    exact = riemann_solution(left, right, spec["gamma"], np.arange(nx), n_steps, x0)
    far = (np.arange(nx) < x0 + star.left_head * n_steps - 60) | (
        np.arange(nx) > x0 + star.right_head * n_steps + 60
    )
    np.testing.assert_allclose(rho[far], exact.rho[far], rtol=1e-5)


# ---------------------------------------------------------------------------- solver contract


def test_step_equals_rollout_compiles_once_and_quasi_1d_is_independent_of_ny(x64):
    problem, state = sod_initial_state(2, nx=64, ny=5)
    step = jax.jit(CompressibleProblem.step)
    one = step(problem, state)
    rolled = problem.rollout(state, 30, 1)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(rolled)):
        np.testing.assert_allclose(b[1], a, rtol=0, atol=1e-15)
    # Viscosity, shift, gamma, Pr and the limiter are leaves: no recompilation.
    other = dataclasses.replace(problem, viscosity=0.03, shift=0.1, alpha1=1.0, prandtl=1.0)
    step(other, one)
    assert step._cache_size() == 1
    # y is periodic and uniform: ny = 1 reproduces the release's ny = 5 (round-off: measured
    # 7e-15 after 30 steps, from different fusion of the same sums).
    thin = jax.tree.map(lambda a: a[..., :1], state)
    thin_rolled = dataclasses.replace(problem, shape=(64, 1)).rollout(thin, 30, 1)
    np.testing.assert_allclose(
        rolled.f, jnp.broadcast_to(thin_rolled.f, rolled.f.shape), rtol=0, atol=1e-13
    )


def test_cylinder_keeps_inlet_and_solid_at_their_equilibria(x64):
    problem, state = cylinder_initial_state(nx=48, ny=32, radius=5.0)
    solid = np.asarray(problem.solid)
    # Lattice points strictly inside a radius-5 circle: 69 (no row or column has fewer than 2).
    assert solid.sum() == 69 and not solid[0].any()
    states = problem.rollout(state, 20, 10)
    final = jax.tree.map(lambda a: a[-1], states)
    assert np.isfinite(np.asarray(final.f)).all() and np.isfinite(np.asarray(final.g)).all()
    m = problem.moments(final.f, final.g)
    u0 = 1.8 * np.sqrt(1.4 * 0.2)
    np.testing.assert_allclose(m.u[0, 0], u0, rtol=1e-12)  # equilibrium inlet
    np.testing.assert_allclose(m.T[0], 0.2, rtol=1e-12)
    np.testing.assert_allclose(m.u[:, solid], 0.0, atol=1e-12)  # solid cells at rest
    np.testing.assert_allclose(m.rho[solid], 1.0, rtol=1e-12)
    # The bow shock compresses the flow ahead of the cylinder (measured max rho 1.82).
    assert 1.5 < float(m.rho.max()) < 2.5


def test_bad_inputs_raise_clear_errors():
    problem, state = sod_initial_state(1, nx=16)
    with pytest.raises(ValueError, match="state.f must have shape"):
        problem.step(state._replace(f=state.f[:, :8]))
    with pytest.raises(ValueError, match="multiple"):
        problem.rollout(state, 10, 3)
    with pytest.raises(ValueError, match="zero-gradient y ends"):
        CompressibleProblem(shape=(8, 2), gamma=1.4, viscosity=0.1, boundary_y="zero_gradient")
    with pytest.raises(ValueError, match="shift"):
        CompressibleProblem(shape=(8, 8), gamma=1.4, viscosity=0.1, shift=1.5)
    with pytest.raises(ValueError, match="Sod case"):
        sod_initial_state(3, nx=16)
    with pytest.raises(ValueError, match="vacuum"):
        riemann_star(EulerState(1.0, -5.0, 0.4), EulerState(1.0, 5.0, 0.4), 1.4)


# ---------------------------------------------------------------------------- Riemann solver


@pytest.mark.parametrize(
    "left, right, gamma, expected",
    [
        # Toro (2009), Table 4.3: exact p*, u*, rho*_L, rho*_R of his tests 1-5 (gamma 1.4).
        ((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), 1.4, (0.30313, 0.92745, 0.42632, 0.26557)),
        ((1.0, -2.0, 0.4), (1.0, 2.0, 0.4), 1.4, (0.00189, 0.0, 0.02185, 0.02185)),
        ((1.0, 0.0, 1000.0), (1.0, 0.0, 0.01), 1.4, (460.894, 19.5975, 0.57506, 5.99924)),
        ((1.0, 0.0, 0.01), (1.0, 0.0, 100.0), 1.4, (46.0950, -6.19633, 5.99242, 0.57511)),
        (
            (5.99924, 19.5975, 460.894),
            (5.99242, -6.19633, 46.0950),
            1.4,
            (1691.64, 8.68975, 14.2823, 31.0426),
        ),
    ],
    ids=["toro1-sod", "toro2", "toro3", "toro4", "toro5"],
)
def test_riemann_star_state_matches_toro(left, right, gamma, expected):
    star = riemann_star(EulerState(*left), EulerState(*right), gamma)
    got = (star.p, star.u, star.rho_left, star.rho_right)
    # Toro prints 5-6 significant digits (test 5's inputs are themselves rounded): 1e-5 relative.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [1, 2])
def test_riemann_reference_of_the_neurde_sod_cases(case):
    # Lattice-unit values from the method notes (p*, u*, shock speed), 5 significant digits.
    expected = {1: (0.08246, 0.05953, 0.27267), 2: (0.06063, 0.41477, 0.78359)}[case]
    spec = SOD_CASES[case]
    left = EulerState(spec["left"]["rho"], 0.0, spec["left"]["rho"] * spec["left"]["T"])
    right = EulerState(spec["right"]["rho"], 0.0, spec["right"]["rho"] * spec["right"]["T"])
    star = riemann_star(left, right, spec["gamma"])
    np.testing.assert_allclose((star.p, star.u, star.right_head), expected, rtol=1e-4)
    # The sampled solution conserves mass, momentum and energy over a closed interval: the
    # integrals change only by the (zero) fluxes through its ends. Midpoint rule, 1e-6 cells.
    x = np.linspace(-1.0, 1.0, 2_000_001)
    sol = riemann_solution(left, right, spec["gamma"], x, 1.0)
    dx = x[1] - x[0]
    energy = sol.p / (spec["gamma"] - 1) + 0.5 * sol.rho * sol.u**2
    initial = [left.rho + right.rho, 0.0, (left.p + right.p) / (spec["gamma"] - 1)]
    flux = left.p - right.p  # momentum flux difference through the ends over t = 1
    got = [sol.rho.sum() * dx, (sol.rho * sol.u).sum() * dx, energy.sum() * dx]
    np.testing.assert_allclose(got, [initial[0], initial[1] + flux, initial[2]], atol=1e-5)
