"""The factorised m x m matrix ``S = A Sigma A^T + s^2 I`` that Gaussian conditioning inverts.

Two structures, chosen by the prior covariance and the constraint (`Covariance.conditioning_gram`):
- `CholeskyGram`: S dense, through its Cholesky factor L (``S^{-1} = L^{-T} L^{-1}``), O(m^3);
- `WoodburyGram`: ``S = diag(s) + G G^T`` with G of rank r << m, which is what a diagonal or
  low-rank + diagonal prior gives when the rows of A touch disjoint unknowns
  (``A diag(d) A^T`` is then diagonal). By the Woodbury identity, with ``D = diag(s)`` and
  ``K = I_r + G^T D^{-1} G = R^{-1} R^{-T}`` (R = the inverse Cholesky factor of K),

      S^{-1} = D^{-1} - D^{-1} G K^{-1} G^T D^{-1},

  so every product costs O(m r^2): no m x m matrix, no m x m factorisation.

Each answers the three questions conditioning asks of ``S^{-1}``: `solve` (``S^{-1} x``),
`quadratic_diagonal` (``diag(C S^{-1} C^T)``) and `inverse_diagonal` (``diag(S^{-1})``).
"""

from typing import Any

import flax.struct
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular
from jaxtyping import Array, Float

from sciml.constraints._linear import LinearConstraint


@flax.struct.dataclass
class CholeskyGram:
    """A dense symmetric positive-definite S through its lower Cholesky factor.

    Attributes:
        chol: L with ``S = L L^T``, shape (m, m).
    """

    chol: Any

    @classmethod
    def factor(cls, matrix: Float[Array, "m m"]) -> "CholeskyGram":
        """Factorise S (symmetrised first: round-off in a product must not break Cholesky)."""
        return cls(chol=jnp.linalg.cholesky((matrix + matrix.T) / 2))

    def inverse_chol(self) -> Float[Array, "m m"]:
        """``L^{-1}``, so that ``S^{-1} = L^{-T} L^{-1}``."""
        # An m x m inverse once, then GEMMs: cheaper forward + backward than triangular solves
        # with n right-hand sides (1.5-2x on CPU at n = 4096, m = 64).
        eye = jnp.eye(self.chol.shape[0], dtype=self.chol.dtype)
        return solve_triangular(self.chol, eye, lower=True)

    def solve(self, x: Float[Array, "m k"]) -> Float[Array, "m k"]:
        """``S^{-1} x``."""
        return cho_solve((self.chol, True), x)

    def quadratic_diagonal(self, c: Float[Array, "k m"]) -> Float[Array, " k"]:
        """``diag(C S^{-1} C^T)``, as squared norms (never negative)."""
        return jnp.sum((c @ self.inverse_chol().T) ** 2, axis=1)

    def inverse_diagonal(self) -> Float[Array, " m"]:
        """``diag(S^{-1})``."""
        return jnp.sum(self.inverse_chol() ** 2, axis=0)


@flax.struct.dataclass
class WoodburyGram:
    """``S = diag(s) + G G^T``, inverted by the Woodbury identity.

    Attributes:
        diagonal: s, shape (m,), positive.
        factor: G, shape (m, r), or None for a diagonal S.
        root: R, the inverse of the lower Cholesky factor of ``K = I + G^T diag(s)^{-1} G``
            (``K^{-1} = R^T R``), shape (r, r); None with `factor`.
    """

    diagonal: Any
    factor: Any = None
    root: Any = None

    @classmethod
    def factor_of(
        cls, diagonal: Float[Array, " m"], factor: Float[Array, "m r"] | None
    ) -> "WoodburyGram":
        """Factorise ``diag(diagonal) + factor factor^T``: one r x r Cholesky."""
        if factor is None:
            return cls(diagonal=diagonal)
        scaled = factor / diagonal[:, None]
        eye = jnp.eye(factor.shape[1], dtype=factor.dtype)
        inner = eye + factor.T @ scaled
        chol = jnp.linalg.cholesky((inner + inner.T) / 2)
        return cls(diagonal=diagonal, factor=factor, root=solve_triangular(chol, eye, lower=True))

    def own_factor_terms(self) -> tuple[Float[Array, "m r"], Float[Array, "r r"]]:
        """``S^{-1} G = D^{-1} G K^{-1}`` and ``I - G^T S^{-1} G = K^{-1}`` for this G, exactly.

        Both without the cancellation of ``D^{-1} - ...``; the second is positive definite.
        """
        inverse = self.root.T @ self.root  # K^{-1}
        return (self.factor / self.diagonal[:, None]) @ inverse, inverse

    def _whitened(self) -> Float[Array, "r m"]:
        """``R G^T D^{-1}``: ``S^{-1} = D^{-1} - W^T W`` with W this matrix."""
        return self.root @ (self.factor / self.diagonal[:, None]).T

    def solve(self, x: Float[Array, "m k"]) -> Float[Array, "m k"]:
        """``S^{-1} x``."""
        out = x / self.diagonal[:, None]
        if self.factor is None:
            return out
        w = self._whitened()
        return out - w.T @ (w @ x)

    def quadratic_diagonal(self, c: Float[Array, "k m"]) -> Float[Array, " k"]:
        """``diag(C S^{-1} C^T)``."""
        out = jnp.sum(c**2 / self.diagonal[None, :], axis=1)
        if self.factor is None:
            return out
        return out - jnp.sum((c @ self._whitened().T) ** 2, axis=1)

    def inverse_diagonal(self) -> Float[Array, " m"]:
        """``diag(S^{-1})``."""
        out = 1 / self.diagonal
        if self.factor is None:
            return out
        return out - jnp.sum(self._whitened() ** 2, axis=0)


Gram = CholeskyGram | WoodburyGram


def sandwich_diagonal(constraint: LinearConstraint, gram: Gram) -> Float[Array, " n"]:
    """``diag(A^T S^{-1} A)``: O(n) when the rows of A are disjoint, else O(n m^2)."""
    if constraint.disjoint_rows:
        return constraint.squared_column_norms(gram.inverse_diagonal())
    return gram.quadratic_diagonal(constraint.matrix.T)
