"""Nonlinear equality constraints ``h(u) = 0`` and their Gauss-Newton projection.

The projection is the closest feasible point, ``u* = argmin ||u - z||^2 s.t. h(u) = 0``: the
solution of the KKT conditions ``u - z + J^T lam = 0, h(u) = 0`` (J = dh/du, of full row rank).
With ``lam = (J J^T)^{-1} J (z - u)``, ``H = I + sum_i lam_i hess h_i`` (the Lagrangian's Hessian)
and ``P = I - J^T (J J^T)^{-1} J`` (the tangent projector), all at the iterate u, one iteration is

    t     in null(J) with  P H t = P (z - u)                  (tangential Newton step towards z)
    v     = u + t
    u_new = v - alpha J^T (J J^T + eps I)^{-1} h(v)           (PCFM's Gauss-Newton step, eps 1e-6)

where alpha is the largest of 1, 1/2, ... giving Armijo decrease of ||h||^2 (undamped steps
diverge from far starts) and ``P H t = P r`` is solved by conjugate gradients with Hessian-vector
products. On the first iteration (u = z) t = 0 and the step is exactly PCFM's. The tangential step
makes the fixed points the KKT points rather than any point of the manifold; it must carry the
curvature: with H replaced by I the tangential error contracts only by ``||sum_i lam_i hess h_i||``
per step, and diverges once that reaches 1 (e.g. projecting onto the unit sphere from radius 2).
Near the solution the iteration converges quadratically.

Gradients: by the implicit function theorem on the KKT system (the curvature included: the tangent
map is ``H^{-1} - H^{-1} J^T (J H^{-1} J^T)^{-1} J H^{-1}``, applied by the same tangent-space
CG), or by reverse mode through all `max_steps` iterations (unrolled).
"""

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.constraints._gaussian import Covariance, Gaussian

PyTree = Any


@flax.struct.dataclass
class NonlinearConstraint:
    """The equality ``fn(u, params) = 0`` with m scalar equations.

    Attributes:
        fn: ``fn(u, params) -> (m,)``, u of the field's shape; smooth. Static (hashed by identity).
        params: pytree of float arrays the constraint depends on (e.g. a target mass); gradients
            flow to them through the projection. None when there are none.
    """

    fn: Callable[[Array, PyTree], Array] = flax.struct.field(pytree_node=False)
    params: PyTree = None

    def residual(self, u: Float[Array, "*shape"]) -> Float[Array, " m"]:
        """h(u)."""
        return self.fn(u, self.params)

    def jacobian(self, u: Float[Array, "*shape"]) -> Float[Array, "m n"]:
        """dh/du with respect to the flattened u, shape (m, u.size).

        Reverse mode (m vector-Jacobian products) when m < n, else forward mode.
        """
        return _jacobian(_flat_fn(self.fn, u.shape), u.reshape(-1), self.params)


def _flat_fn(fn: Callable, shape: tuple[int, ...]) -> Callable:
    return lambda flat, params: fn(flat.reshape(shape), params)


def _jacobian(fn: Callable, u: Array, params: PyTree) -> Array:
    m = jax.eval_shape(fn, u, params).shape[0]
    jac = jax.jacrev if m < u.size else jax.jacfwd
    return jac(fn)(u, params)


class _Options(NamedTuple):
    eps: float
    tol: float
    max_steps: int
    n_backtrack: int
    cg_max_steps: int


class _Kkt(NamedTuple):
    """The KKT system of the projection linearised at u, with least-squares multipliers."""

    jac: Array
    gram: tuple[Array, bool]
    lam: Array
    hessian: Callable[[Array], Array]

    def tangent(self, v: Array) -> Array:
        """``P v``, the component of v in null(J)."""
        return v - self.jac.T @ cho_solve(self.gram, self.jac @ v)

    def solve_tangent(self, rhs: Array, opts: _Options, atol: float = 0.0) -> Array:
        """x in null(J) with ``P H x = P rhs``, by CG on ``P H P + (I - P)``.

        H is positive definite on null(J) at a strict local minimum; the identity on range(J^T)
        makes the operator non-singular, so round-off there cannot blow CG up.
        """

        def operator(v: Array) -> Array:
            tangent = self.tangent(v)
            return self.tangent(self.hessian(tangent)) + (v - tangent)

        x, _ = jax.scipy.sparse.linalg.cg(
            operator, self.tangent(rhs), tol=opts.tol, atol=atol, maxiter=opts.cg_max_steps
        )
        return self.tangent(x)


def _kkt(fn: Callable, z: Array, params: PyTree, u: Array) -> _Kkt:
    jac = _jacobian(fn, u, params)
    # Exact (unregularised) Gram matrix: a regularised projector would move the KKT points.
    gram = (jnp.linalg.cholesky(jac @ jac.T), True)
    lam = cho_solve(gram, jac @ (z - u))

    def hessian(v: Array) -> Array:  # H v, H = I + sum_i lam_i hess h_i
        grad = jax.grad(lambda w: lam @ fn(w, params))
        return v + jax.jvp(grad, (u,), (v,))[1]

    return _Kkt(jac, gram, lam, hessian)


def _step(fn: Callable, opts: _Options, z: Array, params: PyTree, u: Array) -> tuple[Array, Array]:
    """One iteration from u; returns the new iterate and the error ``max(|h(u)|, |P (z - u)|)``."""
    kkt = _kkt(fn, z, params, u)
    v = u + kkt.solve_tangent(z - u, opts, atol=0.01 * opts.tol)
    h_v = fn(v, params)
    eye = jnp.eye(h_v.size, dtype=h_v.dtype)
    gram_eps = jnp.linalg.cholesky(kkt.jac @ kkt.jac.T + opts.eps * eye)
    normal = kkt.jac.T @ cho_solve((gram_eps, True), h_v)
    alphas = 0.5 ** jnp.arange(opts.n_backtrack, dtype=u.dtype)
    merit = jax.vmap(lambda a: jnp.sum(fn(v - a * normal, params) ** 2))(alphas)
    accept = merit <= (1 - 1e-4 * alphas) * jnp.sum(h_v**2)
    alpha = alphas[jnp.where(jnp.any(accept), jnp.argmax(accept), opts.n_backtrack - 1)]
    stationarity = jnp.max(jnp.abs(kkt.tangent(z - u)))
    err = jnp.maximum(jnp.max(jnp.abs(fn(u, params))), stationarity)
    return v - alpha * normal, err


def _solve(fn: Callable, opts: _Options, z: Array, params: PyTree) -> Array:
    def cond(state):
        _, err, k = state
        return (err > opts.tol) & (k < opts.max_steps)

    def body(state):
        u, _, k = state
        u, err = _step(fn, opts, z, params, u)
        return u, err, k + 1

    init = (z, jnp.asarray(jnp.inf, z.dtype), jnp.asarray(0))
    return jax.lax.while_loop(cond, body, init)[0]


def _solve_unrolled(fn: Callable, opts: _Options, z: Array, params: PyTree) -> Array:
    def body(u, _):
        return _step(fn, opts, z, params, u)[0], None

    return jax.lax.scan(body, z, None, length=opts.max_steps)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve_implicit(fn: Callable, opts: _Options, z: Array, params: PyTree) -> Array:
    return _solve(fn, opts, z, params)


def _solve_implicit_fwd(fn, opts, z, params):
    u = _solve(fn, opts, z, params)
    return u, (u, z, params)


def _solve_implicit_bwd(fn, opts, residuals, u_bar):
    u, z, params = residuals
    kkt = _kkt(fn, z, params, u)
    # [[H, J^T], [J, 0]] [x; y] = [u_bar; 0]; the cotangent of z is x (the KKT residual's
    # derivative in z is -I), that of the params follows from the residual's derivative in them.
    x = kkt.solve_tangent(u_bar, opts)
    y = cho_solve(kkt.gram, kkt.jac @ (u_bar - kkt.hessian(x)))
    if not jax.tree.leaves(params):
        return x, params

    def kkt_in_params(p):
        jx = jax.jvp(lambda w: fn(w, p), (u,), (x,))[1]
        return kkt.lam @ jx + y @ fn(u, p)

    return x, jax.tree.map(jnp.negative, jax.grad(kkt_in_params)(params))


_solve_implicit.defvjp(_solve_implicit_fwd, _solve_implicit_bwd)


@functools.partial(
    jax.jit,
    static_argnames=("eps", "tol", "max_steps", "n_backtrack", "cg_max_steps", "differentiation"),
)
def project_gauss_newton(
    constraint: NonlinearConstraint,
    z: Float[Array, "*shape"],
    *,
    eps: float = 1e-6,
    tol: float | None = None,
    max_steps: int = 50,
    n_backtrack: int = 8,
    cg_max_steps: int = 100,
    differentiation: Literal["implicit", "unrolled"] = "implicit",
) -> Float[Array, "*shape"]:
    """The closest point to z on ``h(u) = 0`` by damped Gauss-Newton (see the module docstring).

    ``u* = argmin ||u - z||_2 s.t. h(u) = 0``, a strict local minimum (z nearer to the manifold
    than its curvature radius, so that H is positive definite on null(J)). Stops once
    ``max(||h(u)||_inf, ||P (z - u)||_inf) <= tol``, or after `max_steps` iterations. For a
    batch, ``jax.vmap(project_gauss_newton, in_axes=(None, 0))``. Differentiable in z and
    `constraint.params` by reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``).

    Args:
        constraint: the equality, with J of full row rank near the solution.
        z: the point to project, any shape (`constraint.fn` receives this shape).
        eps: Tikhonov term of the Gauss-Newton normal equations (PCFM's 1e-6).
        tol: absolute tolerance; default 100 machine epsilons of z's dtype, so scale h to order 1.
        max_steps: iteration cap; with ``differentiation="unrolled"`` exactly this many are run.
        n_backtrack: step lengths tried, 1, 1/2, ..., 2^(1 - n_backtrack).
        cg_max_steps: conjugate-gradient cap per tangential solve (forward and implicit backward).
        differentiation: "implicit" (KKT implicit function theorem; memory independent of the
            iteration count) or "unrolled" (reverse mode through every iteration).
    Returns:
        The projected field, shape of z.
    """
    solvers = {"implicit": _solve_implicit, "unrolled": _solve_unrolled}
    if differentiation not in solvers:
        raise ValueError(f"differentiation must be in {sorted(solvers)}, got {differentiation!r}")
    tol = 100 * float(jnp.finfo(z.dtype).eps) if tol is None else tol
    opts = _Options(eps, tol, max_steps, n_backtrack, cg_max_steps)
    fn = _flat_fn(constraint.fn, z.shape)
    u = solvers[differentiation](fn, opts, z.reshape(-1), constraint.params)
    return u.reshape(z.shape)


@functools.partial(jax.jit, static_argnames=("tol", "cg_max_steps"))
def projection_jacobian(
    constraint: NonlinearConstraint,
    z: Float[Array, "*shape"],
    u: Float[Array, "*shape"],
    *,
    tol: float | None = None,
    cg_max_steps: int = 100,
) -> Float[Array, "n n"]:
    """``dT/dz`` of the Euclidean projection T at z, given its solution ``u = T(z)``, dense.

    The KKT tangent map ``H^{-1} - H^{-1} J^T (J H^{-1} J^T)^{-1} J H^{-1}`` (the constraint's
    curvature included through H; symmetric), one tangent-space CG solve per column of the
    flattened field, so for small n (1D fields). Built from plain JAX operations of u and z:
    differentiable again by reverse mode, unlike a Jacobian taken through the solver.

    Args:
        constraint: the equality whose projection T is.
        z: the projected point, any shape.
        u: `project_gauss_newton(constraint, z)`, the shape of z.
        tol: CG tolerance; default 100 machine epsilons of z's dtype.
        cg_max_steps: CG cap per column.
    Returns:
        The Jacobian over the flattened field, shape (n, n), n = z.size.
    """
    tol = 100 * float(jnp.finfo(z.dtype).eps) if tol is None else tol
    opts = _Options(0.0, tol, 0, 0, cg_max_steps)
    kkt = _kkt(_flat_fn(constraint.fn, z.shape), z.reshape(-1), constraint.params, u.reshape(-1))
    return jax.vmap(lambda e: kkt.solve_tangent(e, opts))(jnp.eye(z.size, dtype=z.dtype))


@flax.struct.dataclass
class LinearizedCovariance(Covariance):
    """``M Sigma M^T``: a prior covariance pushed through a map with Jacobian M (delta method).

    Attributes:
        prior: Sigma, any `Covariance` of size n.
        jacobian: M, shape (n, n).
    """

    prior: Covariance
    jacobian: Any

    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        return self.jacobian @ self.prior.matmul(self.jacobian.T @ x)

    def diagonal(self) -> Float[Array, " n"]:
        return jnp.sum(self.jacobian * self.prior.matmul(self.jacobian.T).T, axis=1)

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        return self.prior.sample(key, n_samples) @ self.jacobian.T

    def dense(self) -> Float[Array, "n n"]:
        return self.matmul(jnp.eye(self.jacobian.shape[0], dtype=self.jacobian.dtype))


def project_gaussian_nonlinear(
    gaussian: Gaussian, constraint: NonlinearConstraint, **newton: Any
) -> Gaussian:
    """ProbHardE2E's DPPL for ``h(u) = 0`` by the delta method: ``N(T(mu), M Sigma M^T)``.

    T is the Euclidean projection (`project_gauss_newton`, the paper's orthogonal "-Or" variant;
    exact feasibility of the mean) and ``M = dT/dz`` at mu with the constraint's curvature
    (`projection_jacobian`). Exact for linear h; first order otherwise. Differentiable in the
    mean and the covariance's parameters (the mean by the KKT implicit gradient). Forms M
    densely: for fields of up to a few hundred unknowns. At inference, project each prior draw
    with `project_gauss_newton` for exactly feasible samples.

    Args:
        gaussian: prior with mean of shape (n,) and any `Covariance`; ``constraint.fn`` receives
            the mean's shape.
        constraint: the equality, J of full row rank near the projected mean.
        **newton: options of `project_gauss_newton` (tol, max_steps, ...).
    Returns:
        The projected Gaussian; its covariance is a `LinearizedCovariance`.
    """
    mean = project_gauss_newton(constraint, gaussian.mean, **newton)
    options = {k: newton[k] for k in ("tol", "cg_max_steps") if k in newton}
    jacobian = projection_jacobian(constraint, gaussian.mean, mean, **options)
    return Gaussian(mean=mean, cov=LinearizedCovariance(prior=gaussian.cov, jacobian=jacobian))


def sample_projected(
    gaussian: Gaussian,
    constraint: NonlinearConstraint,
    key: PRNGKeyArray,
    n_samples: int,
    **newton: Any,
) -> Float[Array, "s n"]:
    """Draws of the prior, each projected exactly onto ``h(u) = 0`` (ProbHardE2E's inference).

    Every draw is feasible to the Newton tolerance; to first order they are distributed as
    `project_gaussian_nonlinear` of the prior.

    Args:
        gaussian: the unprojected prior, mean of shape (n,).
        constraint: the equality.
        key: random key.
        n_samples: number of draws.
        **newton: options of `project_gauss_newton`.
    Returns:
        The projected draws, shape (n_samples, n).
    """
    draws = gaussian.sample(key, n_samples)
    return jax.vmap(lambda z: project_gauss_newton(constraint, z, **newton))(draws)
