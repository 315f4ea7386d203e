"""Linear equality constraints ``A u = b`` on flattened fields: builders and exact projections."""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve
from jaxtyping import Array, Bool, Float

Values = Float[Array | np.ndarray, "..."] | float
Index = int | slice | np.ndarray | tuple[Any, ...]


@flax.struct.dataclass
class LinearConstraint:
    """The linear equality ``A u = b`` on a field u flattened (row-major) to n unknowns.

    A is dense: the constraints this library builds (values, slices, integrals, sums) number far
    fewer than the unknowns, and every projection needs only ``m x m`` solves with it. The
    products below are what the projections use; `WeightedSumConstraint` does them without A.

    `disjoint_rows` (class-level) says that no two rows share an unknown, so that
    ``A diag(d) A^T`` is diagonal for every d; the projections use it to replace m x m solves by
    diagonal (and low-rank) ones.

    Attributes:
        matrix: A, shape (m, n), full row rank (m <= n).
        target: b, shape (m,).
    """

    # Leaves are typed loosely: pytree utilities rebuild the class with placeholder leaves.
    matrix: Any
    target: Any
    disjoint_rows: ClassVar[bool] = False

    @property
    def n_constraints(self) -> int:
        """m, the number of scalar equations."""
        return self.matrix.shape[0]

    @property
    def n_unknowns(self) -> int:
        """n, the size of the flattened field."""
        return self.matrix.shape[1]

    def residual(self, u: Float[Array | np.ndarray, "..."]) -> Float[Array, " m"]:
        """``A u - b`` for a field u of any shape with n elements."""
        return self.apply(jnp.asarray(u).reshape(-1)) - self.target

    def apply(self, x: Float[Array, "n ..."]) -> Float[Array, "m ..."]:
        """``A x`` for x of shape (n,) or (n, k)."""
        return self.matrix @ x

    def apply_transpose(self, y: Float[Array, "m ..."]) -> Float[Array, "n ..."]:
        """``A^T y`` for y of shape (m,) or (m, k)."""
        return self.matrix.T @ y

    def weighted_gram(self, d: Float[Array, " n"]) -> Float[Array, "m m"]:
        """``A diag(d) A^T``."""
        return (self.matrix * d[None, :]) @ self.matrix.T

    def squared_row_norms(self, d: Float[Array, " n"]) -> Float[Array, " m"]:
        """``sum_i A_ji^2 d_i``, the diagonal of ``A diag(d) A^T``."""
        return self.matrix**2 @ d

    def squared_column_norms(self, v: Float[Array, " m"]) -> Float[Array, " n"]:
        """``sum_j A_ji^2 v_j``, the diagonal of ``A^T diag(v) A``."""
        return v @ self.matrix**2


@flax.struct.dataclass
class WeightedSumConstraint(LinearConstraint):
    """A `LinearConstraint` whose rows are weighted sums over disjoint sets of unknowns.

    The unknowns ``u[offset : offset + p q]``, viewed as a (p, q) block U, are summed with the
    weights W along `axis`: ``A u = sum(W * U, axis)``. Rows of per-time conservation on a
    (time, *space) field are the block's rows (``axis=1``, ``A = [0 | I (kron) w]``); per-channel
    means of a channels-last field are its columns (``axis=0``, ``A = w (kron) I``); a single
    integral is one row (p = 1). Every product the projections need then costs O(n) instead of
    O(m n), and ``A diag(d) A^T`` is diagonal. `matrix` holds the same A densely for generic
    consumers; build with `weighted_sum_constraint`, which keeps the two consistent.

    Attributes:
        weights: W, shape (p, q).
        offset: static, index of the block's first unknown in the flattened field.
        axis: static, 1 (one row per block row, m = p) or 0 (one row per block column, m = q).
    """

    weights: Any = None
    offset: int = flax.struct.field(pytree_node=False, default=0)
    axis: int = flax.struct.field(pytree_node=False, default=1)
    disjoint_rows: ClassVar[bool] = True

    def _block(self, x: Float[Array, "n ..."]) -> Float[Array, "p q ..."]:
        p, q = self.weights.shape
        return x[self.offset : self.offset + p * q].reshape(p, q, *x.shape[1:])

    def _scatter(self, block: Float[Array, "p q ..."]) -> Float[Array, "n ..."]:
        """The block placed back into a field of n unknowns, zero elsewhere."""
        p, q = self.weights.shape
        flat = block.reshape(p * q, *block.shape[2:])
        after = self.n_unknowns - self.offset - p * q
        return jnp.pad(flat, [(self.offset, after)] + [(0, 0)] * (flat.ndim - 1))

    def _w(self, power: int, extra: int) -> Float[Array, "p q ..."]:
        return (self.weights**power).reshape(*self.weights.shape, *(1,) * extra)

    def _contract(self, w: Float[Array, "p q"], x: Float[Array, "n ..."]) -> Float[Array, "m ..."]:
        # An einsum (a batched dot over the rows) runs about 2x faster forward and backward on
        # CPU than the broadcast product and reduction it equals.
        rows = "p" if self.axis == 1 else "q"
        return jnp.einsum(f"pq,pq...->{rows}...", w, self._block(x))

    def apply(self, x: Float[Array, "n ..."]) -> Float[Array, "m ..."]:
        return self._contract(self.weights, x)

    def apply_transpose(self, y: Float[Array, "m ..."]) -> Float[Array, "n ..."]:
        return self._scatter(self._w(1, y.ndim - 1) * jnp.expand_dims(y, self.axis))

    def weighted_gram(self, d: Float[Array, " n"]) -> Float[Array, "m m"]:
        return jnp.diag(self.squared_row_norms(d))

    def squared_row_norms(self, d: Float[Array, " n"]) -> Float[Array, " m"]:
        return self._contract(self.weights**2, d)

    def squared_column_norms(self, v: Float[Array, " m"]) -> Float[Array, " n"]:
        return self._scatter(self._w(2, 0) * jnp.expand_dims(v, self.axis))


def _float(x: Values) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _rows(shape: tuple[int, ...], index: Index) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat indices of ``field[index]`` in the order of that slice, and the slice's shape."""
    picked = np.arange(int(np.prod(shape))).reshape(shape)[index]
    return picked.reshape(-1), picked.shape


def _selection(flat: np.ndarray, n: int, values: Array) -> LinearConstraint:
    matrix = np.zeros((flat.size, n))
    matrix[np.arange(flat.size), flat] = 1.0
    return LinearConstraint(matrix=_float(matrix), target=values.reshape(-1))


def value_constraint(mask: Bool[Array | np.ndarray, "*shape"], values: Values) -> LinearConstraint:
    """Fix ``u[mask] = values[mask]``: one row per True entry of `mask`, in row-major order.

    Args:
        mask: concrete boolean array of the field's shape.
        values: the values, broadcastable to the field's shape (a scalar fixes them all alike).
    Returns:
        The constraint on fields of ``mask.shape``.
    """
    mask = np.asarray(mask, dtype=bool)
    flat = np.flatnonzero(mask)
    full = jnp.broadcast_to(_float(values), mask.shape).reshape(-1)
    return _selection(flat, mask.size, full[flat])


def slice_constraint(shape: tuple[int, ...], index: Index, values: Values) -> LinearConstraint:
    """Fix ``u[index] = values`` on a field of `shape` (any numpy index, e.g. ``np.s_[0]``).

    Args:
        shape: the field's shape.
        index: a numpy basic or advanced index selecting the fixed entries.
        values: broadcastable to the shape of ``u[index]``.
    Returns:
        One row per selected entry, ordered as ``u[index].ravel()``.
    """
    flat, sliced = _rows(shape, index)
    return _selection(flat, int(np.prod(shape)), jnp.broadcast_to(_float(values), sliced))


def initial_value_constraint(shape: tuple[int, ...], values: Values) -> LinearConstraint:
    """Fix the initial condition ``u[0] = values`` of a field of shape (time, *space)."""
    return slice_constraint(shape, np.s_[0], values)


def boundary_value_constraint(
    shape: tuple[int, int], *, left: Values, right: Values, first_time: int = 0
) -> LinearConstraint:
    """Fix Dirichlet values ``u[t, 0] = left``, ``u[t, -1] = right`` of a (time, space) field.

    Args:
        shape: (nt, nx).
        left: values at x_0 for times ``first_time..nt-1``, a scalar or shape (nt - first_time,).
        right: the same at x = x_{nx-1}.
        first_time: first time index constrained; use 1 when stacking with an initial condition,
            whose corner entries would otherwise be fixed twice (a rank-deficient A).
    Returns:
        2 (nt - first_time) rows: the left boundary over time, then the right.
    """
    times = np.s_[first_time:]
    return stack_constraints(
        slice_constraint(shape, (times, 0), left), slice_constraint(shape, (times, -1), right)
    )


def periodic_constraint(shape: tuple[int, ...], *, axis: int) -> LinearConstraint:
    """Tie the two ends of `axis`: ``u[..., 0, ...] = u[..., -1, ...]``.

    Its Euclidean projection sets both ends to their average.
    """
    first, _ = _rows(shape, (np.s_[:],) * (axis % len(shape)) + (0,))
    last, _ = _rows(shape, (np.s_[:],) * (axis % len(shape)) + (-1,))
    matrix = np.zeros((first.size, int(np.prod(shape))))
    matrix[np.arange(first.size), first] = 1.0
    matrix[np.arange(first.size), last] = -1.0
    return LinearConstraint(matrix=_float(matrix), target=_float(np.zeros(first.size)))


def trapezoid_weights(
    points: Float[np.ndarray, " n"], *, period: float | None = None
) -> Float[np.ndarray, " n"]:
    """Trapezoid-rule quadrature weights w with ``integral u dx ~= sum_j w_j u(x_j)``.

    Args:
        points: increasing grid points x_0 < ... < x_{n-1}.
        period: if given, the grid is periodic and the interval from x_{n-1} to ``x_0 + period``
            is included (uniform weights ``period / n`` on a uniform periodic grid).
    Returns:
        Weights of shape (n,): ``w_j = (x_{j+1} - x_{j-1}) / 2``, half-intervals at open ends.
    """
    x = np.asarray(points, dtype=float)
    gaps = np.diff(x)
    wrap = [x[0] + period - x[-1]] if period is not None else [0.0]
    before = np.concatenate([wrap, gaps])
    after = np.concatenate([gaps, wrap])
    return (before + after) / 2


def weighted_sum_constraint(
    weights: Values, totals: Values, *, axis: int, n_unknowns: int | None = None, offset: int = 0
) -> WeightedSumConstraint:
    """Rows ``sum(W * U, axis) = totals`` over the block ``U = u[offset : offset + p q]``.

    Args:
        weights: W, shape (p, q); concrete or traced.
        totals: b, shape (p,) for ``axis=1`` or (q,) for ``axis=0``.
        axis: keyword-only; the block axis each row sums over (see `WeightedSumConstraint`).
        n_unknowns: keyword-only; n, the size of the whole field (default ``offset + p q``).
        offset: keyword-only; the block's first unknown.
    Returns:
        The structured constraint, with its dense matrix for generic consumers.
    """
    w = _float(weights)
    if w.ndim != 2 or axis not in (0, 1):
        raise ValueError(f"weights must be 2-D and axis 0 or 1, got shape {w.shape}, axis {axis}")
    p, q = w.shape
    n = offset + p * q if n_unknowns is None else n_unknowns
    if offset < 0 or offset + p * q > n:
        raise ValueError(f"block of {p * q} unknowns at offset {offset} exceeds n = {n}")
    m = w.shape[1 - axis]
    target = _float(totals).reshape(-1)
    if target.size != m:
        raise ValueError(f"{m} rows (weights {w.shape}, axis {axis}) but {target.size} totals")
    eye = jnp.eye(m, dtype=w.dtype)
    picks = eye[:, :, None] if axis == 1 else eye[:, None, :]  # row j picks block row/column j
    rows = (picks * w[None]).reshape(m, p * q)
    matrix = jnp.pad(rows, [(0, 0), (offset, n - offset - p * q)])
    return WeightedSumConstraint(matrix=matrix, target=target, weights=w, offset=offset, axis=axis)


def integral_constraint(weights: Values, total: Values) -> WeightedSumConstraint:
    """One row ``sum_j w_j u_j = total``: a (region) integral with quadrature weights.

    Args:
        weights: array of the field's shape, quadrature weights times the region's indicator.
        total: the integral's value, a scalar.
    """
    w = _float(weights)
    return weighted_sum_constraint(w.reshape(1, -1), _float(total).reshape(1), axis=1)


def conservation_constraint(
    weights: Values, totals: Values, *, first_time: int = 0
) -> WeightedSumConstraint:
    """Conservation ``integral u(t, x) dx = U(t)`` at each time of a (time, *space) field.

    Args:
        weights: quadrature weights over space, shape (*space), e.g. `trapezoid_weights`.
        totals: U(t) for times ``first_time..nt-1``, shape (nt - first_time,).
        first_time: first time index constrained; use 1 next to an initial condition, which
            already fixes the integral at t = 0.
    Returns:
        ``nt - first_time`` rows ``[0 | I (kron) w]`` on fields of shape (nt, *space).
    """
    w = _float(weights).reshape(1, -1)
    totals = _float(totals).reshape(-1)
    return weighted_sum_constraint(
        jnp.broadcast_to(w, (totals.size, w.size)),
        totals,
        axis=1,
        offset=first_time * w.size,
    )


def coherency_constraint(
    children: Mapping[int, Sequence[int]], *, n_series: int, horizon: int = 1
) -> LinearConstraint:
    """Hierarchical coherency: each aggregate series equals the sum of its children.

    Args:
        children: ``{parent: [child, ...]}`` as series indices.
        n_series: number of series (aggregates and leaves together).
        horizon: number of time steps; the field has shape (horizon, n_series).
    Returns:
        ``horizon * len(children)`` rows ``u[t, parent] - sum_c u[t, c] = 0``, time-major.
    """
    rows = []
    for t in range(horizon):
        for parent, kids in children.items():
            row = np.zeros((horizon, n_series))
            row[t, parent] = 1.0
            row[t, list(kids)] -= 1.0
            rows.append(row.reshape(-1))
    matrix = np.stack(rows)
    return LinearConstraint(matrix=_float(matrix), target=_float(np.zeros(len(rows))))


def stack_constraints(*constraints: LinearConstraint) -> LinearConstraint:
    """All the equations of `constraints` at once (rows concatenated in order).

    Raises:
        ValueError: if they act on different n, or (for concrete matrices) the stacked A is
            rank-deficient, e.g. an initial and a boundary condition both fixing a corner.
    """
    sizes = {c.n_unknowns for c in constraints}
    if len(sizes) != 1:
        raise ValueError(f"constraints act on fields of different sizes {sorted(sizes)}")
    matrix = jnp.concatenate([c.matrix for c in constraints])
    target = jnp.concatenate([c.target for c in constraints])
    if not isinstance(matrix, jax.core.Tracer):
        rank = np.linalg.matrix_rank(np.asarray(matrix, dtype=float))
        if rank < matrix.shape[0]:
            raise ValueError(
                f"stacked constraints are redundant: rank {rank} < {matrix.shape[0]} rows; drop "
                "equations fixed twice (next to an initial condition: "
                "boundary_value_constraint(..., first_time=1), conservation_constraint(..., "
                "first_time=1))"
            )
    return LinearConstraint(matrix=matrix, target=target)


@jax.jit
def project_euclidean(
    u: Float[Array, "*shape"], constraint: LinearConstraint
) -> Float[Array, "*shape"]:
    """The closest point in L2 to u satisfying ``A u = b`` (the orthogonal, "-Or", projection).

    ``u* = u - A^T (A A^T)^{-1} (A u - b)``: ``A A^T`` is diagonal when the rows of A touch
    disjoint unknowns, else a Cholesky solve with the m x m Gram matrix. For a batch,
    ``jax.vmap(project_euclidean, in_axes=(0, None))``.

    Args:
        u: field of any shape with n elements.
        constraint: the equality ``A u = b``.
    Returns:
        The projected field, shape of `u`.
    """
    flat = u.reshape(-1)
    residual = constraint.residual(flat)
    if constraint.disjoint_rows:
        solved = residual / constraint.squared_row_norms(jnp.ones_like(flat))
    else:
        gram = cho_factor(constraint.weighted_gram(jnp.ones_like(flat)), lower=True)
        solved = cho_solve(gram, residual)
    return (flat - constraint.apply_transpose(solved)).reshape(u.shape)


def project_box(
    u: Float[Array, "*shape"], *, lower: Values = -jnp.inf, upper: Values = jnp.inf
) -> Float[Array, "*shape"]:
    """Euclidean projection onto the box ``lower <= u <= upper`` (elementwise clipping)."""
    return jnp.clip(u, lower, upper)
