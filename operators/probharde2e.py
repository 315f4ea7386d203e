"""ProbHardE2E for operators with Gaussian heads: conservation-constrained training and evaluation.

The constraint is conservation of every output channel: the spatial mean of the predicted field
equals the truth's, ``(1/N) sum_x u(x, k) = U_k``. In the generalised porous-medium family U_k
is known from the physics (the initial mass plus the boundary fluxes); here it is read off the
reference solution, which the finite-volume data conserve exactly. Normalisation is affine per
channel, so the constraint holds in normalised units iff it holds in physical ones.

Projections (`PROJECTIONS`):
- "none": the head's Gaussian as is (the unconstrained baseline);
- "dppl": Gaussian conditioning on the constraint (ProbHardE2E's layer when trained through,
  the post-hoc baseline when applied only at evaluation);
- "probconserv": the same update with observation noise (ProbConserv's soft constraint).
"""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec
from jaxtyping import Array, Float

from sciml.constraints import Gaussian, LinearConstraint, project_gaussian
from sciml.operators.heads import GaussianField, to_gaussians
from sciml.scoring import crps_gaussian, gaussian_nll

Projection = Literal["none", "dppl", "probconserv"]
PROJECTIONS: tuple[Projection, ...] = ("none", "dppl", "probconserv")
_Z90 = 1.6448536269514722  # standard normal quantile of 0.95: central 90% interval


def conservation_matrix(spatial: tuple[int, ...], channels: int) -> np.ndarray:
    """A (channels, N channels): row k averages channel k over the N grid points (row-major)."""
    n_points = int(np.prod(spatial))
    return np.kron(np.full((1, n_points), 1.0 / n_points), np.eye(channels)).astype(np.float32)


def conserved_totals(y: Float[Array, "b *spatial c"]) -> Float[Array, "b c"]:
    """U_k per sample: the spatial mean of every channel of the reference field."""
    return y.reshape(y.shape[0], -1, y.shape[-1]).mean(axis=1)


def project_field(
    field: GaussianField,
    totals: Float[Array, "b c"],
    projection: Projection,
    *,
    noise_variance: float = 1e-3,
) -> Gaussian:
    """The head's Gaussians (batched, flattened) after `projection` onto the conservation law.

    Args:
        field: mean / variance (and factor) of shape (b, *spatial, c) (..., r).
        totals: the conserved means U, shape (b, c).
        projection: see the module docstring.
        noise_variance: keyword-only; the observation noise of "probconserv".
    Returns:
        A `Gaussian` whose leaves have a leading batch axis, over n = prod(spatial) c unknowns.
    """
    prior = to_gaussians(*field)
    if projection == "none":
        return prior
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    matrix = jnp.asarray(conservation_matrix(field.mean.shape[1:-1], field.mean.shape[-1]))
    noise = noise_variance if projection == "probconserv" else 0.0

    def one(gaussian: Gaussian, target: Array) -> Gaussian:
        constraint = LinearConstraint(matrix=matrix.astype(target.dtype), target=target)
        return project_gaussian(gaussian, constraint, noise_variance=noise)

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
) -> Float[Array, ""]:
    """Mean over samples and coordinates of the closed-form CRPS (or NLL) of the projected marginals.

    ProbHardE2E's loss up to a constant factor (the paper sums over coordinates): no sampling,
    gradients flow through the projection.
    """
    mean, variance = _marginals(project_field(field, conserved_totals(y), projection))
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
) -> dict[str, Float[Array, ""]]:
    """Batch means, in physical units (`scale` = the target's normalisation std per channel).

    mse: of the mean; crps: closed-form Gaussian CRPS per coordinate; constraint_error: largest
    ``|mean over space of the predicted mean - U|``; coverage90: share of the truth inside the
    central 90% interval; mean_std: the average predicted standard deviation.
    """
    totals = conserved_totals(y)
    post = project_field(field, totals, projection, noise_variance=noise_variance)
    mean, variance = _marginals(post)
    b, c = y.shape[0], y.shape[-1]
    flat_scale = jnp.tile(jnp.asarray(scale, mean.dtype), mean.shape[1] // c)[None, :]
    mean, std = mean * flat_scale, jnp.sqrt(jnp.maximum(variance, 0.0)) * flat_scale
    truth = y.reshape(b, -1) * flat_scale
    violation = conserved_totals(mean.reshape(y.shape)) - conserved_totals(truth.reshape(y.shape))
    return {
        "mse": jnp.mean((mean - truth) ** 2),
        "crps": crps_gaussian(mean, std**2, truth),
        "constraint_error": jnp.max(jnp.abs(violation)),
        "coverage90": jnp.mean(jnp.abs(truth - mean) <= _Z90 * std),
        "mean_std": jnp.mean(std),
    }
