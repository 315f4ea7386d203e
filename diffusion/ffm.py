"""Functional flow matching (FFM; Kerrigan et al. 2024, ECI's prior): model, loss, samplers.

**Time convention: the package's, t = 0 data, t = 1 noise** (`sciml.diffusion.schedules`):
``x_t = (1 - t) x_data + t x_noise`` with ``x_noise ~ prior`` (any `sciml.diffusion.priors`
prior, e.g. a GRF instead of white noise) and the velocity target ``dx_t/dt = x_noise - x_data``.
ECI's paper runs time the other way (tau = 1 - t, tau = 0 noise): its network ``v_paper(x, tau)``
is ``-v(x, 1 - tau)`` here. With `WhiteNoise` the loss is exactly `flow_matching_loss` on the
default `FlowMatching` path.

The network contract is the package's ``apply_fn(params, x_t, t, cond) -> velocity``;
`VelocityFNO.apply` satisfies it directly.

Conditional FFM (ECI's conditional baseline): the same network and loss with
``cond = observed_condition(values, mask)``, the known entries (zero elsewhere) and their mask as
two extra input channels; in training the mask is applied to the data itself, in sampling the
values and mask come from a value-fixing constraint (`selection_observation`). It learns to
respect the observations, but unlike ECI nothing enforces them.
"""

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from sciml import config as config_lib
from sciml.constraints import LinearConstraint
from sciml.diffusion.parameterization import ApplyFn, Scalar
from sciml.diffusion.priors import Prior
from sciml.diffusion.samplers import flow_euler, flow_ode
from sciml.diffusion.schedules import FlowMatching
from sciml.nn import MLP, SpectralConv, gelu
from sciml.operators.fno import positional_grid
from sciml.train import TrainState, make_train_step

Sample = Float[Array, "b *spatial c"]


def sinusoidal_embedding(t: Float[Array, " b"], n_features: int) -> Float[Array, "b f"]:
    """``[t, sin(f_k t), cos(f_k t)]`` with ``n_features // 2`` frequencies in [1, 100] (log)."""
    freqs = jnp.exp(jnp.linspace(0.0, np.log(100.0), n_features // 2, dtype=t.dtype))
    arg = t[:, None] * freqs[None, :]
    return jnp.concatenate([t[:, None], jnp.sin(arg), jnp.cos(arg)], axis=-1)


class VelocityFNO(nn.Module):
    """An FNO velocity field ``v(x_t, t, cond)`` for flow matching on channels-last fields.

    The input channels are x_t, the conditioning fields (if any), a constant channel holding t
    and the grid coordinates (`positional_grid`). Fourier layers as in `sciml.operators.FNO`,
    ``v <- gelu(FiLM_l(W v + b + K v))``, where ``FiLM_l(v) = (1 + s_l(t)) v + h_l(t)`` with
    (s_l, h_l) produced by an MLP of a sinusoidal embedding of t (zero at initialisation). With
    ``padding = p > 0`` each spatial axis is zero-padded by p points before the Fourier layers
    and cropped after them (non-periodic domains).

    Attributes:
        out_channels: channels of the velocity (= those of x_t).
        modes: Fourier modes kept per axis.
        width: channels of the Fourier layers.
        n_layers: number of Fourier layers.
        projection_width: hidden units of the pointwise output MLP.
        time_features: size of the sinusoidal time embedding.
        padding: zero padding per side of every spatial axis, in grid points.
        implementation: `SpectralConv`'s ("auto", "fft" or "dft").
    """

    out_channels: int
    modes: int | tuple[int, ...] = 16
    width: int = 32
    n_layers: int = 4
    projection_width: int = 128
    time_features: int = 32
    padding: int = 0
    implementation: str = "auto"

    @nn.compact
    def __call__(
        self, x: Float[Array, "b *spatial c"], t: Float[Array, " b"], cond: Any = None
    ) -> Float[Array, "b *spatial o"]:
        """Velocity at (x_t, t); `cond` is None or extra input fields (b, *spatial, cc)."""
        ndim = x.ndim - 2
        modes = (self.modes,) * ndim if isinstance(self.modes, int) else tuple(self.modes)
        ones = jnp.ones_like(x[..., :1])
        inputs = [x] if cond is None else [x, cond.astype(x.dtype)]
        time = t.astype(x.dtype).reshape((-1,) + (1,) * (ndim + 1))
        coords = positional_grid(x.shape[1:-1])[None].astype(x.dtype)
        inputs += [ones * time, ones * coords]
        v = nn.Dense(self.width)(jnp.concatenate(inputs, axis=-1))

        emb = sinusoidal_embedding(t.astype(x.dtype), self.time_features)
        emb = gelu(nn.Dense(self.width)(emb))
        film = nn.Dense(2 * self.n_layers * self.width, kernel_init=nn.initializers.zeros)(emb)
        film = film.reshape((-1,) + (1,) * ndim + (self.n_layers, 2, self.width))

        pad = [(0, 0)] + [(self.padding, self.padding)] * ndim + [(0, 0)]
        v = jnp.pad(v, pad)
        for layer in range(self.n_layers):
            v = SpectralConv(self.width, modes, self.implementation)(v) + nn.Dense(self.width)(v)
            v = (1 + film[..., layer, 0, :]) * v + film[..., layer, 1, :]
            if layer < self.n_layers - 1:
                v = gelu(v)
        if self.padding:
            v = v[(slice(None),) + (slice(self.padding, -self.padding),) * ndim]
        return MLP((self.projection_width, self.out_channels))(v)


def _expand(t: Array, x: Array) -> Array:
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def ffm_loss(
    apply_fn: ApplyFn,
    params: Any,
    x_data: Sample,
    cond: Any,
    key: PRNGKeyArray,
    prior: Prior,
) -> Float[Array, ""]:
    """Functional flow-matching loss ``mean |v(x_t, t) - (x_noise - x_data)|^2``.

    ``t ~ U[0, 1)`` per sample, ``x_noise ~ prior``, ``x_t = (1 - t) x_data + t x_noise``.

    Args:
        apply_fn: ``apply_fn(params, x_t, t, cond) -> velocity``.
        params: the network's parameters.
        x_data: training fields (b, *spatial, c).
        cond: passed to apply_fn (None for the unconditional prior).
        key: PRNG key (t, then the noise: the same split as `flow_matching_loss`).
        prior: the noise distribution.
    Returns:
        The scalar loss (mean over samples and elements).
    """
    key_t, key_noise = jax.random.split(key)
    t = jax.random.uniform(key_t, (x_data.shape[0],), x_data.dtype)
    noise = prior.sample(key_noise, x_data.shape, x_data.dtype)
    x_t = (1 - _expand(t, x_data)) * x_data + _expand(t, x_data) * noise
    return jnp.mean((apply_fn(params, x_t, t, cond) - (noise - x_data)) ** 2)


def ffm_train_step(
    apply_fn: ApplyFn,
    prior: Prior,
    optimizer: optax.GradientTransformation,
    ema_decay: float | None = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    """A jitted ``step(state, batch)`` minimising `ffm_loss` (via `sciml.train.make_train_step`).

    `batch` is the data array (b, *spatial, c), or a pair ``(x_data, cond)``.
    """

    def loss_fn(params: Any, batch: Any, key: PRNGKeyArray) -> tuple[Array, dict]:
        x_data, cond = batch if isinstance(batch, tuple) else (batch, None)
        return ffm_loss(apply_fn, params, x_data, cond, key, prior), {}

    return make_train_step(loss_fn, optimizer, ema_decay)


def ffm_euler(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    prior: Prior,
    n_steps: int,
    dtype: Any = jnp.float32,
) -> Sample:
    """Unconstrained sampling: `n_steps` explicit Euler steps of ``dx/dt = v`` from t = 1 to 0.

    `flow_euler` on the rectified path (`FlowMatching`) from ``x_1 ~ prior``.

    Args:
        apply_fn: ``apply_fn(params, x_t, t, cond) -> velocity`` (static).
        params, cond: the network's parameters and conditioning.
        key: keyword-only PRNG key of the initial noise ``x_1 ~ prior``.
        shape: sample shape (b, *spatial, c) (static).
        prior: the noise prior the network was trained with (static).
        n_steps: network calls (static).
        dtype: sample dtype (static).
    Returns:
        Samples of `shape`.
    """
    return flow_euler(
        apply_fn,
        params,
        cond,
        key=key,
        shape=tuple(shape),
        schedule=FlowMatching(),
        n_steps=n_steps,
        prior=prior,
        dtype=dtype,
    )


def ffm_ode(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    prior: Prior,
    solver: Literal["tsit5", "dopri5", "bosh3", "heun"] = "dopri5",
    n_steps: int = 16,
    rtol: Scalar = 1e-5,
    atol: Scalar = 1e-5,
    max_steps: int = 4096,
    dtype: Any = jnp.float32,
) -> tuple[Sample, Int[Array, ""]]:
    """Unconstrained sampling by an adaptive diffrax solver (ECI: dopri5, rtol = atol = 1e-5).

    `flow_ode` on the rectified path (`FlowMatching`) from ``x_1 ~ prior``.

    Args:
        solver: embedded Runge-Kutta pair (static).
        n_steps: the initial step is ``1 / n_steps`` (static).
        rtol, atol: PID controller tolerances.
        max_steps: diffrax's step budget (static).
        Others: as in `ffm_euler`.
    Returns:
        (samples of `shape`, number of accepted steps).
    """
    if solver not in ("tsit5", "dopri5", "bosh3", "heun"):
        raise ValueError(f"solver must be one of bosh3, dopri5, heun, tsit5, got {solver!r}")
    return flow_ode(
        apply_fn,
        params,
        cond,
        key=key,
        shape=tuple(shape),
        schedule=FlowMatching(),
        n_steps=n_steps,
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        dtype=dtype,
        return_steps=True,
        prior=prior,
    )


def observed_condition(
    values: Float[Array | np.ndarray, "b *spatial c"],
    mask: Bool[Array | np.ndarray, "#b *#spatial #c"],
) -> Float[Array, "b *spatial c2"]:
    """Conditional FFM input ``[values * mask, mask]``: 2c channels on the fields' grid.

    Args:
        values: fields whose entries on the mask are known (b, *spatial, c), e.g. training data.
        mask: True where an entry is known, broadcastable to `values` (one mask for all, e.g.
            ``mask[None, ..., None]``, or one per sample).
    Returns:
        (b, *spatial, 2c): the known values (zero off the mask), then the mask as 0 / 1.
    """
    values = jnp.asarray(values)
    mask = jnp.broadcast_to(jnp.asarray(mask), values.shape).astype(values.dtype)
    return jnp.concatenate([values * mask, mask], axis=-1)


def selection_observation(
    constraint: LinearConstraint, spatial: tuple[int, ...]
) -> tuple[Float[Array, "*spatial"], Bool[np.ndarray, "*spatial"]]:
    """The known values and their mask of a constraint that fixes entries of a one-channel field.

    A value-fixing constraint (`value_constraint`, `slice_constraint`, initial and boundary
    values, their stacks) has rows that each select one unknown, no unknown twice; then
    ``mask = (column sums of A) > 0`` and ``values = A^T b``.

    Args:
        constraint: ``A u = b`` on fields of `spatial` (one channel).
        spatial: the grid.
    Returns:
        (values, mask), both of shape `spatial`; values are 0 off the mask.
    Raises:
        ValueError: A is not a selection (e.g. an integral or a periodicity constraint), or does
            not act on `spatial`.
    """
    matrix = np.asarray(constraint.matrix)
    n = int(np.prod(spatial))
    if matrix.shape[1] != n:
        raise ValueError(
            f"the constraint acts on {matrix.shape[1]} unknowns, the grid {spatial} has {n}"
        )
    counts = matrix.sum(axis=0)
    selection = (
        np.all((matrix == 0) | (matrix == 1))
        and np.all(matrix.sum(axis=1) == 1)
        and counts.max() <= 1
    )
    if not selection:
        raise ValueError(
            "a conditional FFM observes fixed values: the constraint must fix entries (value, slice,"
            " initial or boundary values), not combine them (integrals, periodicity)"
        )
    values = jnp.asarray(matrix.T) @ jnp.asarray(constraint.target)
    return values.reshape(spatial), counts.reshape(spatial) > 0


def ffm_checkpoint_metadata(
    model: VelocityFNO,
    prior: Prior,
    task: dict[str, Any],
    shape: tuple[int, ...],
    cond_channels: int = 0,
) -> dict[str, Any]:
    """Checkpoint metadata of an FFM prior on fields (1, *shape, 1): the model and noise prior
    as component specs, and the task (a component spec of the data family, e.g.
    ``sciml.pde.sampling_tasks.StokesTask``) that constrained-sampling configs refer to.
    `cond_channels` > 0: a conditional model taking cond (1, *shape, cond_channels)."""
    init_inputs = [[1, *shape, 1], [1]]  # model.init(key, x_t, t[, cond])
    if cond_channels:
        init_inputs.append([1, *shape, cond_channels])
    return {
        "checkpoint_format": 1,
        "model": config_lib.component_spec(model),
        "data": {
            "spatial_shape": list(shape),
            "in_channels": 1,
            "out_channels": model.out_channels,
            "mean": [0.0],
            "std": [1.0],
        },
        "init_inputs": init_inputs,
        "config": {"task": task, "prior": config_lib.component_spec(prior)},
    }
