"""Residual diffusion: model ``r = target - base(cond)`` and sample ``target = base(cond) + r``.

FLEX trains in residual space: for super-resolution the base is the bicubic upsampling of the
coarse field, for forecasting the last snapshot; CorrDiff uses a trained regression model. The
residual has a smaller variance than the target, which makes the v-target better conditioned.
`Residual` is model-agnostic: it wraps any loss of the form ``loss(apply_fn, params, x0, cond,
key, ...)`` and any sampler of the form ``sampler(apply_fn, params, cond, *, key, shape, ...)``
from this package, and the network still sees the full `cond`.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.fields import spectral_resample

BaseFn = Callable[[Any], Array]
Field = Float[Array, "b *spatial c"]


@dataclasses.dataclass(frozen=True)
class Residual:
    """Train and sample in the residual space of a base prediction.

    Attributes:
        base_fn: ``base_fn(cond) -> base``, an array shaped like the targets (batch, *spatial, c).
        project: optional map applied to every sample ``base + r`` (not to training targets),
            e.g. onto a linear subspace the data are known to lie in, such as the Fourier modes
            a spectral solver keeps (`sciml.fields.lowpass`).

    Example:
        >>> res = Residual(upsample_base((256, 256)))
        >>> loss = res.loss(diffusion_loss, model.apply, params, x_hr, x_lr, key, schedule=CosineVP())
        >>> x_hat = res.sample(ddim, model.apply, params, x_lr, key=key, schedule=CosineVP(), n_steps=2)
    """

    base_fn: BaseFn
    project: Callable[[Array], Array] | None = None

    def residual(self, target: Field, cond: Any) -> Field:
        """``target - base_fn(cond)``."""
        return target - self.base_fn(cond)

    def reconstruct(self, residual: Field, cond: Any) -> Field:
        """``base_fn(cond) + residual``."""
        return self.base_fn(cond) + residual

    def loss(
        self,
        loss_fn: Callable[..., Array],
        apply_fn: Callable,
        params: Any,
        target: Field,
        cond: Any,
        key: PRNGKeyArray,
        **kwargs: Any,
    ) -> Float[Array, ""]:
        """``loss_fn(apply_fn, params, target - base_fn(cond), cond, key, **kwargs)``."""
        return loss_fn(apply_fn, params, self.residual(target, cond), cond, key, **kwargs)

    def sample(
        self,
        sampler: Callable[..., Array],
        apply_fn: Callable,
        params: Any,
        cond: Any,
        *,
        key: PRNGKeyArray,
        **kwargs: Any,
    ) -> Field:
        """``base_fn(cond) + sampler(apply_fn, params, cond, key=key, shape=base.shape, ...)``,
        then `project` if set."""
        base = self.base_fn(cond)
        kwargs = {"shape": base.shape, "dtype": base.dtype, **kwargs}
        sample = base + sampler(apply_fn, params, cond, key=key, **kwargs)
        return sample if self.project is None else self.project(sample)


def _select(cond: Any, field: str | int | None) -> Any:
    return cond if field is None else cond[field]


def upsample_base(
    shape: tuple[int, ...],
    method: Literal["bicubic", "spectral", "linear", "nearest", "lanczos3"] = "bicubic",
    *,
    field: str | int | None = None,
) -> BaseFn:
    """A base that interpolates a coarse field (batch, *coarse, c) to (batch, *shape, c).

    Args:
        shape: the fine spatial shape.
        method: "spectral" (`sciml.fields.spectral_resample`, for periodic fields) or a
            `jax.image.resize` method (FLEX uses "bicubic").
        field: keyword-only; take ``cond[field]`` when cond is a dict or sequence.
    """
    shape = tuple(shape)

    def base(cond: Any) -> Array:
        coarse = _select(cond, field)
        if method == "spectral":
            return spectral_resample(coarse, shape)
        return jax.image.resize(coarse, (coarse.shape[0], *shape, coarse.shape[-1]), method)

    return base


def last_snapshot_base(channels: int, *, field: str | int | None = None) -> BaseFn:
    """A base that returns the last snapshot: the trailing `channels` channels of cond.

    For past snapshots concatenated on the channel axis, oldest first (FLEX's forecasting).
    """

    def base(cond: Any) -> Array:
        return _select(cond, field)[..., -channels:]

    return base


def regression_base(apply_fn: Callable[[Any, Any], Array], params: Any) -> BaseFn:
    """A base from a trained deterministic model: ``apply_fn(params, cond)`` (CorrDiff's mean).

    The regression model is frozen: no gradient flows into `params`.
    """

    def base(cond: Any) -> Array:
        return apply_fn(jax.lax.stop_gradient(params), cond)

    return base
