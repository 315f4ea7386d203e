"""Denoising and flow-matching training losses with per-noise-level weightings.

``L = mean_b[ w(log_snr(t_b)) * mean_elements rho(pred_b - target_b) ]`` with t drawn by the
schedule (`Schedule.sample_t`), ``x_t = alpha(t) x0 + sigma(t) eps``, rho an elementwise L2, L1
or Huber penalty, and the comparison made in the network's own output space, or in `loss_space`
if given (both converted exactly, see `sciml.diffusion.parameterization`). Weightings are
functions of the log-SNR; they are defined in the literature for a particular space:

- ``sigmoid_weight`` (Kingma & Gao 2023): ``sigmoid(bias - log_snr)`` on the eps-space L2 loss
  (``loss_space="eps"``);
- ``edm_weight`` (Karras et al. 2022): ``(s^2 + sd^2) / (s sd)^2``, ``s = exp(-log_snr / 2)``, on
  the x0-space L2 loss (``loss_space="x0"``); the same loss as ``kind="edm"`` unweighted;
- ``uniform_weight``: 1 (FLEX's v-space L1; flow matching's velocity L2).
"""

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.diffusion.parameterization import (
    ApplyFn,
    Kind,
    Scalar,
    Space,
    _expand,
    network_inputs,
    network_target,
    network_to_x0_eps,
)
from sciml.diffusion.schedules import FlowMatching, Schedule

Penalty = Literal["l2", "l1", "huber"]
Weighting = Literal["uniform", "sigmoid", "edm"] | Callable[[Array], Array]


def pointwise_loss(
    diff: Float[Array, "*shape"], kind: Penalty = "l2", *, huber_delta: Scalar = 1.0
) -> Float[Array, "*shape"]:
    """Elementwise penalty of a residual ``diff = pred - target``.

    ``l2``: ``d^2``; ``l1``: ``|d|``; ``huber``: ``d^2 / 2`` for ``|d| <= delta``, else
    ``delta (|d| - delta / 2)``.
    """
    if kind == "l2":
        return diff**2
    if kind == "l1":
        return jnp.abs(diff)
    if kind == "huber":
        a = jnp.abs(diff)
        return jnp.where(a <= huber_delta, 0.5 * diff**2, huber_delta * (a - 0.5 * huber_delta))
    raise ValueError(f"loss must be 'l2', 'l1' or 'huber', got {kind!r}")


def uniform_weight(log_snr: Float[Array, "*t"]) -> Float[Array, "*t"]:
    """Weight 1 at every noise level."""
    return jnp.ones_like(log_snr)


def sigmoid_weight(log_snr: Float[Array, "*t"], bias: Scalar = 0.0) -> Float[Array, "*t"]:
    """Kingma & Gao (2023) sigmoid weighting ``sigmoid(bias - log_snr)`` (for eps-space L2)."""
    return jax.nn.sigmoid(bias - log_snr)


def edm_weight(log_snr: Float[Array, "*t"], sigma_data: Scalar = 0.5) -> Float[Array, "*t"]:
    """Karras et al. (2022) weighting ``(s^2 + sd^2) / (s sd)^2``, ``s = exp(-log_snr / 2)``.

    s is the variance-exploding noise level sigma / alpha; the weight is for x0-space L2.
    """
    return (jnp.exp(-log_snr) + sigma_data**2) / (jnp.exp(-log_snr) * sigma_data**2)


def _weighting(weighting: Weighting, sigma_data: Scalar, sigmoid_bias: Scalar) -> Callable:
    if callable(weighting):
        return weighting
    table = {
        "uniform": uniform_weight,
        "sigmoid": functools.partial(sigmoid_weight, bias=sigmoid_bias),
        "edm": functools.partial(edm_weight, sigma_data=sigma_data),
    }
    if weighting not in table:
        raise ValueError(
            f"weighting must be one of {sorted(table)} or a callable, got {weighting!r}"
        )
    return table[weighting]


def diffusion_loss(
    apply_fn: ApplyFn,
    params: Any,
    x0: Float[Array, "b *spatial c"],
    cond: Any,
    key: PRNGKeyArray,
    schedule: Schedule,
    *,
    kind: Kind = "v",
    loss: Penalty = "l2",
    weighting: Weighting = "uniform",
    loss_space: Space | None = None,
    sigma_data: Scalar = 0.5,
    sigmoid_bias: Scalar = 0.0,
    huber_delta: Scalar = 1.0,
) -> Float[Array, ""]:
    """Weighted denoising loss of a network on a batch of clean samples (module docstring).

    Args:
        apply_fn: ``apply_fn(params, x_t, t, cond) -> prediction`` (for ``kind="edm"`` called
            with ``(c_in x_t / alpha, c_noise)``, see `network_inputs`).
        params: the network parameters (differentiate with respect to them).
        x0: clean samples, (batch, *spatial, c).
        cond: conditioning passed through to apply_fn: any pytree, or None.
        key: PRNG key for t and eps.
        schedule: the probability path.
        kind: keyword-only, what the network predicts ("eps", "x0", "v", "flow", "edm").
        loss: "l2", "l1" or "huber" (delta `huber_delta`).
        weighting: "uniform", "sigmoid" (bias `sigmoid_bias`), "edm" (`sigma_data`) or a
            callable ``log_snr (batch,) -> weight (batch,)``.
        loss_space: compare in this space instead of the network's ("eps", "x0", "v", "flow").
        sigma_data: the data standard deviation for "edm" preconditioning and weighting.
    Returns:
        The scalar loss.
    """
    key_t, key_eps = jax.random.split(key)
    t = schedule.sample_t(key_t, (x0.shape[0],)).astype(x0.dtype)
    eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    x_t = _expand(alpha, x0) * x0 + _expand(sigma, x0) * eps
    x_in, t_in = network_inputs(x_t, t, schedule, kind, sigma_data)
    out = apply_fn(params, x_in, t_in, cond)
    if loss_space is None or loss_space == kind:
        target = network_target(x0, eps, t, schedule, kind, sigma_data)
    else:
        x0_hat, eps_hat = network_to_x0_eps(out, x_t, t, schedule, kind, sigma_data)
        out = network_target(x0_hat, eps_hat, t, schedule, loss_space, sigma_data)
        target = network_target(x0, eps, t, schedule, loss_space, sigma_data)
    penalty = pointwise_loss(out - target, loss, huber_delta=huber_delta)
    per_sample = jnp.mean(penalty.reshape(penalty.shape[0], -1), axis=1)
    weight = _weighting(weighting, sigma_data, sigmoid_bias)(schedule.log_snr(t))
    return jnp.mean(weight * per_sample)


def flow_matching_loss(
    apply_fn: ApplyFn,
    params: Any,
    x0: Float[Array, "b *spatial c"],
    cond: Any,
    key: PRNGKeyArray,
    schedule: Schedule = FlowMatching(),  # noqa: B008 (frozen and hashable)
    *,
    loss: Penalty = "l2",
    weighting: Weighting = "uniform",
    huber_delta: Scalar = 1.0,
) -> Float[Array, ""]:
    """Conditional flow matching: regress the velocity ``alpha'(t) x0 + sigma'(t) eps``.

    On the default rectified-flow path the target is ``eps - x0``. The network predicts the
    velocity (``kind="flow"``); other arguments as in `diffusion_loss`.
    """
    return diffusion_loss(
        apply_fn,
        params,
        x0,
        cond,
        key,
        schedule,
        kind="flow",
        loss=loss,
        weighting=weighting,
        huber_delta=huber_delta,
    )
