import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.pde.darcy import (
    DarcyDataset,
    cosine_random_field,
    darcy_coefficient,
    darcy_operator,
    solve_darcy,
)


def _u_exact(x, y):
    """Smooth manufactured solution, zero on the boundary of the unit square."""
    return jnp.sin(jnp.pi * x) * jnp.sin(2 * jnp.pi * y) * jnp.exp(x * y)


def _a_exact(x, y):
    return 2 + jnp.sin(3 * x + 1) * jnp.cos(2 * y)


def _f_exact(x, y):
    """f = -div(a grad u), by automatic differentiation of the closed forms (exact to round-off)."""
    flux_x = lambda x, y: _a_exact(x, y) * jax.grad(_u_exact, 0)(x, y)  # noqa: E731
    flux_y = lambda x, y: _a_exact(x, y) * jax.grad(_u_exact, 1)(x, y)  # noqa: E731
    return -(jax.grad(flux_x, 0)(x, y) + jax.grad(flux_y, 1)(x, y))


def _manufactured_error(n, face_mean):
    x = jnp.linspace(0.0, 1.0, n)
    xx, yy = jnp.meshgrid(x, x, indexing="ij")
    f = jax.jit(jax.vmap(jax.vmap(_f_exact)))(xx, yy)
    u = solve_darcy(_a_exact(xx, yy), f, face_mean=face_mean, tol=1e-12)
    return float(jnp.abs(u - _u_exact(xx, yy)).max())


@pytest.mark.parametrize("face_mean", ["harmonic", "arithmetic"])
def test_manufactured_solution_converges_at_second_order(x64, face_mean):
    # The 5-point stencil with either face mean is O(h^2) for smooth a and u (measured slope 1.99);
    # CG to 1e-12 keeps the algebraic error far below the discretisation error (~1e-3 here).
    ns = np.array([17, 33, 65])
    errors = np.array([_manufactured_error(n, face_mean) for n in ns])
    order = np.polyfit(np.log(1.0 / (ns - 1)), np.log(errors), 1)[0]
    assert abs(order - 2) < 0.15, (errors, order)


@pytest.mark.parametrize("preconditioner", ["poisson", "jacobi"])
def test_cg_residual_is_small(x64, preconditioner):
    # CG stops at ||r|| <= 1e-10 ||f|| on its recursive residual; the true residual can differ by
    # round-off, ~ eps * ||A|| ||u|| ~ 1e-16 * 4 * 12 * 64^2 * 0.01 << 1e-9.
    a = darcy_coefficient(jax.random.key(0), 65, dtype=jnp.float64)
    u = solve_darcy(a, 1.0, preconditioner=preconditioner, tol=1e-10)
    residual = darcy_operator(a, u) - 1.0
    assert jnp.linalg.norm(residual) / 63 < 1e-9
    assert np.all(np.asarray(u)[[0, -1], :] == 0) and np.all(np.asarray(u)[:, [0, -1]] == 0)


def test_poisson_preconditioner_is_exact_for_constant_coefficient(x64):
    # For constant a the preconditioner is A^-1 itself (sine transforms diagonalise the 5-point
    # Laplacian), so one CG iteration solves to round-off (cond(A) * eps ~ 1e3 * 1e-16 relative).
    a = jnp.full((33, 33), 2.5)
    u = solve_darcy(a, 1.0, maxiter=1)
    assert jnp.abs(darcy_operator(a, u) - 1.0).max() < 1e-10


def test_float32_solution_matches_float64():
    # The preconditioned system is well conditioned (cond <= max a / min a = 4), so float32 CG to
    # tol 1e-6 lands within a few float32 ulps of the float64 solution (measured 2.2e-7 relative).
    a = darcy_coefficient(jax.random.key(1), 65)
    u32 = solve_darcy(a)
    assert u32.dtype == jnp.float32
    with jax.enable_x64(True):
        u64 = solve_darcy(jnp.asarray(np.asarray(a), jnp.float64), tol=1e-12)
        assert jnp.abs(u32 - u64).max() / jnp.abs(u64).max() < 2e-6


def test_solver_is_jittable_and_vmappable(x64):
    a = jax.vmap(lambda k: darcy_coefficient(k, 33, dtype=jnp.float64))(
        jax.random.split(jax.random.key(2), 3)
    )
    batched = jax.jit(jax.vmap(lambda c: solve_darcy(c, tol=1e-10)))(a)
    single = solve_darcy(a[1], tol=1e-10)
    # Same algorithm; vmapped CG runs extra iterations for the slowest member (1e-10 relative).
    assert jnp.abs(batched[1] - single).max() < 1e-10 * jnp.abs(single).max()


def test_cosine_field_is_mean_zero_under_the_trapezoid_rule(x64):
    # The constant mode is removed and every other cosine k = 1..n-1 sums to zero under the
    # trapezoid rule on the nodes, so the weighted mean vanishes to round-off.
    g = cosine_random_field(jax.random.key(3), 33, dtype=jnp.float64)
    w = np.ones(33)
    w[[0, -1]] = 0.5
    assert abs(float(w @ np.asarray(g) @ w)) < 1e-12 * float(jnp.abs(g).max()) * 33**2


def test_dataset_shapes_values_and_reproducibility():
    gen = DarcyDataset(resolution=17, n_solve=33)
    a = gen.generate(jax.random.key(4), 3)
    b = gen.generate(jax.random.key(4), 3)
    assert a.fields["a"].shape == a.fields["u"].shape == (3, 1, 17, 17)
    assert np.array_equal(a.fields["u"], b.fields["u"])
    assert set(np.unique(a.fields["a"])) <= {3.0, 12.0}
    u = a.fields["u"][:, 0]
    # A is an M-matrix and f = 1 > 0, so the discrete solution is positive inside (maximum principle).
    assert np.all(u[:, 1:-1, 1:-1] > 0) and np.all(u[:, 0] == 0) and np.all(u[:, :, -1] == 0)
    assert a.boundary == {"x": "WALL", "y": "WALL"} and np.allclose(a.coords["x"][[0, -1]], [0, 1])
    c = gen.generate(jax.random.key(5), 3)
    assert not np.array_equal(a.fields["a"], c.fields["a"])


def test_dataset_rejects_a_resolution_that_is_not_a_subsampling():
    with pytest.raises(ValueError, match="must be a multiple"):
        DarcyDataset(resolution=20, n_solve=33)


def test_physics_residual_is_small_for_solutions_and_large_otherwise(x64):
    # Stored (float32) at the solver's own grid, a solution satisfies the discrete equation up to
    # float32 round-off amplified by the stencil's 1/h^2 (RMS relative residual ~5e-6 measured,
    # bound 1e-4); a 10% perturbation of u leaves an O(0.1) relative residual.
    data = DarcyDataset(resolution=17, n_solve=17, tol=1e-10)
    traj = data.generate(jax.random.key(0), 2)
    a, u = (jnp.asarray(traj.fields[k][:, 0, ..., None]) for k in ("a", "u"))
    assert data.physics_residual(a, u) < 1e-8
    assert data.physics_residual(a, 1.1 * u) > 1e-3
