"""What a diffusion network predicts, and exact conversions between the choices.

For ``x_t = alpha x0 + sigma eps`` (alpha, sigma and their time derivatives at one t), a network
of `kind`

- ``"eps"`` predicts the noise: ``x0 = (x_t - sigma eps) / alpha``;
- ``"x0"`` predicts the clean sample: ``eps = (x_t - alpha x0) / sigma``;
- ``"v"`` predicts ``v = alpha eps - sigma x0`` (Salimans & Ho):
  ``x0 = (alpha x_t - sigma v) / n``, ``eps = (sigma x_t + alpha v) / n``, ``n = alpha^2 + sigma^2``
  (n = 1 on variance-preserving paths: FLEX's ``x_hat = alpha z - sigma v``);
- ``"flow"`` predicts the velocity ``u = dx_t/dt = alpha' x0 + sigma' eps``:
  ``x0 = (sigma' x_t - sigma u) / det``, ``eps = (alpha u - alpha' x_t) / det``,
  ``det = alpha sigma' - sigma alpha'``;
- ``"edm"`` is Karras et al.'s preconditioned network F in the variance-exploding variables
  ``x = x_t / alpha``, ``s = sigma / alpha``: it sees ``(c_in x, c_noise)`` instead of ``(x_t, t)``
  and ``x0 = c_skip x + c_out F`` (`edm_preconditioning`). On a variance-preserving path with
  ``sigma_data = 1`` it reduces to ``F = -v``.

Every conversion is linear in ``(x_t, prediction)``, so the optimal (posterior-mean) predictor
of any kind converts to the optimal predictor of any other.
"""

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from sciml.diffusion.schedules import Schedule

Kind = Literal["eps", "x0", "v", "flow", "edm"]
Space = Literal["eps", "x0", "v", "flow"]
Coef = Float[ArrayLike, "*c"]
Scalar = Float[ArrayLike, ""]
"""A Python float or a 0-d array (a traced hyperparameter inside jit)."""
ApplyFn = Callable[[Any, Array, Array, Any], Array]
"""``apply_fn(params, x_t, t, cond) -> prediction``, x_t channels-last, t of shape (batch,)."""

_SPACES = ("eps", "x0", "v", "flow")


def _expand(c: Coef, x: Array) -> Array:
    """Give a scalar or per-sample coefficient (batch,) trailing unit axes to broadcast with x."""
    c = jnp.asarray(c)
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def _check_space(kind: str) -> None:
    if kind not in _SPACES:
        raise ValueError(f"prediction kind must be one of {_SPACES}, got {kind!r}")


def _derivatives(kind: str, d_alpha: Coef | None, d_sigma: Coef | None) -> None:
    if kind == "flow" and (d_alpha is None or d_sigma is None):
        raise ValueError("the 'flow' parameterisation needs d_alpha and d_sigma")


def to_x0_eps(
    pred: Float[Array, "*shape"],
    x_t: Float[Array, "*shape"],
    alpha: Coef,
    sigma: Coef,
    kind: Space,
    *,
    d_alpha: Coef | None = None,
    d_sigma: Coef | None = None,
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    """The clean sample and noise implied by a prediction of `kind` at x_t (module docstring).

    Args:
        pred, x_t: arrays of one shape (batch, ...).
        alpha, sigma: scalars or per-sample coefficients of shape (batch,).
        kind: "eps", "x0", "v" or "flow".
        d_alpha, d_sigma: keyword-only time derivatives, needed for "flow" only.
    Returns:
        ``(x0, eps)``, each shaped like x_t.
    """
    _check_space(kind)
    _derivatives(kind, d_alpha, d_sigma)
    a, s = _expand(alpha, x_t), _expand(sigma, x_t)
    if kind == "eps":
        return (x_t - s * pred) / a, pred
    if kind == "x0":
        return pred, (x_t - a * pred) / s
    if kind == "v":
        n = a**2 + s**2
        return (a * x_t - s * pred) / n, (s * x_t + a * pred) / n
    da, ds = _expand(d_alpha, x_t), _expand(d_sigma, x_t)
    det = a * ds - s * da
    return (ds * x_t - s * pred) / det, (a * pred - da * x_t) / det


def from_x0_eps(
    x0: Float[Array, "*shape"],
    eps: Float[Array, "*shape"],
    alpha: Coef,
    sigma: Coef,
    kind: Space,
    *,
    d_alpha: Coef | None = None,
    d_sigma: Coef | None = None,
) -> Float[Array, "*shape"]:
    """What a network of `kind` predicts for a given (x0, eps): its training target.

    ``eps``, ``x0``, ``v = alpha eps - sigma x0`` or ``u = alpha' x0 + sigma' eps``.

    Args:
        x0, eps: arrays of one shape (batch, ...).
        alpha, sigma: scalars or per-sample coefficients of shape (batch,).
        kind: "eps", "x0", "v" or "flow".
        d_alpha, d_sigma: keyword-only time derivatives, needed for "flow" only.
    Returns:
        The target, shaped like x0.
    """
    _check_space(kind)
    _derivatives(kind, d_alpha, d_sigma)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return _expand(alpha, x0) * eps - _expand(sigma, x0) * x0
    return _expand(d_alpha, x0) * x0 + _expand(d_sigma, x0) * eps


def to_x0(
    pred: Float[Array, "*shape"],
    x_t: Float[Array, "*shape"],
    alpha: Coef,
    sigma: Coef,
    kind: Space,
    *,
    d_alpha: Coef | None = None,
    d_sigma: Coef | None = None,
) -> Float[Array, "*shape"]:
    """The clean-sample estimate implied by a prediction of `kind` (see `to_x0_eps`)."""
    return to_x0_eps(pred, x_t, alpha, sigma, kind, d_alpha=d_alpha, d_sigma=d_sigma)[0]


def to_eps(
    pred: Float[Array, "*shape"],
    x_t: Float[Array, "*shape"],
    alpha: Coef,
    sigma: Coef,
    kind: Space,
    *,
    d_alpha: Coef | None = None,
    d_sigma: Coef | None = None,
) -> Float[Array, "*shape"]:
    """The noise estimate implied by a prediction of `kind` (see `to_x0_eps`)."""
    return to_x0_eps(pred, x_t, alpha, sigma, kind, d_alpha=d_alpha, d_sigma=d_sigma)[1]


def convert(
    pred: Float[Array, "*shape"],
    x_t: Float[Array, "*shape"],
    alpha: Coef,
    sigma: Coef,
    source: Space,
    target: Space,
    *,
    d_alpha: Coef | None = None,
    d_sigma: Coef | None = None,
) -> Float[Array, "*shape"]:
    """Re-express a prediction of kind `source` as one of kind `target`, exactly.

    Args:
        pred, x_t: arrays of one shape (batch, ...).
        alpha, sigma: scalars or per-sample coefficients of shape (batch,).
        source, target: "eps", "x0", "v" or "flow".
        d_alpha, d_sigma: keyword-only time derivatives, needed when either kind is "flow".
    Returns:
        The prediction in the `target` space, shaped like x_t.
    """
    x0, eps = to_x0_eps(pred, x_t, alpha, sigma, source, d_alpha=d_alpha, d_sigma=d_sigma)
    return from_x0_eps(x0, eps, alpha, sigma, target, d_alpha=d_alpha, d_sigma=d_sigma)


class EDMCoefficients(NamedTuple):
    """Karras et al. (2022) preconditioning, Table 1: ``D(x) = c_skip x + c_out F(c_in x, c_noise)``."""

    c_skip: Array
    c_out: Array
    c_in: Array
    c_noise: Array


def edm_preconditioning(sigma: Coef, sigma_data: Scalar = 0.5) -> EDMCoefficients:
    """EDM preconditioning coefficients at noise level sigma (variance-exploding variables).

    ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``,
    ``c_in = 1 / sqrt(s^2 + sd^2)``, ``c_noise = ln(s) / 4``, sd = sigma_data. They make the
    network input and its training target unit-variance when x0 has standard deviation sd, and
    the EDM loss weight ``(s^2 + sd^2) / (s sd)^2`` is ``1 / c_out^2``.

    Args:
        sigma: noise level(s), any shape.
        sigma_data: the data standard deviation.
    Returns:
        `EDMCoefficients`, each shaped like sigma.
    """
    s = jnp.asarray(sigma)
    total = s**2 + sigma_data**2
    return EDMCoefficients(
        c_skip=sigma_data**2 / total,
        c_out=s * sigma_data / jnp.sqrt(total),
        c_in=1 / jnp.sqrt(total),
        c_noise=jnp.log(s) / 4,
    )


def _coefficients(schedule: Schedule, t: Array) -> tuple[Array, Array, Array, Array]:
    return schedule.alpha(t), schedule.sigma(t), schedule.d_alpha(t), schedule.d_sigma(t)


def network_inputs(
    x_t: Float[Array, "b *spatial c"],
    t: Float[Array, " b"],
    schedule: Schedule,
    kind: Kind,
    sigma_data: Scalar = 0.5,
) -> tuple[Float[Array, "b *spatial c"], Float[Array, " b"]]:
    """What the network is called with: ``(x_t, t)``, or ``(c_in x_t / alpha, c_noise)`` for "edm"."""
    if kind != "edm":
        return x_t, t
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    c = edm_preconditioning(sigma / alpha, sigma_data)
    return _expand(c.c_in / alpha, x_t) * x_t, c.c_noise


def network_target(
    x0: Float[Array, "b *spatial c"],
    eps: Float[Array, "b *spatial c"],
    t: Float[Array, " b"],
    schedule: Schedule,
    kind: Kind,
    sigma_data: Scalar = 0.5,
) -> Float[Array, "b *spatial c"]:
    """The network's regression target for ``x_t = alpha(t) x0 + sigma(t) eps``.

    For "edm" it is ``(x0 - c_skip x) / c_out`` with ``x = x0 + (sigma / alpha) eps``.
    """
    alpha, sigma, d_alpha, d_sigma = _coefficients(schedule, t)
    if kind != "edm":
        return from_x0_eps(x0, eps, alpha, sigma, kind, d_alpha=d_alpha, d_sigma=d_sigma)
    s = sigma / alpha
    c = edm_preconditioning(s, sigma_data)
    x = x0 + _expand(s, eps) * eps
    return (x0 - _expand(c.c_skip, x) * x) / _expand(c.c_out, x)


def network_to_x0_eps(
    out: Float[Array, "b *spatial c"],
    x_t: Float[Array, "b *spatial c"],
    t: Float[Array, " b"],
    schedule: Schedule,
    kind: Kind,
    sigma_data: Scalar = 0.5,
) -> tuple[Float[Array, "b *spatial c"], Float[Array, "b *spatial c"]]:
    """``(x0, eps)`` implied by the network output `out` at ``(x_t, t)``."""
    alpha, sigma, d_alpha, d_sigma = _coefficients(schedule, t)
    if kind != "edm":
        return to_x0_eps(out, x_t, alpha, sigma, kind, d_alpha=d_alpha, d_sigma=d_sigma)
    s = sigma / alpha
    c = edm_preconditioning(s, sigma_data)
    x = x_t / _expand(alpha, x_t)
    x0 = _expand(c.c_skip, x) * x + _expand(c.c_out, x) * out
    return x0, (x - x0) / _expand(s, x)


def denoise(
    apply_fn: ApplyFn,
    params: Any,
    x_t: Float[Array, "b *spatial c"],
    t: Float[Array, " b"],
    cond: Any,
    schedule: Schedule,
    *,
    kind: Kind,
    sigma_data: Scalar = 0.5,
) -> tuple[Float[Array, "b *spatial c"], Float[Array, "b *spatial c"]]:
    """Call the network at ``(x_t, t)`` and return its ``(x0, eps)`` estimates.

    Args:
        apply_fn: ``apply_fn(params, x_in, t_in, cond)``, with inputs from `network_inputs`.
        params, cond: passed through (cond may be any pytree or None).
        x_t: noisy sample, (batch, *spatial, c).
        t: times, (batch,).
        schedule: the path x_t was drawn from.
        kind: keyword-only parameterisation of the network.
        sigma_data: keyword-only, for "edm".
    Returns:
        ``(x0_hat, eps_hat)``, each shaped like x_t.
    """
    x_in, t_in = network_inputs(x_t, t, schedule, kind, sigma_data)
    out = apply_fn(params, x_in, t_in, cond)
    return network_to_x0_eps(out, x_t, t, schedule, kind, sigma_data)


def predict(
    apply_fn: ApplyFn,
    params: Any,
    x_t: Float[Array, "b *spatial c"],
    t: Float[Array, " b"],
    cond: Any,
    schedule: Schedule,
    *,
    kind: Kind,
    space: Space,
    sigma_data: Scalar = 0.5,
) -> Float[Array, "b *spatial c"]:
    """The network's prediction expressed in `space` (e.g. a velocity for ODE samplers).

    Same arguments as `denoise`, plus `space` ("eps", "x0", "v" or "flow"); when it equals `kind`
    the raw network output is returned without a round trip.
    """
    if space == kind:
        x_in, t_in = network_inputs(x_t, t, schedule, kind, sigma_data)
        return apply_fn(params, x_in, t_in, cond)
    x0, eps = denoise(apply_fn, params, x_t, t, cond, schedule, kind=kind, sigma_data=sigma_data)
    alpha, sigma, d_alpha, d_sigma = _coefficients(schedule, t)
    return from_x0_eps(x0, eps, alpha, sigma, space, d_alpha=d_alpha, d_sigma=d_sigma)
