import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import null_space

from sciml import constraints as C

# float64 round-off bounds, for order-one data: a projection is a handful of products and an
# m x m solve whose condition number (below 1e3 here) multiplies eps = 2.2e-16.
ROUND_OFF = 1e-12

SHAPE = (4, 6)  # (time, space)
N = SHAPE[0] * SHAPE[1]


def pde_constraint(rng: np.random.Generator) -> C.LinearConstraint:
    """Initial condition plus mass conservation at later times, as in ProbHardE2E's PDE tasks."""
    weights = C.trapezoid_weights(np.linspace(0, 1, SHAPE[1]))
    return C.stack_constraints(
        C.initial_value_constraint(SHAPE, rng.normal(size=SHAPE[1])),
        C.conservation_constraint(weights, rng.normal(size=SHAPE[0] - 1), first_time=1),
    )


def structured_constraint(name: str, rng: np.random.Generator) -> C.LinearConstraint:
    """A constraint of each structure the projections distinguish.

    "stacked": dense A (initial condition plus conservation); "conservation": disjoint block rows
    after t = 0 (`WeightedSumConstraint`, axis 1, with an offset); "column_sums": disjoint
    strided rows with non-uniform weights over the middle two times (axis 0, unknowns before
    and after the block).
    """
    if name == "stacked":
        return pde_constraint(rng)
    if name == "conservation":
        weights = C.trapezoid_weights(np.linspace(0, 1, SHAPE[1]))
        return C.conservation_constraint(weights, rng.normal(size=SHAPE[0] - 1), first_time=1)
    weights = rng.uniform(0.5, 1.5, size=(2, SHAPE[1]))
    return C.weighted_sum_constraint(
        weights, rng.normal(size=SHAPE[1]), axis=0, n_unknowns=N, offset=SHAPE[1]
    )


CONSTRAINTS = ["stacked", "conservation", "column_sums"]


# --- linear constraints and their builders ------------------------------------------------------


@pytest.mark.parametrize("name", CONSTRAINTS[1:])
def test_weighted_sums_apply_their_dense_matrix(x64, name):
    rng = np.random.default_rng(30)
    constraint = structured_constraint(name, rng)
    assert isinstance(constraint, C.WeightedSumConstraint) and constraint.disjoint_rows
    a = np.asarray(constraint.matrix)
    m, n = a.shape
    # Rows touch disjoint unknowns: every column of A has at most one non-zero.
    assert (np.count_nonzero(a, axis=0) <= 1).all() and np.linalg.matrix_rank(a) == m
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
    d, v = rng.uniform(0.5, 2, size=n), rng.uniform(0.5, 2, size=m)
    # Exact up to the order of a few sums (float64 round-off).
    for got, expected in [
        (constraint.apply(jnp.asarray(x)), a @ x),
        (constraint.apply(jnp.asarray(x[:, 0])), a @ x[:, 0]),
        (constraint.apply_transpose(jnp.asarray(y)), a.T @ y),
        (constraint.weighted_gram(jnp.asarray(d)), a @ np.diag(d) @ a.T),
        (constraint.squared_row_norms(jnp.asarray(d)), np.diag(a @ np.diag(d) @ a.T)),
        (constraint.squared_column_norms(jnp.asarray(v)), np.diag(a.T @ np.diag(v) @ a)),
        (constraint.residual(jnp.asarray(x[:, 0])), a @ x[:, 0] - np.asarray(constraint.target)),
    ]:
        np.testing.assert_allclose(got, expected, atol=ROUND_OFF)
    dense = C.LinearConstraint(matrix=constraint.matrix, target=constraint.target)
    z = jnp.asarray(rng.normal(size=SHAPE))
    np.testing.assert_allclose(
        C.project_euclidean(z, constraint), C.project_euclidean(z, dense), atol=ROUND_OFF
    )


def test_weighted_sum_builder_rejects_bad_blocks():
    with pytest.raises(ValueError, match="axis"):
        C.weighted_sum_constraint(np.ones((2, 3)), np.zeros(2), axis=2)
    with pytest.raises(ValueError, match="3 totals"):
        C.weighted_sum_constraint(np.ones((2, 3)), np.zeros(3), axis=1)
    with pytest.raises(ValueError, match="exceeds"):
        C.weighted_sum_constraint(np.ones((2, 3)), np.zeros(2), axis=1, n_unknowns=6, offset=1)


def test_value_and_slice_projections_replace_the_fixed_entries(x64):
    rng = np.random.default_rng(0)
    u, values = jnp.asarray(rng.normal(size=SHAPE)), rng.normal(size=SHAPE)
    mask = rng.random(SHAPE) < 0.3
    # Selection rows are orthonormal: the L2 projection overwrites the fixed entries only.
    for constraint, fixed in [
        (C.value_constraint(mask, values), mask),
        (C.slice_constraint(SHAPE, np.s_[1:3, 2], values[1:3, 2]), np.s_[1:3, 2]),
        (C.initial_value_constraint(SHAPE, values[0]), np.s_[0]),
    ]:
        expected = np.array(u)
        expected[fixed] = values[fixed]
        np.testing.assert_allclose(C.project_euclidean(u, constraint), expected, atol=ROUND_OFF)
    assert C.value_constraint(mask, values).n_constraints == mask.sum()


def test_boundary_and_periodic_projections(x64):
    u = jnp.asarray(np.random.default_rng(1).normal(size=SHAPE))
    bc = C.boundary_value_constraint(SHAPE, left=jnp.arange(3.0), right=-1.0, first_time=1)
    projected = np.asarray(C.project_euclidean(u, bc))
    np.testing.assert_allclose(projected[1:, 0], [0, 1, 2], atol=ROUND_OFF)
    np.testing.assert_allclose(projected[1:, -1], -1, atol=ROUND_OFF)
    np.testing.assert_allclose(projected[0], u[0], atol=ROUND_OFF)
    np.testing.assert_allclose(projected[:, 1:-1], u[:, 1:-1], atol=ROUND_OFF)
    periodic = np.asarray(C.project_euclidean(u, C.periodic_constraint(SHAPE, axis=-1)))
    average = (u[:, 0] + u[:, -1]) / 2
    np.testing.assert_allclose(periodic[:, 0], average, atol=ROUND_OFF)
    np.testing.assert_allclose(periodic[:, -1], average, atol=ROUND_OFF)


def test_trapezoid_weights_are_exact_for_linear_functions():
    x = np.sort(np.random.default_rng(2).uniform(0, 2, size=9))
    w = C.trapezoid_weights(x)
    assert np.isclose(w @ (3 * x + 1), 1.5 * (x[-1] ** 2 - x[0] ** 2) + x[-1] - x[0], rtol=1e-13)
    periodic = C.trapezoid_weights(np.arange(8) / 8 * 2 * np.pi, period=2 * np.pi)
    np.testing.assert_allclose(periodic, 2 * np.pi / 8, rtol=1e-14)


def test_conservation_with_uniform_weights_is_a_uniform_shift(x64):
    rng = np.random.default_rng(3)
    u, totals = jnp.asarray(rng.normal(size=SHAPE)), rng.normal(size=SHAPE[0])
    weights = C.trapezoid_weights(np.arange(SHAPE[1]) / SHAPE[1], period=1.0)
    projected = C.project_euclidean(u, C.conservation_constraint(weights, totals))
    np.testing.assert_allclose(projected @ weights, totals, atol=ROUND_OFF)
    shift = np.asarray(projected - u)
    np.testing.assert_allclose(shift, shift[:, :1] * np.ones(SHAPE[1]), atol=ROUND_OFF)
    region = C.integral_constraint(weights * (np.arange(SHAPE[1]) < 3), 2.0)
    assert np.isclose(float(C.project_euclidean(u[0], region)[:3] @ weights[:3]), 2.0)


def test_coherency_projection_makes_aggregates_sum_their_children(x64):
    children = {0: [1, 2], 1: [3, 4], 2: [5, 6]}
    coherency = C.coherency_constraint(children, n_series=7, horizon=3)
    projected = np.asarray(
        C.project_euclidean(jnp.asarray(np.random.default_rng(4).normal(size=(3, 7))), coherency)
    )
    for parent, kids in children.items():
        np.testing.assert_allclose(projected[:, parent], projected[:, kids].sum(1), atol=ROUND_OFF)
    again = C.project_euclidean(jnp.asarray(projected), coherency)
    np.testing.assert_allclose(again, projected, atol=ROUND_OFF)


def test_stacking_rejects_mismatched_or_redundant_constraints():
    ic = C.initial_value_constraint(SHAPE, 0.0)
    with pytest.raises(ValueError, match="different sizes"):
        C.stack_constraints(ic, C.initial_value_constraint((3, 6), 0.0))
    with pytest.raises(ValueError, match="first_time=1"):
        C.stack_constraints(ic, C.boundary_value_constraint(SHAPE, left=0.0, right=0.0))


def test_euclidean_projection_is_the_closest_point_and_idempotent(x64):
    rng = np.random.default_rng(5)
    constraint = pde_constraint(rng)
    a, b = np.asarray(constraint.matrix), np.asarray(constraint.target)
    z = rng.normal(size=SHAPE)
    projected = np.asarray(C.project_euclidean(jnp.asarray(z), constraint)).reshape(-1)
    # Dense least squares: the minimum-norm correction z + A^+ (b - A z).
    expected = z.reshape(-1) + np.linalg.pinv(a) @ (b - a @ z.reshape(-1))
    np.testing.assert_allclose(projected, expected, atol=ROUND_OFF)
    # Closest point: the correction is orthogonal to every feasible direction (null(A)).
    np.testing.assert_allclose(null_space(a).T @ (projected - z.reshape(-1)), 0, atol=ROUND_OFF)
    twice = C.project_euclidean(jnp.asarray(projected.reshape(SHAPE)), constraint)
    np.testing.assert_allclose(np.asarray(twice).reshape(-1), projected, atol=ROUND_OFF)


def test_euclidean_projection_batches_by_vmap_in_float32():
    constraint = pde_constraint(np.random.default_rng(6))
    z = jnp.asarray(np.random.default_rng(7).normal(size=(5, *SHAPE)), jnp.float32)
    projected = jax.jit(jax.vmap(C.project_euclidean, in_axes=(0, None)))(z, constraint)
    residuals = jax.vmap(constraint.residual)(projected)
    # float32: eps 1.2e-7 times cond(A A^T) (about 10) and order-one data; measured 4e-7.
    assert float(jnp.max(jnp.abs(residuals))) < 1e-5


def test_box_projection_clips():
    u = jnp.array([-2.0, 0.5, 3.0])
    np.testing.assert_array_equal(C.project_box(u, lower=0.0, upper=1.0), [0.0, 0.5, 1.0])


# --- Gaussian (variance-weighted) projection ---------------------------------------------------

KINDS = ["diagonal", "low_rank", "full"]


def covariance_params(kind: str, rng: np.random.Generator) -> dict[str, jax.Array]:
    diag = rng.uniform(0.5, 2.0, size=N)
    if kind == "diagonal":
        return {"variance": jnp.asarray(diag)}
    if kind == "low_rank":
        return {"factor": jnp.asarray(rng.normal(size=(N, 3))), "diagonal_part": jnp.asarray(diag)}
    root = rng.normal(size=(N, N)) / np.sqrt(N)
    return {"matrix": jnp.asarray(root @ root.T + np.diag(diag))}


def covariance(kind: str, params: dict[str, jax.Array]) -> C.Covariance:
    cls = {"diagonal": C.DiagonalCovariance, "low_rank": C.LowRankCovariance}
    return cls.get(kind, C.FullCovariance)(**params)


def condition_dense(mu, sigma, a, b, noise=0.0):
    """Textbook Gaussian conditioning with dense numpy matrices."""
    gain = sigma @ a.T @ np.linalg.inv(a @ sigma @ a.T + noise * np.eye(len(b)))
    return mu - gain @ (a @ mu - b), sigma - gain @ a @ sigma


@pytest.mark.parametrize("name", CONSTRAINTS)
@pytest.mark.parametrize("kind", KINDS)
def test_gaussian_projection_is_gaussian_conditioning(x64, kind, name):
    rng = np.random.default_rng(10)
    constraint = structured_constraint(name, rng)
    a, b = np.asarray(constraint.matrix), np.asarray(constraint.target)
    cov = covariance(kind, covariance_params(kind, rng))
    mu = rng.normal(size=N)
    post = C.project_gaussian(C.Gaussian(mean=jnp.asarray(mu), cov=cov), constraint)
    mean_ref, cov_ref = condition_dense(mu, np.asarray(cov.dense()), a, b)
    np.testing.assert_allclose(post.mean, mean_ref, atol=ROUND_OFF)
    np.testing.assert_allclose(post.cov.dense(), cov_ref, atol=ROUND_OFF)
    np.testing.assert_allclose(post.variance(), np.diag(cov_ref), atol=ROUND_OFF)
    probe = rng.normal(size=(N, 2))
    np.testing.assert_allclose(post.cov.matmul(jnp.asarray(probe)), cov_ref @ probe, atol=ROUND_OFF)
    # Hard constraint: the mean satisfies it, the covariance has no variance across it.
    assert float(jnp.max(jnp.abs(constraint.residual(post.mean)))) < ROUND_OFF
    np.testing.assert_allclose(a @ np.asarray(post.cov.dense()) @ a.T, 0, atol=ROUND_OFF)
    assert np.linalg.eigvalsh(np.asarray(post.cov.dense())).min() > -ROUND_OFF


@pytest.mark.parametrize("name", CONSTRAINTS)
@pytest.mark.parametrize("kind", KINDS)
def test_projected_samples_are_feasible_and_distributed_as_the_conditional(x64, kind, name):
    rng = np.random.default_rng(11)
    constraint = structured_constraint(name, rng)
    cov = covariance(kind, covariance_params(kind, rng))
    post = C.project_gaussian(C.Gaussian(mean=jnp.asarray(rng.normal(size=N)), cov=cov), constraint)
    n_samples = 20_000
    samples = np.asarray(jax.jit(post.sample, static_argnums=1)(jax.random.key(0), n_samples))
    residuals = samples @ np.asarray(constraint.matrix).T - np.asarray(constraint.target)
    assert np.abs(residuals).max() < ROUND_OFF
    # Monte Carlo: 5 standard errors of the sample mean and of each sample covariance entry,
    # sqrt((S_ii S_jj + S_ij^2) / N) for Gaussian data; round-off where S' is exactly 0.
    sigma = np.asarray(post.cov.dense())
    var = np.clip(np.diag(sigma), 0, None)
    np.testing.assert_array_less(
        np.abs(samples.mean(0) - post.mean), 5 * np.sqrt(var / n_samples) + ROUND_OFF
    )
    se_cov = np.sqrt((np.outer(var, var) + sigma**2) / n_samples)
    np.testing.assert_array_less(np.abs(np.cov(samples.T) - sigma), 5 * se_cov + ROUND_OFF)


@pytest.mark.parametrize("name", CONSTRAINTS)
@pytest.mark.parametrize("kind", KINDS)
def test_gaussian_projection_gradients_match_finite_differences(x64, kind, name):
    rng = np.random.default_rng(12)
    constraint = structured_constraint(name, rng)
    params = {"mu": jnp.asarray(rng.normal(size=N)), **covariance_params(kind, rng)}
    weights = [jnp.asarray(rng.normal(size=shape)) for shape in [(N,), (N,), (2, N)]]

    def objective(params):
        cov_params = {k: v for k, v in params.items() if k != "mu"}
        prior = C.Gaussian(mean=params["mu"], cov=covariance(kind, cov_params))
        post = C.project_gaussian(prior, constraint)
        samples = post.sample(jax.random.key(1), 2)  # reparameterised: smooth in the params
        return (
            weights[0] @ jnp.sin(post.mean)
            + weights[1] @ jnp.log1p(post.variance())
            + jnp.sum(weights[2] * samples)
        )

    value_and_grad = jax.jit(jax.value_and_grad(objective))  # one compilation serves both
    grads = value_and_grad(params)[1]
    # Central differences along random (symmetric, for a full covariance) directions with step
    # 1e-5: truncation ~ h^2 |f'''| ~ 1e-10 and round-off ~ eps |f| / h ~ 1e-11.
    h = 1e-5
    for name, value in params.items():
        direction = rng.normal(size=value.shape)
        if name == "matrix":
            direction = direction + direction.T
        bumped = [value_and_grad({**params, name: value + s * h * direction})[0] for s in (1, -1)]
        numeric = (bumped[0] - bumped[1]) / (2 * h)
        analytic = jnp.sum(grads[name] * direction)
        assert np.isclose(analytic, numeric, rtol=1e-6, atol=1e-8), name


def test_chained_projections_equal_the_joint_projection(x64):
    rng = np.random.default_rng(13)
    first = C.initial_value_constraint(SHAPE, rng.normal(size=SHAPE[1]))
    weights = C.trapezoid_weights(np.linspace(0, 1, SHAPE[1]))
    second = C.conservation_constraint(weights, rng.normal(size=SHAPE[0] - 1), first_time=1)
    prior = C.Gaussian(
        mean=jnp.asarray(rng.normal(size=N)),
        cov=covariance("low_rank", covariance_params("low_rank", rng)),
    )
    chained = C.project_gaussian(C.project_gaussian(prior, first), second)
    joint = C.project_gaussian(prior, C.stack_constraints(first, second))
    np.testing.assert_allclose(chained.mean, joint.mean, atol=ROUND_OFF)
    np.testing.assert_allclose(chained.cov.dense(), joint.cov.dense(), atol=ROUND_OFF)


@pytest.mark.parametrize("name", CONSTRAINTS)
@pytest.mark.parametrize("kind", KINDS)
def test_soft_projection_adds_observation_noise(x64, kind, name):
    rng = np.random.default_rng(14)
    constraint = structured_constraint(name, rng)
    a, b = np.asarray(constraint.matrix), np.asarray(constraint.target)
    cov = covariance(kind, covariance_params(kind, rng))
    mu = rng.normal(size=N)
    post = C.project_gaussian(
        C.Gaussian(mean=jnp.asarray(mu), cov=cov), constraint, noise_variance=0.1
    )
    mean_ref, cov_ref = condition_dense(mu, np.asarray(cov.dense()), a, b, noise=0.1)
    np.testing.assert_allclose(post.mean, mean_ref, atol=ROUND_OFF)
    np.testing.assert_allclose(post.cov.dense(), cov_ref, atol=ROUND_OFF)


@pytest.mark.parametrize("kind", ["diagonal", "low_rank"])
def test_structured_projection_never_forms_an_n_by_n_matrix(kind):
    n, rng = 512, np.random.default_rng(15)
    constraint = C.stack_constraints(
        C.integral_constraint(np.full(n, 1 / n), 0.0), C.slice_constraint((n,), np.s_[:2], 1.0)
    )
    params = {
        "variance": jnp.ones(n),
        "factor": jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        "diagonal_part": jnp.ones(n),
    }
    cov = C.DiagonalCovariance(variance=params["variance"])
    if kind == "low_rank":
        cov = C.LowRankCovariance(factor=params["factor"], diagonal_part=params["diagonal_part"])

    def everything(mean, key):
        post = C.project_gaussian(C.Gaussian(mean=mean, cov=cov), constraint)
        return post.variance(), post.sample(key, 3), post.cov.matmul(jnp.ones((n, 1)))

    jaxpr = jax.make_jaxpr(everything)(jnp.zeros(n), jax.random.key(0))
    shapes = [v.aval.shape for eqn in jaxpr.eqns for v in eqn.outvars]
    assert not [s for s in shapes if sum(d >= n for d in s) >= 2]


@pytest.mark.parametrize("kind", ["diagonal", "low_rank"])
def test_weighted_sum_projection_needs_no_m_by_m_matrix(kind):
    (m, q), r, rng = (16, 32), 4, np.random.default_rng(17)
    n = m * q
    constraint = C.conservation_constraint(np.full(q, 1 / q), rng.normal(size=m))
    cov = C.DiagonalCovariance(variance=jnp.ones(n))
    if kind == "low_rank":
        factor = jnp.asarray(rng.normal(size=(n, r)), jnp.float32)
        cov = C.LowRankCovariance(factor=factor, diagonal_part=jnp.ones(n))

    def everything(mean, key):
        post = C.project_gaussian(C.Gaussian(mean=mean, cov=cov), constraint)
        return post.variance(), post.sample(key, 3), post.cov.matmul(jnp.ones((n, 1)))

    jaxpr = jax.make_jaxpr(jax.value_and_grad(lambda mu, k: jnp.sum(everything(mu, k)[0])))
    shapes = [v.aval.shape for e in jaxpr(jnp.zeros(n), jax.random.key(0)).eqns for v in e.outvars]
    # Woodbury: nothing bigger than the factor (n x r), and no m x m Gram matrix.
    assert max(int(np.prod(s)) for s in shapes) <= n * r
    assert not [s for s in shapes if list(s).count(m) >= 2]


@pytest.mark.parametrize("kind", ["diagonal", "low_rank"])
def test_weighted_sum_projection_matches_the_dense_path_in_float32(kind):
    """The structured (Woodbury) path against the generic dense-A (Cholesky) one at 32 x 64."""
    (nt, nx), r, rng = (32, 64), 8, np.random.default_rng(18)
    n = nt * nx
    structured = C.conservation_constraint(np.full(nx, 1 / nx), rng.normal(size=nt))
    dense = C.LinearConstraint(matrix=structured.matrix, target=structured.target)
    mean = jnp.asarray(rng.normal(size=n), jnp.float32)
    params = {
        "d": jnp.asarray(rng.uniform(0.01, 1.0, size=n), jnp.float32),
        "f": jnp.asarray(0.1 * rng.normal(size=(n, r)), jnp.float32),
    }
    y = jnp.asarray(rng.normal(size=n), jnp.float32)

    def loss(params, constraint):
        cov = C.DiagonalCovariance(variance=params["d"])
        if kind == "low_rank":
            cov = C.LowRankCovariance(factor=params["f"], diagonal_part=params["d"])
        post = C.project_gaussian(C.Gaussian(mean=mean, cov=cov), constraint)
        variance = post.variance()
        return jnp.sum((post.mean - y) ** 2 / variance + jnp.log(variance)), (post.mean, variance)

    grad = jax.jit(jax.grad(loss, has_aux=True))
    (g_s, (mean_s, var_s)), (g_d, (mean_d, var_d)) = grad(params, structured), grad(params, dense)
    # float32 (eps 1.2e-7) through sums of 64 terms and m x m / r x r solves with condition
    # numbers below 1e3: agreement to 1e-5 relative. Measured: both paths within 1.3e-6 of
    # float64, and within 4e-7 of each other.
    np.testing.assert_allclose(mean_s, mean_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var_s, var_d, rtol=1e-5, atol=1e-7)
    for name in params:
        np.testing.assert_allclose(
            g_s[name], g_d[name], rtol=1e-4, atol=1e-4 * float(jnp.abs(g_d[name]).max())
        )
    assert float(jnp.abs(structured.residual(mean_s)).max()) < 1e-5


def test_gaussian_projection_batches_by_vmap():
    constraint = pde_constraint(np.random.default_rng(16))
    batch = C.Gaussian(mean=jnp.zeros((3, N)), cov=C.DiagonalCovariance(variance=jnp.ones((3, N))))
    post = jax.jit(jax.vmap(C.project_gaussian, in_axes=(0, None)))(batch, constraint)
    assert post.mean.shape == (3, N) and jax.vmap(C.Gaussian.variance)(post).shape == (3, N)
    # float32 round-off, as for the Euclidean projection; measured 1e-7.
    assert float(jnp.max(jnp.abs(jax.vmap(constraint.residual)(post.mean)))) < 1e-5


# --- nonlinear projection ----------------------------------------------------------------------

SPHERE = C.NonlinearConstraint(fn=lambda u, _: jnp.sum(u**2, keepdims=True) - 1.0)


def project_onto_sphere(z: jax.Array, mode: str) -> tuple[jax.Array, jax.Array]:
    # Stated budget: 8 iterations from the starts below (measured: converged after 6 to 8).
    u = C.project_gauss_newton(SPHERE, z, max_steps=8, differentiation=mode)
    return u, u


# Module level, so that the parametrized cases share one compilation per mode.
sphere_jacobian = jax.jit(jax.jacrev(project_onto_sphere, has_aux=True), static_argnames="mode")


@pytest.mark.parametrize("radius", [0.3, 2.0, 5.0])
def test_sphere_projection_and_its_jacobian_are_exact(x64, radius):
    direction = np.random.default_rng(20).normal(size=5)
    z = jnp.asarray(radius * direction / np.linalg.norm(direction))
    zhat = np.asarray(z) / radius
    # d(z / |z|)/dz = (I - zhat zhat^T) / |z|: a tangent map without the constraint's curvature
    # would miss the 1 / |z|.
    expected = (np.eye(5) - np.outer(zhat, zhat)) / radius
    for mode in ["implicit", "unrolled"]:
        jacobian, projected = sphere_jacobian(z, mode=mode)
        np.testing.assert_allclose(projected, zhat, atol=ROUND_OFF)
        np.testing.assert_allclose(jacobian, expected, atol=ROUND_OFF)


def mass_and_energy(u: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """Nonlinear conservation on a periodic grid: the mean and the mean square of u are fixed."""
    return jnp.stack([jnp.mean(u) - params["mass"], jnp.mean(u**2) - params["energy"]])


def conservation_problem(rng: np.random.Generator):
    params = {"mass": jnp.asarray(0.3), "energy": jnp.asarray(0.8)}
    x = np.arange(32) / 32
    z = 0.3 + np.sin(2 * np.pi * x) + 0.4 * np.cos(6 * np.pi * x) + 0.2 * rng.normal(size=32)
    return C.NonlinearConstraint(fn=mass_and_energy, params=params), jnp.asarray(z)


def test_nonlinear_conservation_projection_reaches_the_kkt_point(x64):
    constraint, z = conservation_problem(np.random.default_rng(21))
    # Stated budget: 8 iterations from this start (|h(z)| ~ 0.1, multipliers ~ 2: a tangent step
    # without the curvature would not converge). Measured: converged after 6.
    u = C.project_gauss_newton(constraint, z, max_steps=8)
    assert float(jnp.max(jnp.abs(constraint.residual(u)))) < ROUND_OFF
    # Stationarity: u - z lies in the row space of J(u), i.e. no feasible direction is closer.
    jac = np.asarray(constraint.jacobian(u))
    np.testing.assert_allclose(null_space(jac).T @ np.asarray(u - z), 0, atol=ROUND_OFF)


def test_nonlinear_projection_implicit_and_unrolled_gradients_agree(x64):
    constraint, z = conservation_problem(np.random.default_rng(22))
    weights = jnp.asarray(np.random.default_rng(23).normal(size=z.shape))

    def loss(z, params, mode):
        projected = C.project_gauss_newton(
            C.NonlinearConstraint(fn=mass_and_energy, params=params), z, differentiation=mode
        )
        return weights @ jnp.sin(projected)

    # One compilation per mode serves the values and the gradients.
    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnames="mode")
    implicit = value_and_grad(z, constraint.params, "implicit")[1]
    unrolled = value_and_grad(z, constraint.params, "unrolled")[1]
    # Both differentiate the converged map exactly (the unrolled derivative converges with the
    # iterates, quadratically); what is left is round-off in the KKT solves (measured 7e-16).
    np.testing.assert_allclose(implicit[0], unrolled[0], rtol=1e-10, atol=ROUND_OFF)
    for name in ["mass", "energy"]:
        np.testing.assert_allclose(implicit[1][name], unrolled[1][name], rtol=1e-10)
    # Central differences with step 1e-5: truncation ~ h^2 |f'''| plus round-off ~ eps |f| / h,
    # about 1e-10 (measured 1e-10), against rtol 1e-7.
    h = 1e-5
    direction = jnp.asarray(np.random.default_rng(24).normal(size=z.shape))
    steps = {"z": (direction, {}), "mass": (0.0, {"mass": 1.0}), "energy": (0.0, {"energy": 1.0})}
    for name, (dz, dparams) in steps.items():
        bumped = [
            (
                z + s * h * dz,
                {k: v + s * h * dparams.get(k, 0.0) for k, v in constraint.params.items()},
            )
            for s in (1, -1)
        ]
        values = [value_and_grad(*args, "implicit")[0] for args in bumped]
        numeric = (values[0] - values[1]) / (2 * h)
        analytic = implicit[0] @ direction if name == "z" else implicit[1][name]
        assert np.isclose(analytic, numeric, rtol=1e-7), name


def test_nonlinear_projection_jits_and_batches():
    constraint, _ = conservation_problem(np.random.default_rng(24))
    rng = np.random.default_rng(25)
    z = jnp.asarray(0.3 + rng.normal(size=(4, 32)), jnp.float32)
    project = jax.jit(jax.vmap(C.project_gauss_newton, in_axes=(None, 0)))
    u = project(constraint, z)
    residuals = jax.vmap(constraint.residual)(u)
    # The default tolerance is 100 float32 eps (1.2e-5); measured 2e-7.
    assert float(jnp.max(jnp.abs(residuals))) < 1.2e-5


def lowrank_prior(z: jax.Array, rng: np.random.Generator) -> C.Gaussian:
    factor = jnp.asarray(0.1 * rng.normal(size=(z.size, 3)))
    variance = jnp.asarray(rng.uniform(0.01, 0.05, size=z.size))
    return C.Gaussian(mean=z, cov=C.LowRankCovariance(factor=factor, diagonal_part=variance))


def test_nonlinear_dppl_is_the_delta_method_through_the_projection(x64):
    constraint, z = conservation_problem(np.random.default_rng(26))
    prior = lowrank_prior(z, np.random.default_rng(27))
    post = C.project_gaussian_nonlinear(prior, constraint)
    assert float(jnp.max(jnp.abs(constraint.residual(post.mean)))) < ROUND_OFF
    # The Jacobian from the KKT system at the solution equals reverse mode through the solver
    # (CG to 100 eps per column).
    jacobian = jax.jacrev(lambda v: C.project_gauss_newton(constraint, v))(z)
    np.testing.assert_allclose(post.cov.jacobian, jacobian, atol=1e-12)
    expected = jacobian @ prior.cov.dense() @ jacobian.T
    np.testing.assert_allclose(post.cov.dense(), expected, atol=ROUND_OFF)
    np.testing.assert_allclose(post.variance(), np.diag(expected), atol=ROUND_OFF)
    # No variance along the constraint's normals at the projected mean; positive semidefinite.
    normals = np.asarray(constraint.jacobian(post.mean))
    np.testing.assert_allclose(normals @ post.cov.dense() @ normals.T, 0, atol=ROUND_OFF)
    assert np.linalg.eigvalsh(np.asarray(post.cov.dense())).min() > -ROUND_OFF
    # Inference draws are projected one by one: each is feasible.
    draws = C.sample_projected(prior, constraint, jax.random.key(0), 4)
    assert float(jnp.max(jnp.abs(jax.vmap(constraint.residual)(draws)))) < ROUND_OFF


def test_nonlinear_dppl_of_a_linear_constraint_with_isotropic_prior_is_conditioning(x64):
    # With Sigma = s^2 I the Euclidean and the variance-weighted projections coincide.
    rng = np.random.default_rng(28)
    z = jnp.asarray(rng.normal(size=N))
    prior = C.Gaussian(mean=z, cov=C.DiagonalCovariance(variance=jnp.full(N, 0.3)))
    linear = pde_constraint(rng)
    nonlinear = C.NonlinearConstraint(fn=lambda u, _: linear.residual(u))
    conditioned = C.project_gaussian(prior, linear)
    post = C.project_gaussian_nonlinear(prior, nonlinear)
    np.testing.assert_allclose(post.mean, conditioned.mean, atol=ROUND_OFF)
    np.testing.assert_allclose(post.cov.dense(), conditioned.cov.dense(), atol=ROUND_OFF)


def test_nonlinear_dppl_gradients_match_finite_differences(x64):
    constraint, z = conservation_problem(np.random.default_rng(29))
    prior = lowrank_prior(z, np.random.default_rng(30))
    weights = jnp.asarray(np.random.default_rng(31).normal(size=z.shape))

    def loss(mean, variance):
        cov = prior.cov.replace(diagonal_part=variance)
        post = C.project_gaussian_nonlinear(C.Gaussian(mean=mean, cov=cov), constraint)
        return weights @ post.mean + jnp.sum(jnp.sqrt(post.variance()))

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    variance = prior.cov.diagonal_part
    _, (g_mean, g_var) = value_and_grad(z, variance)
    rng = np.random.default_rng(32)
    # Central differences, step 1e-5: truncation and round-off ~1e-10 against rtol 1e-6 (the CG
    # solves stop at 100 eps).
    h = 1e-5
    for d_mean, d_var in [(rng.normal(size=z.shape), 0.0), (0.0, rng.uniform(size=z.shape))]:
        plus = value_and_grad(z + h * d_mean, variance + h * d_var)[0]
        minus = value_and_grad(z - h * d_mean, variance - h * d_var)[0]
        analytic = g_mean @ jnp.asarray(d_mean * np.ones(z.shape)) + g_var @ jnp.asarray(
            d_var * np.ones(z.shape)
        )
        assert np.isclose(analytic, (plus - minus) / (2 * h), rtol=1e-6)


@pytest.mark.parametrize("m", [1, 10])  # m <= r: direct m x m gram; m > r: Woodbury
def test_projected_mean_and_draws_stay_feasible_in_float32_when_the_factor_dominates_along_a(m):
    # A head trained through the projection may put most of its variance along the conserved
    # directions (here std 3 against 3e-3 elsewhere, as trained Stefan heads do) and drift its
    # mean there; S = A Sigma A^T is then too ill-conditioned for float32 (without the final
    # orthogonal correction the residual was 11 for m = 10), yet the mean and every draw must
    # satisfy A u = b. (At std 30 the oblique mean itself is lost in float32 for m = 10.)
    rng = np.random.default_rng(33)
    n, r = 100, 4
    factor = 0.01 * rng.normal(size=(n, r))
    factor[:, 0] += 3.0
    prior = C.Gaussian(
        mean=jnp.asarray(rng.normal(size=n) + 5.0, jnp.float32),
        cov=C.LowRankCovariance(
            factor=jnp.asarray(factor, jnp.float32),
            diagonal_part=jnp.full(n, 1e-5, jnp.float32),
        ),
    )
    # m channels of n / m points each (channels last): every row averages one channel.
    constraint = C.weighted_sum_constraint(
        np.full((n // m, m), m / n), np.linspace(0, 1, m), axis=0
    )
    constraint = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), constraint)
    post = C.project_gaussian(prior, constraint)
    # float32 round-off of means of O(10) values.
    assert float(jnp.abs(constraint.residual(post.mean)).max()) < 1e-5
    draws = post.sample(jax.random.key(0), 16)
    assert float(jnp.abs(jax.vmap(constraint.residual)(draws)).max()) < 1e-5
