"""Probabilistic heads: operator features -> a per-sample Gaussian over the output field (ProbHardE2E).

Design: one wrapper, `ProbabilisticOperator`, takes any operator of this package as a nested
component spec (``backbone: {type: sciml.operators.FNO, ...}``), sets its `out_channels` to
`features`, and puts a pointwise `GaussianHead` on top. Its output is a `GaussianField` of
channels-last arrays; `to_gaussians` flattens it into a batch of `sciml.constraints.Gaussian`
for the variance-weighted projection. A config reads::

    model:
      type: sciml.operators.ProbabilisticOperator
      out_channels: 1
      covariance: lowrank     # or diagonal
      rank: 4
      backbone: {type: sciml.operators.FNO, modes: 16, width: 32}

Training with a hard linear constraint (ProbHardE2E, closed-form CRPS of the projection)::

    field = model.apply(params, x)
    prior = to_gaussians(*field)                       # leaves with a leading batch axis
    post = jax.vmap(project_gaussian, in_axes=(0, None))(prior, constraint)
    variance = jax.vmap(Gaussian.variance)(post)       # (batch, n)
    loss = crps_gaussian(post.mean, variance, y.reshape(len(y), -1), reduction="sum")
"""

from collections.abc import Mapping
from typing import Any, Literal

import flax.linen as nn
import jax
import numpy as np
from jaxtyping import Array, Float

from sciml import config
from sciml.errors import ConfigError
from sciml.probabilistic import GaussianField

CovarianceKind = Literal["diagonal", "lowrank"]


class GaussianHead(nn.Module):
    """Pointwise head: features -> mean, ``softplus + min_variance`` variance, optional factor.

    Three Dense layers on the feature axis: the mean (c channels), the diagonal variance
    ``softplus(.) + min_variance`` (c channels) and, for ``covariance="lowrank"``, the factor
    (c r channels reshaped to (c, r), scaled by 1 / sqrt(r) so that its share of the marginal
    variance does not grow with r). Each column of F is a field, so the low-rank part couples all
    points of a sample through r shared directions.
    """

    out_channels: int
    covariance: CovarianceKind = "diagonal"
    rank: int = 4
    min_variance: float = 1e-6

    @nn.compact
    def __call__(self, features: Float[Array, "b *spatial f"]) -> GaussianField:
        c = self.out_channels
        mean = nn.Dense(c, name="mean")(features)
        variance = jax.nn.softplus(nn.Dense(c, name="variance")(features)) + self.min_variance
        if self.covariance == "diagonal":
            return GaussianField(mean, variance)
        if self.covariance != "lowrank" or self.rank < 1:
            raise ValueError(
                f"covariance must be 'diagonal' or 'lowrank' with rank >= 1,"
                f" got {self.covariance!r} with rank {self.rank}"
            )
        raw = nn.Dense(c * self.rank, name="factor")(features)
        factor = raw.reshape(*raw.shape[:-1], c, self.rank) / np.sqrt(self.rank)
        return GaussianField(mean, variance, factor)


class ProbabilisticOperator(nn.Module):
    """Any operator of this package with a `GaussianHead`: x -> `GaussianField` over the output.

    The backbone is a component spec ``{type: sciml.operators.X, **fields}`` without
    `out_channels` (set to `features`); it is validated like any config component when the
    wrapper is constructed, so a mistyped key fails at build time, naming the valid ones.

    Attributes:
        backbone: the operator's spec, e.g. ``{"type": "sciml.operators.FNO", "modes": 16}``.
        out_channels: channels c of the predicted field.
        covariance: "diagonal" or "lowrank" (``diag(variance) + F F^T``).
        rank: r, the low-rank factor's columns (lowrank only).
        features: channels the backbone hands to the head.
        min_variance: floor added to the softplus variance.
    """

    backbone: Mapping[str, Any]
    out_channels: int
    covariance: CovarianceKind = "diagonal"
    rank: int = 4
    features: int = 32
    min_variance: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        self._backbone_class()

    def _backbone_class(self) -> tuple[type, dict[str, Any]]:
        """The backbone's class and validated fields, `out_channels` set to `features`."""
        where = "model.backbone"
        spec = dict(self.backbone)
        if "out_channels" in spec:
            raise ConfigError(
                f"{where}.out_channels is set by the wrapper (its `features`); remove it"
            )
        cls = config.resolve_type(spec.pop("type", None), where)
        schema = config.component_schema(cls)
        if "out_channels" not in schema.model_fields:
            raise ConfigError(f"{where}: {cls.__name__} has no out_channels; it cannot be wrapped")
        spec["out_channels"] = self.features
        validated = config.validate(schema, spec, where=f"{where} ({cls.__name__})")
        return cls, {k: getattr(validated, k) for k in spec}

    @nn.compact
    def __call__(self, x: Float[Array, "b *spatial ci"]) -> GaussianField:
        cls, kwargs = self._backbone_class()
        features = cls(**kwargs, name="backbone")(x)
        head = GaussianHead(
            self.out_channels, self.covariance, self.rank, self.min_variance, name="head"
        )
        return head(features)
