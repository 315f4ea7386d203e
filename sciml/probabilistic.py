"""Gaussian predictions over fields and ProbHardE2E: conservation-constrained training and scoring.

`GaussianField` is what a probabilistic model predicts (e.g. `sciml.operators.GaussianHead`);
`to_gaussians` flattens it for the projections of `sciml.constraints`.

The constraint (`Constraint`) is conservation of every output channel:
- "mass" (linear): the spatial mean of the predicted field equals the truth's,
  ``(1/N) sum_x u(x, k) = U_k``. In the generalised porous-medium family U_k is known from the
  physics (the initial mass plus the boundary fluxes); here it is read off the reference solution,
  which the finite-volume data conserve exactly.
- "mass_energy" (nonlinear): also the spatial mean of its square, ``(1/N) sum_x u(x, k)^2 = E_k``
  (the quadratic invariant of KdV, linear advection or dispersion; here read off the reference,
  equal to the input's up to the solver's drift).
Normalisation is affine per channel, so with the mass fixed both hold in normalised units iff
they hold in physical ones.

Projections (`PROJECTIONS`):
- "none": the head's Gaussian as is (the unconstrained baseline);
- "dppl": Gaussian conditioning on the mass constraint, or for "mass_energy" the delta-method
  projection through the nonlinear Euclidean projection (`project_gaussian_nonlinear`);
  ProbHardE2E's layer when trained through, the post-hoc baseline when applied only at evaluation;
- "probconserv": the linear update with observation noise (ProbConserv's soft constraint; mass
  only).
"""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec
from jaxtyping import Array, Float

from sciml.constraints import (
    DiagonalCovariance,
    Gaussian,
    LowRankCovariance,
    NonlinearConstraint,
    WeightedSumConstraint,
    project_gaussian,
    project_gaussian_nonlinear,
    weighted_sum_constraint,
)
from sciml.scoring import crps_gaussian, gaussian_nll


class GaussianField(NamedTuple):
    """A per-sample Gaussian over a channels-last field: ``N(mean, diag(variance) + F F^T)``.

    Attributes:
        mean: shape (batch, *spatial, c).
        variance: the diagonal part, positive, shape (batch, *spatial, c).
        factor: F, shape (batch, *spatial, c, r), or None for a diagonal covariance.
    """

    # Leaves are typed loosely: pytree utilities rebuild the tuple with placeholder leaves.
    mean: Any
    variance: Any
    factor: Any = None

    def marginal_variance(self) -> Float[Array, "b *spatial c"]:
        """``diag(Sigma)``: the diagonal part plus the squared factor's row sums."""
        if self.factor is None:
            return self.variance
        return self.variance + jnp.sum(self.factor**2, axis=-1)


def to_gaussians(
    mean: Float[Array, "b *spatial c"],
    variance: Float[Array, "b *spatial c"],
    factor: Float[Array, "b *spatial c r"] | None = None,
) -> Gaussian:
    """A batch of Gaussians over the fields flattened row-major per sample, n = prod(spatial) c.

    Every leaf keeps the leading batch axis, so the result vmaps like an array:
    ``jax.vmap(project_gaussian, in_axes=(0, None))(to_gaussians(...), constraint)``. Field index
    ``(*s, c)`` is flat index ``ravel_multi_index((*s, c), (*spatial, c))``, the order of
    ``mean.reshape(batch, -1)`` and of the constraint builders in `sciml.constraints`.

    Args:
        mean: (batch, *spatial, c).
        variance: diagonal part, (batch, *spatial, c), positive where a constraint may act.
        factor: low-rank factor F, (batch, *spatial, c, r), or None.
    Returns:
        `Gaussian` with mean (batch, n) and a `DiagonalCovariance` (variance (batch, n)) or a
        `LowRankCovariance` (factor (batch, n, r), diagonal_part (batch, n)):
        ``Sigma = diag(variance) + F F^T``.
    """
    batch = mean.shape[0]
    flat_variance = variance.reshape(batch, -1)
    if factor is None:
        cov = DiagonalCovariance(variance=flat_variance)
    else:
        cov = LowRankCovariance(
            factor=factor.reshape(batch, -1, factor.shape[-1]), diagonal_part=flat_variance
        )
    return Gaussian(mean=mean.reshape(batch, -1), cov=cov)


Projection = Literal["none", "dppl", "probconserv"]
PROJECTIONS: tuple[Projection, ...] = ("none", "dppl", "probconserv")
Constraint = Literal["mass", "mass_energy"]


def projections_for(constraint: Constraint) -> tuple[Projection, ...]:
    """The projections defined for `constraint` (ProbConserv's update is linear only)."""
    return PROJECTIONS if constraint == "mass" else ("none", "dppl")


_Z90 = 1.6448536269514722  # standard normal quantile of 0.95: central 90% interval


def conservation_matrix(spatial: tuple[int, ...], channels: int) -> np.ndarray:
    """A (channels, N channels): row k averages channel k over the N grid points (row-major)."""
    n_points = int(np.prod(spatial))
    return np.kron(np.full((1, n_points), 1.0 / n_points), np.eye(channels)).astype(np.float32)


def conservation_constraint_of(spatial: tuple[int, ...], channels: int) -> WeightedSumConstraint:
    """The per-channel spatial means of a (*spatial, c) field, as a structured constraint.

    Its rows are those of `conservation_matrix` (the fields flattened row-major, channels last),
    so the projections need no dense A; the target is zero (set it with ``.replace(target=U)``).
    """
    n_points = int(np.prod(spatial))
    weights = np.full((n_points, channels), 1.0 / n_points)
    return weighted_sum_constraint(weights, np.zeros(channels), axis=0)


def conserved_totals(
    y: Float[Array, "b *spatial c"], constraint: Constraint = "mass"
) -> Float[Array, "b k"]:
    """The conserved quantities per sample: the spatial mean of every channel (k = c), then for
    "mass_energy" the spatial mean of every channel's square (k = 2 c)."""
    flat = y.reshape(y.shape[0], -1, y.shape[-1])
    if constraint == "mass":
        return flat.mean(axis=1)
    return jnp.concatenate([flat.mean(axis=1), jnp.mean(flat**2, axis=1)], axis=-1)


def _mass_energy_residual(u: Float[Array, " n"], totals: Float[Array, " k"]) -> Array:
    """h(u) of "mass_energy" for one flattened channels-last field, totals (2 c,)."""
    return conserved_totals(u.reshape(1, -1, totals.shape[0] // 2), "mass_energy")[0] - totals


def project_field(
    field: GaussianField,
    totals: Float[Array, "b k"],
    projection: Projection,
    *,
    noise_variance: float = 1e-3,
    constraint: Constraint = "mass",
) -> Gaussian:
    """The head's Gaussians (batched, flattened) after `projection` onto the conservation law.

    Args:
        field: mean / variance (and factor) of shape (b, *spatial, c) (..., r).
        totals: the conserved quantities, `conserved_totals` of the reference, shape (b, k).
        projection: see the module docstring.
        noise_variance: keyword-only; the observation noise of "probconserv".
        constraint: keyword-only; "mass" or "mass_energy" (see the module docstring).
    Returns:
        A `Gaussian` whose leaves have a leading batch axis, over n = prod(spatial) c unknowns.
    """
    prior = to_gaussians(*field)
    if projection == "none":
        return prior
    if projection not in projections_for(constraint):
        raise ValueError(
            f"projection must be one of {projections_for(constraint)} for constraint"
            f" {constraint!r}, got {projection!r}"
        )
    if constraint == "mass_energy":

        def nonlinear(gaussian: Gaussian, target: Array) -> Gaussian:
            return project_gaussian_nonlinear(
                gaussian, NonlinearConstraint(_mass_energy_residual, target)
            )

        return _per_sample(nonlinear, prior, totals)
    constraint = conservation_constraint_of(field.mean.shape[1:-1], field.mean.shape[-1])
    constraint = jax.tree.map(lambda a: a.astype(totals.dtype), constraint)
    noise = noise_variance if projection == "probconserv" else 0.0

    def one(gaussian: Gaussian, target: Array) -> Gaussian:
        return project_gaussian(gaussian, constraint.replace(target=target), noise_variance=noise)

    return _per_sample(one, prior, totals)


def _per_sample(fn, *args):
    """``jax.vmap(fn)(*args)``; under an explicitly sharded batch the compiler shards it instead,
    because the linear algebra inside (Cholesky's masks) builds unsharded intermediates."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.explicit_axes:
        return jax.vmap(fn)(*args)
    batch_axis = jax.typeof(jax.tree.leaves(args)[0]).sharding.spec[0]
    return jax.sharding.auto_axes(jax.vmap(fn), out_sharding=PartitionSpec(batch_axis))(*args)


def _marginals(gaussian: Gaussian) -> tuple[Array, Array]:
    return gaussian.mean, _per_sample(lambda g: g.variance(), gaussian)


def gaussian_loss(
    field: GaussianField,
    y: Float[Array, "b *spatial c"],
    *,
    loss: Literal["crps", "nll"] = "crps",
    projection: Projection = "none",
    constraint: Constraint = "mass",
) -> Float[Array, ""]:
    """Mean over samples and coordinates of the closed-form CRPS (or NLL) of the projected marginals.

    ProbHardE2E's loss up to a constant factor (the paper sums over coordinates): no sampling,
    gradients flow through the projection.
    """
    totals = conserved_totals(y, constraint)
    mean, variance = _marginals(project_field(field, totals, projection, constraint=constraint))
    target = y.reshape(y.shape[0], -1)
    if loss == "nll":
        return gaussian_nll(mean, variance, target)
    return crps_gaussian(mean, variance, target)


def probabilistic_metrics(
    field: GaussianField,
    y: Float[Array, "b *spatial c"],
    projection: Projection,
    scale: Float[Array | np.ndarray, " c"],
    *,
    noise_variance: float = 1e-3,
    constraint: Constraint = "mass",
) -> dict[str, Float[Array, ""]]:
    """Batch means, in physical units (`scale` = the target's normalisation std per channel).

    mse: of the mean; crps: closed-form Gaussian CRPS per coordinate; constraint_error: largest
    violation of a conserved quantity by the predicted mean (``|mean over space - U|``, and for
    "mass_energy" also that of the squares, the fields scaled but not shifted); coverage90: share
    of the truth inside the central 90% interval; mean_std: the average predicted standard
    deviation.
    """
    totals = conserved_totals(y, constraint)
    post = project_field(
        field, totals, projection, noise_variance=noise_variance, constraint=constraint
    )
    mean, variance = _marginals(post)
    b, c = y.shape[0], y.shape[-1]
    flat_scale = jnp.tile(jnp.asarray(scale, mean.dtype), mean.shape[1] // c)[None, :]
    mean, std = mean * flat_scale, jnp.sqrt(jnp.maximum(variance, 0.0)) * flat_scale
    truth = y.reshape(b, -1) * flat_scale
    violation = conserved_totals(mean.reshape(y.shape), constraint) - conserved_totals(
        truth.reshape(y.shape), constraint
    )
    return {
        "mse": jnp.mean((mean - truth) ** 2),
        "crps": crps_gaussian(mean, std**2, truth),
        "constraint_error": jnp.max(jnp.abs(violation)),
        "coverage90": jnp.mean(jnp.abs(truth - mean) <= _Z90 * std),
        "mean_std": jnp.mean(std),
    }


def predictive_marginals(
    field: GaussianField,
    y: Float[Array, "b *spatial c"],
    projection: Projection,
    *,
    noise_variance: float = 1e-3,
    constraint: Constraint = "mass",
) -> tuple[Float[Array, "b *spatial c"], Float[Array, "b *spatial c"]]:
    """Mean and standard deviation of every coordinate after `projection`, in the field's shape.

    `y` supplies the conserved totals only (`conserved_totals` of the reference).
    """
    totals = conserved_totals(y, constraint)
    post = project_field(
        field, totals, projection, noise_variance=noise_variance, constraint=constraint
    )
    mean, variance = _marginals(post)
    return mean.reshape(y.shape), jnp.sqrt(jnp.maximum(variance, 0.0)).reshape(y.shape)


# Fronts of the porous-medium family move in +x from the hot / inflow boundary at x = 0.
# PME: one cell (h = 0.01) behind the front the exact profile (m d)^(1/m) is already >= 0.14 for
# m in [2, 6], while a trained model's mean ahead of it sits within ~0.01 of 0; 0.05 separates
# the two. Stefan: u >= p* >= 0.55 behind the front and 0 ahead, so any level in between gives
# the same cell; half the smallest p* keeps clear of both.
_PME_FRONT_LEVEL = 0.05


def front_threshold(kind: str, parameter_range: tuple[float, float] | None = None) -> float | None:
    """The level whose first downward crossing marks the front, or None for kinds without one.

    Args:
        kind: `sciml.pde.PorousMediumDataset.kind` ("heat", "porous_medium", "stefan").
        parameter_range: Stefan's p* range (default the paper's [0.55, 0.7]).
    """
    if kind == "porous_medium":
        return _PME_FRONT_LEVEL
    if kind == "stefan":
        return 0.5 * (parameter_range or (0.55, 0.7))[0]
    return None


def front_position(u: Float[Array, "*b n"], threshold: float) -> Float[Array, "*b"]:
    """Position, in cells from the left edge, of the first downward crossing of `threshold`.

    Cell i's value sits at its centre i + 1/2; between the last centre at or above the threshold
    and the next one the crossing is linearly interpolated. A profile below the threshold
    everywhere has its front at 0, one above it everywhere at n (ProbConserv's shock position,
    with sub-cell resolution).

    Args:
        u: profiles on n equal cells, last axis space, decreasing through the front.
        threshold: the level, in u's units.
    Returns:
        Front positions in cells, shape u.shape[:-1].
    """
    n = u.shape[-1]
    below = u < threshold
    first = jnp.argmax(below, axis=-1)  # first cell below; 0 if none is below
    any_below = jnp.any(below, axis=-1)
    before = jnp.take_along_axis(u, jnp.maximum(first - 1, 0)[..., None], axis=-1)[..., 0]
    after = jnp.take_along_axis(u, first[..., None], axis=-1)[..., 0]
    fraction = jnp.clip((before - threshold) / jnp.maximum(before - after, 1e-12), 0.0, 1.0)
    inside = first.astype(u.dtype) - 0.5 + fraction
    return jnp.where(~any_below, float(n), jnp.where(first == 0, 0.0, inside))


def front_error(
    prediction: Float[Array, "b n c"], truth: Float[Array, "b n c"], threshold: float
) -> Float[Array, ""]:
    """Mean over samples of ``|front(prediction) - front(truth)|`` in cells, channel 0 (1D only)."""
    return jnp.mean(
        jnp.abs(
            front_position(prediction[..., 0], threshold) - front_position(truth[..., 0], threshold)
        )
    )


def front_errors(
    field: GaussianField,
    y: Float[Array, "b n c"],
    threshold: float,
    scale: Float[Array | np.ndarray, " c"],
    offset: Float[Array | np.ndarray, " c"],
    *,
    noise_variance: float = 1e-3,
    constraint: Constraint = "mass",
) -> dict[str, Float[Array, ""]]:
    """Front position error (cells) of the predicted mean under every projection defined for
    `constraint`, batch mean.

    `threshold` is in physical units; `scale` and `offset` (the target's normalisation std and
    mean per channel) map the normalised field back to them.
    """
    channel_shape = (1,) * (y.ndim - 1) + (y.shape[-1],)
    scale = jnp.asarray(scale, y.dtype).reshape(channel_shape)
    offset = jnp.asarray(offset, y.dtype).reshape(channel_shape)
    truth = y * scale + offset
    return {
        p: front_error(
            predictive_marginals(field, y, p, noise_variance=noise_variance, constraint=constraint)[
                0
            ]
            * scale
            + offset,
            truth,
            threshold,
        )
        for p in projections_for(constraint)
    }
