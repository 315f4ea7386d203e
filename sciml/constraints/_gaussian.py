"""Structured Gaussian covariances and the variance-weighted projection (ProbHardE2E's DPPL).

Conditioning ``u ~ N(mu, Sigma)`` on ``A u = b`` is the oblique ("-Ob") projection with metric
``Sigma^{-1}``. With C = Sigma A^T (n x m), S = A Sigma A^T = L L^T (m x m):

    mu'    = mu - C S^{-1} (A mu - b)
    Sigma' = Sigma - C S^{-1} C^T = Sigma - W W^T,   W = C L^{-T}

Sigma' is kept as the prior structure plus the rank-m correction W W^T, so diagonal and
low-rank-plus-diagonal priors never form an n x n matrix: a covariance product costs O(n (r + m)),
the projected variances O(n m + m^3), and a sample is a prior sample pushed through the same update.
"""

import abc
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.constraints._linear import LinearConstraint


class Covariance(abc.ABC):
    """A symmetric positive semi-definite n x n matrix known through its structure."""

    @abc.abstractmethod
    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        """``Sigma x``."""

    @abc.abstractmethod
    def diagonal(self) -> Float[Array, " n"]:
        """The marginal variances ``diag(Sigma)``."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        """`n_samples` independent draws from ``N(0, Sigma)``."""

    @abc.abstractmethod
    def dense(self) -> Float[Array, "n n"]:
        """Sigma as a dense matrix: for small n and tests only."""


# Leaves below are typed loosely: pytree utilities rebuild the classes with placeholder leaves.


@flax.struct.dataclass
class DiagonalCovariance(Covariance):
    """``Sigma = diag(variance)``.

    Attributes:
        variance: shape (n,), non-negative.
    """

    variance: Any

    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        return self.variance[:, None] * x

    def diagonal(self) -> Float[Array, " n"]:
        return self.variance

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        noise = jax.random.normal(key, (n_samples, self.variance.size), self.variance.dtype)
        return jnp.sqrt(self.variance)[None, :] * noise

    def dense(self) -> Float[Array, "n n"]:
        return jnp.diag(self.variance)


@flax.struct.dataclass
class LowRankCovariance(Covariance):
    """``Sigma = F F^T + diag(d)``, low rank plus diagonal.

    Attributes:
        factor: F, shape (n, r).
        diagonal_part: d, shape (n,), non-negative.
    """

    factor: Any
    diagonal_part: Any

    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        return self.factor @ (self.factor.T @ x) + self.diagonal_part[:, None] * x

    def diagonal(self) -> Float[Array, " n"]:
        return jnp.sum(self.factor**2, axis=1) + self.diagonal_part

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        n, r = self.factor.shape
        k_low, k_diag = jax.random.split(key)
        low = jax.random.normal(k_low, (n_samples, r), self.factor.dtype) @ self.factor.T
        diag = jax.random.normal(k_diag, (n_samples, n), self.factor.dtype)
        return low + jnp.sqrt(self.diagonal_part)[None, :] * diag

    def dense(self) -> Float[Array, "n n"]:
        return self.factor @ self.factor.T + jnp.diag(self.diagonal_part)


@flax.struct.dataclass
class FullCovariance(Covariance):
    """A dense covariance matrix; sampling needs it positive definite (Cholesky).

    Attributes:
        matrix: shape (n, n), symmetric positive definite.
    """

    matrix: Any

    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        return self.matrix @ x

    def diagonal(self) -> Float[Array, " n"]:
        return jnp.diagonal(self.matrix)

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        chol = jnp.linalg.cholesky(self.matrix)
        noise = jax.random.normal(key, (n_samples, self.matrix.shape[0]), self.matrix.dtype)
        return noise @ chol.T

    def dense(self) -> Float[Array, "n n"]:
        return self.matrix


@flax.struct.dataclass
class ProjectedCovariance(Covariance):
    """``Sigma' = Sigma - C S^{-1} C^T``: a prior covariance conditioned on ``A u = b``.

    Built by `project_gaussian`. It is itself a `Covariance`, so projections chain (conditioning
    on one constraint set, then another, equals conditioning on both).

    Attributes:
        prior: Sigma, any `Covariance`.
        matrix: A, shape (m, n).
        cross: C = Sigma A^T, shape (n, m).
        chol: lower Cholesky factor L of ``S = A Sigma A^T + noise_variance I``, shape (m, m).
        noise_variance: observation-noise variance of a soft (ProbConserv) constraint; 0 is hard.
    """

    prior: Covariance
    matrix: Any
    cross: Any
    chol: Any
    noise_variance: float = flax.struct.field(pytree_node=False, default=0.0)

    def correction_factor(self) -> Float[Array, "n m"]:
        """W = C L^{-T}, so that ``Sigma' = Sigma - W W^T``."""
        # C @ L^-T through the m x m inverse: one GEMM instead of a triangular solve with n
        # right-hand sides (1.5-2x faster forward + backward on CPU at n = 4096, m = 64).
        eye = jnp.eye(self.chol.shape[0], dtype=self.chol.dtype)
        return self.cross @ solve_triangular(self.chol, eye, lower=True).T

    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        return self.prior.matmul(x) - self.cross @ cho_solve((self.chol, True), self.cross.T @ x)

    def diagonal(self) -> Float[Array, " n"]:
        return self.prior.diagonal() - jnp.sum(self.correction_factor() ** 2, axis=1)

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        k_prior, k_noise = jax.random.split(key)
        prior = self.prior.sample(k_prior, n_samples)
        residual = prior @ self.matrix.T
        if self.noise_variance > 0:
            noise = jax.random.normal(k_noise, residual.shape, residual.dtype)
            residual = residual + jnp.sqrt(self.noise_variance) * noise
        return prior - cho_solve((self.chol, True), residual.T).T @ self.cross.T

    def dense(self) -> Float[Array, "n n"]:
        w = self.correction_factor()
        return self.prior.dense() - w @ w.T


@flax.struct.dataclass
class Gaussian:
    """``N(mean, cov)`` over a flattened field of n unknowns.

    Attributes:
        mean: shape (n,).
        cov: a `Covariance` of size n.
    """

    mean: Any
    cov: Covariance

    def variance(self) -> Float[Array, " n"]:
        """Marginal variances ``diag(cov)``."""
        return self.cov.diagonal()

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        """`n_samples` independent draws, shape (n_samples, n)."""
        return self.mean[None, :] + self.cov.sample(key, n_samples)


@functools.partial(jax.jit, static_argnames=("noise_variance",))
def project_gaussian(
    gaussian: Gaussian, constraint: LinearConstraint, *, noise_variance: float = 0.0
) -> Gaussian:
    """Condition a Gaussian on ``A u = b``: the variance-weighted (DPPL, "-Ob") projection.

    ``mu' = mu - Sigma A^T (A Sigma A^T)^{-1} (A mu - b)``,
    ``Sigma' = Sigma - Sigma A^T (A Sigma A^T)^{-1} A Sigma``.
    The mean and every draw of the result satisfy ``A u = b`` to round-off, and
    ``A Sigma' A^T = 0``. With ``noise_variance = s^2 > 0`` the constraint is an observation
    ``b = A u + N(0, s^2 I)`` instead (ProbConserv's soft update; ``s -> 0`` is the hard limit).

    Args:
        gaussian: prior with mean of shape (n,) and any `Covariance`.
        constraint: full-row-rank equality; A Sigma A^T must be positive definite (no constrained
            direction may have zero prior variance unless `noise_variance` > 0).
        noise_variance: keyword-only; 0 for the hard constraint.
    Returns:
        The conditioned Gaussian; its covariance is a `ProjectedCovariance`. Differentiable in
        the mean, the covariance's parameters and b. For a batch of predictions,
        ``jax.vmap(project_gaussian, in_axes=(0, None))``.

    Example:
        >>> prior = Gaussian(mean=mu, cov=DiagonalCovariance(variance=var))
        >>> post = project_gaussian(prior, conservation_constraint(w, totals))
        >>> loss = scoring.crps_gaussian(post.mean, post.variance(), y, reduction="sum")
    """
    a = constraint.matrix
    cross = gaussian.cov.matmul(a.T)
    gram = a @ cross
    gram = (gram + gram.T) / 2 + noise_variance * jnp.eye(a.shape[0], dtype=gram.dtype)
    chol = jnp.linalg.cholesky(gram)
    mean = gaussian.mean - cross @ cho_solve((chol, True), constraint.residual(gaussian.mean))
    cov = ProjectedCovariance(
        prior=gaussian.cov, matrix=a, cross=cross, chol=chol, noise_variance=noise_variance
    )
    return Gaussian(mean=mean, cov=cov)
