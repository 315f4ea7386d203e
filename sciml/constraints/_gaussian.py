"""Structured Gaussian covariances and the variance-weighted projection (ProbHardE2E's DPPL).

Conditioning ``u ~ N(mu, Sigma)`` on ``A u = b`` is the oblique ("-Ob") projection with metric
``Sigma^{-1}``. With S = A Sigma A^T (m x m):

    mu'    = mu - Sigma A^T S^{-1} (A mu - b)
    Sigma' = Sigma - Sigma A^T S^{-1} A Sigma

Sigma' is kept as the prior, the constraint and S factorised, and used only through products:
every covariance factorises its own S (`Covariance.conditioning_gram`) and knows the marginal
variances that conditioning leaves (`Covariance.conditioned_variance`); every constraint knows
``A x``, ``A^T y`` and the diagonals of ``A D A^T`` and ``A^T D A`` (`LinearConstraint`). For
diagonal and low-rank + diagonal priors nothing n x n is formed: with a dense A the projected
variances cost O(n m (r + m) + m^3); with a constraint whose rows touch disjoint unknowns
(`WeightedSumConstraint`: conservation, integrals) S is diagonal plus rank r, and they cost
O(n r^2 + m r^2) with no m x m matrix (`sciml.constraints._gram`).
"""

import abc
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.constraints._gram import CholeskyGram, Gram, WoodburyGram, sandwich_diagonal
from sciml.constraints._linear import LinearConstraint, project_euclidean


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

    def conditioning_gram(self, constraint: LinearConstraint, noise_variance: float = 0.0) -> Gram:
        """``S = A Sigma A^T + noise_variance I`` (the covariance of ``A u + noise``), factorised.

        Generic: a dense m x m Cholesky of ``A (Sigma A^T)``; structured covariances override it.
        """
        cross = self.matmul(constraint.matrix.T)
        return CholeskyGram.factor(constraint.apply(cross) + _ridge(cross, noise_variance))

    def cross_matmul(
        self, constraint: LinearConstraint, y: Float[Array, "m k"]
    ) -> Float[Array, "n k"]:
        """``Sigma A^T y``."""
        return self.matmul(constraint.apply_transpose(y))

    def conditioned_variance(self, constraint: LinearConstraint, gram: Gram) -> Float[Array, " n"]:
        """``diag(Sigma - Sigma A^T S^{-1} A Sigma)``: the marginal variances given ``A u``.

        Args:
            constraint: A.
            gram: S, factorised by `conditioning_gram`.
        """
        return self.diagonal() - gram.quadratic_diagonal(self.matmul(constraint.matrix.T))


def _ridge(like: Array, noise_variance: float) -> Array:
    """``noise_variance I``, m x m for a (n, m) or (m, m) `like`."""
    return noise_variance * jnp.eye(like.shape[1], dtype=like.dtype)


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

    def conditioning_gram(self, constraint: LinearConstraint, noise_variance: float = 0.0) -> Gram:
        if constraint.disjoint_rows:  # A diag(d) A^T is diagonal
            diagonal = constraint.squared_row_norms(self.variance) + noise_variance
            return WoodburyGram.factor_of(diagonal, None)
        gram = constraint.weighted_gram(self.variance)
        return CholeskyGram.factor(gram + _ridge(gram, noise_variance))

    def conditioned_variance(self, constraint: LinearConstraint, gram: Gram) -> Float[Array, " n"]:
        # Row i of Sigma A^T is d_i a_i^T (a_i the i-th column of A).
        return self.variance - self.variance**2 * sandwich_diagonal(constraint, gram)


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

    def conditioning_gram(self, constraint: LinearConstraint, noise_variance: float = 0.0) -> Gram:
        low = constraint.apply(self.factor)  # G = A F, (m, r)
        # S = diag + G G^T: Woodbury (r x r) when m > r; for m <= r the direct m x m
        # factorisation is no dearer.
        if constraint.disjoint_rows and low.shape[0] > low.shape[1]:
            diagonal = constraint.squared_row_norms(self.diagonal_part) + noise_variance
            return WoodburyGram.factor_of(diagonal, low)
        gram = low @ low.T + constraint.weighted_gram(self.diagonal_part)
        return CholeskyGram.factor(gram + _ridge(gram, noise_variance))

    def cross_matmul(
        self, constraint: LinearConstraint, y: Float[Array, "m k"]
    ) -> Float[Array, "n k"]:
        # F (A F)^T y: r x m work where F^T (A^T y) would be n x r.
        low = constraint.apply(self.factor)
        spread = constraint.apply_transpose(y)
        return self.factor @ (low.T @ y) + self.diagonal_part[:, None] * spread

    def conditioned_variance(self, constraint: LinearConstraint, gram: Gram) -> Float[Array, " n"]:
        # Row i of Sigma A^T is c_i = G^T f_i + d_i a_i (f_i the i-th row of F, a_i the i-th
        # column of A, G = A F), so diag(Sigma') = d_i + f_i^T f_i - c_i^T S^{-1} c_i is
        # d_i - d_i^2 a_i^T S^{-1} a_i + f_i^T [(I - G^T S^{-1} G) f_i - 2 d_i G^T S^{-1} a_i]:
        # r x r and m x r algebra plus n-sized products, never the n x m matrix Sigma A^T.
        d, f = self.diagonal_part, self.factor
        if isinstance(gram, WoodburyGram) and gram.factor is not None:
            solved, complement = gram.own_factor_terms()  # this G, built by conditioning_gram
        else:
            low = constraint.apply(f)
            solved = gram.solve(low)  # S^{-1} G, (m, r)
            inner = low.T @ solved
            complement = jnp.eye(inner.shape[0], dtype=inner.dtype) - (inner + inner.T) / 2
        low_rank = f @ complement - 2 * d[:, None] * constraint.apply_transpose(solved)
        return d - d**2 * sandwich_diagonal(constraint, gram) + jnp.sum(low_rank * f, axis=1)


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
    """``Sigma' = Sigma - Sigma A^T S^{-1} A Sigma``: a prior covariance conditioned on ``A u = b``.

    Built by `project_gaussian`. It is itself a `Covariance`, so projections chain (conditioning
    on one constraint set, then another, equals conditioning on both).

    Attributes:
        prior: Sigma, any `Covariance`.
        constraint: the `LinearConstraint` (A) conditioned on; its target plays no part.
        gram: ``S = A Sigma A^T + noise_variance I``, factorised (`Covariance.conditioning_gram`).
        noise_variance: observation-noise variance of a soft (ProbConserv) constraint; 0 is hard.
    """

    prior: Covariance
    constraint: LinearConstraint
    gram: Gram
    noise_variance: float = flax.struct.field(pytree_node=False, default=0.0)

    def gain(self, residual: Float[Array, "m k"]) -> Float[Array, "n k"]:
        """``Sigma A^T S^{-1} residual``: the correction that conditioning applies."""
        return self.prior.cross_matmul(self.constraint, self.gram.solve(residual))

    def matmul(self, x: Float[Array, "n k"]) -> Float[Array, "n k"]:
        prior = self.prior.matmul(x)
        return prior - self.gain(self.constraint.apply(prior))

    def diagonal(self) -> Float[Array, " n"]:
        return self.prior.conditioned_variance(self.constraint, self.gram)

    def sample(self, key: PRNGKeyArray, n_samples: int) -> Float[Array, "s n"]:
        k_prior, k_noise = jax.random.split(key)
        prior = self.prior.sample(k_prior, n_samples)
        residual = self.constraint.apply(prior.T)
        if self.noise_variance > 0:
            noise = jax.random.normal(k_noise, residual.shape, residual.dtype)
            residual = residual + jnp.sqrt(self.noise_variance) * noise
            return prior - self.gain(residual).T
        draws = prior - self.gain(residual).T
        # As in `project_gaussian`: exactly in the null space of A, whatever S's conditioning.
        return jax.vmap(project_euclidean, in_axes=(0, None))(
            draws, self.constraint.replace(target=jnp.zeros_like(residual[:, 0]))
        )

    def dense(self) -> Float[Array, "n n"]:
        cross = self.prior.matmul(self.constraint.matrix.T)
        explained = cross @ self.gram.solve(cross.T)
        return self.prior.dense() - (explained + explained.T) / 2


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
    cov = ProjectedCovariance(
        prior=gaussian.cov,
        constraint=constraint,
        gram=gaussian.cov.conditioning_gram(constraint, noise_variance),
        noise_variance=noise_variance,
    )
    mean = gaussian.mean - cov.gain(constraint.residual(gaussian.mean)[:, None])[:, 0]
    if noise_variance == 0:
        # A no-op in exact arithmetic. In float32, a prior whose variance lies mostly along A
        # (a head trained through this projection drifts there) makes S ill-conditioned and
        # leaves a residual; the orthogonal correction, well-conditioned, removes it.
        mean = project_euclidean(mean, constraint)
    return Gaussian(mean=mean, cov=cov)
