"""Hard constraints on fields and the projections onto them.

Shared by the ProbHardE2E probabilistic layers and the ECI / PCFM constrained samplers.

- Linear equalities ``A u = b`` on a field flattened row-major to n unknowns (`LinearConstraint`),
  built from values on a mask, initial / boundary / periodic slices, quadrature integrals and
  per-time conservation, hierarchical sums, and stacked with `stack_constraints`. Integrals and
  conservation are `WeightedSumConstraint`s (rows summing disjoint unknowns), which the
  projections apply without the dense A.
- `project_euclidean`: the exact L2 projection onto ``A u = b``; `project_box`: clipping.
- `project_gaussian`: Gaussian conditioning on ``A u = b`` (ProbHardE2E's DPPL) for diagonal,
  low-rank-plus-diagonal and full covariances, never forming n x n for the structured ones.
- `NonlinearConstraint` and `project_gauss_newton`: the closest point on ``h(u) = 0`` with implicit
  (KKT) or unrolled gradients; `project_gaussian_nonlinear`: the DPPL for ``h(u) = 0`` (delta
  method through the projection's Jacobian, `projection_jacobian`).
"""

from sciml.constraints._gaussian import (
    Covariance,
    DiagonalCovariance,
    FullCovariance,
    Gaussian,
    LowRankCovariance,
    ProjectedCovariance,
    project_gaussian,
)
from sciml.constraints._linear import (
    LinearConstraint,
    WeightedSumConstraint,
    boundary_value_constraint,
    coherency_constraint,
    conservation_constraint,
    initial_value_constraint,
    integral_constraint,
    periodic_constraint,
    project_box,
    project_euclidean,
    slice_constraint,
    stack_constraints,
    trapezoid_weights,
    value_constraint,
    weighted_sum_constraint,
)
from sciml.constraints._nonlinear import (
    LinearizedCovariance,
    NonlinearConstraint,
    project_gauss_newton,
    project_gaussian_nonlinear,
    projection_jacobian,
    sample_projected,
)

__all__ = [
    "Covariance",
    "DiagonalCovariance",
    "FullCovariance",
    "Gaussian",
    "LinearConstraint",
    "LinearizedCovariance",
    "LowRankCovariance",
    "NonlinearConstraint",
    "ProjectedCovariance",
    "WeightedSumConstraint",
    "boundary_value_constraint",
    "coherency_constraint",
    "conservation_constraint",
    "initial_value_constraint",
    "integral_constraint",
    "periodic_constraint",
    "project_box",
    "project_euclidean",
    "project_gauss_newton",
    "project_gaussian",
    "project_gaussian_nonlinear",
    "projection_jacobian",
    "sample_projected",
    "slice_constraint",
    "stack_constraints",
    "trapezoid_weights",
    "value_constraint",
    "weighted_sum_constraint",
]
