"""Samplers from t = 1 (source) to t = 0 (data): DDIM, EDM Heun, Euler and diffrax ODE solvers.

Every sampler has the signature ``sampler(apply_fn, params, cond, *, key, shape, schedule, ...)``,
draws its own initial noise ``sigma(t_max) N(0, I)`` from `key` (the ``alpha(t_max) x0`` part of
the prior is dropped: it is 0 for flow matching and ~1e-5 for `CosineVP`), and returns one sample
per batch row of `shape`. The flow samplers take any noise prior instead of N(0, I)
(``prior=``, a `sciml.diffusion.priors.Prior`: functional flow matching's GRF, GP or uniform
noise), drawn as ``sigma(t_max) prior.sample(key, shape)``. They are jitted with `apply_fn`, `shape`, `n_steps` and the method
options static: pass the same `apply_fn` object (e.g. ``model.apply``) to reuse the compiled
program; new keys, params or conds of the same shapes do not recompile. `ensemble` draws several
independent samples per condition.

The deterministic ones integrate the probability-flow ODE ``dx/dt = alpha' x0_hat + sigma' eps_hat``
of the path, with any network parameterisation (`sciml.diffusion.parameterization`).
"""

import functools
from collections.abc import Callable
from typing import Any, Literal

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sciml.diffusion.parameterization import ApplyFn, Kind, Scalar, denoise, predict
from sciml.diffusion.priors import Prior
from sciml.diffusion.schedules import Schedule, karras_sigmas

Sample = Float[Array, "b *spatial c"]
_STATIC = ("apply_fn", "shape", "n_steps", "kind", "dtype")


def _times(x: Array, t: Array) -> Array:
    return jnp.full((x.shape[0],), t, x.dtype)


def _initial(
    key: PRNGKeyArray, shape: tuple[int, ...], dtype: Any, std: Array, prior: Prior | None = None
) -> Array:
    noise = (
        jax.random.normal(key, shape, dtype) if prior is None else prior.sample(key, shape, dtype)
    )
    return std.astype(dtype) * noise


@functools.partial(jax.jit, static_argnames=(*_STATIC, "eta", "denoise_last"))
def ddim(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    schedule: Schedule,
    n_steps: int,
    kind: Kind = "v",
    eta: float = 0.0,
    sigma_data: Scalar = 0.5,
    t_max: Scalar = 1.0,
    t_min: Scalar = 0.0,
    denoise_last: bool = True,
    dtype: Any = jnp.float32,
) -> Sample:
    """DDIM (Song et al. 2021) on a uniform time grid from t_max to t_min (FLEX's sampler).

    Step t -> s with the model's (x0_hat, eps_hat) at t:
    ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z`` with
    ``c = eta (sigma_s / sigma_t) sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2)``, the
    ancestral posterior standard deviation times eta (eta = 0: deterministic; 1: DDPM-like).
    The final step returns x0_hat itself (alpha = 1, sigma = 0), so there are `n_steps` network
    calls; FLEX uses ``n_steps=2`` with v-prediction.

    ``denoise_last=False`` makes the last step an ordinary step to ``s = t_min > 0`` and returns
    ``x_s / alpha_s``, the data plus ``N(0, (sigma_s / alpha_s)^2)`` noise (exactly so for an
    exact denoiser as the steps grow), instead of the last call's posterior mean
    ``E[x0 | x_t]``, whose variance lacks ``E Var[x0 | x_t]``: with 2 steps the first call, at
    t = 1, sees no data, so the default output is a posterior mean at the midpoint (for Gaussian
    data of std S, std 0.4 S; ending noisy at t_min = 0.15 with eta = 1: 0.63 S). Same number of
    network calls.

    Args:
        apply_fn: ``apply_fn(params, x_t, t, cond) -> prediction`` (static).
        params, cond: the network's parameters and conditioning (any pytree or None).
        key: keyword-only PRNG key (initial noise and, for eta > 0, step noise).
        shape: sample shape (batch, *spatial, c) (static).
        schedule: the path the network was trained on.
        n_steps: number of network calls (static).
        kind: the network's parameterisation (static).
        eta: stochasticity, >= 0 (static).
        sigma_data: for ``kind="edm"``.
        t_max, t_min: the time grid's ends.
        denoise_last: return the last call's x0_hat (True) or the noisy ``x_{t_min}`` rescaled
            by ``1 / alpha(t_min)`` (False; needs t_min > 0) (static).
        dtype: sample dtype (static).
    Returns:
        Samples of `shape`.
    """
    key_init, key_steps = jax.random.split(key)
    ts = jnp.linspace(t_max, t_min, n_steps + 1, dtype=dtype)
    x = _initial(key_init, shape, dtype, schedule.sigma(ts[0]))
    last = (jnp.arange(n_steps) == n_steps - 1) & denoise_last

    def step(x: Array, inputs: tuple) -> tuple[Array, None]:
        t, s, is_last, k = inputs
        x0, eps = denoise(
            apply_fn, params, x, _times(x, t), cond, schedule, kind=kind, sigma_data=sigma_data
        )
        a_t, s_t = schedule.alpha(t), schedule.sigma(t)
        a_s = jnp.where(is_last, 1.0, schedule.alpha(s))
        s_s = jnp.where(is_last, 0.0, schedule.sigma(s))
        if eta == 0:
            return (a_s * x0 + s_s * eps).astype(dtype), None
        bridge = jnp.maximum(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
        c = eta * s_s / s_t * jnp.sqrt(bridge)
        noise = jax.random.normal(k, x.shape, x.dtype)
        x = a_s * x0 + jnp.sqrt(jnp.maximum(s_s**2 - c**2, 0.0)) * eps + c * noise
        return x.astype(dtype), None

    keys = jax.random.split(key_steps, n_steps)
    x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:], last, keys))
    if denoise_last:
        return x
    return (x / schedule.alpha(ts[-1])).astype(dtype)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "rho"))
def edm_heun(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    schedule: Schedule,
    n_steps: int,
    kind: Kind = "edm",
    rho: float | None = 7.0,
    sigma_data: Scalar = 0.5,
    t_max: Scalar = 1.0,
    t_min: Scalar = 0.0,
    dtype: Any = jnp.float32,
) -> Sample:
    """Karras et al. (2022) deterministic Heun sampler (Algorithm 1), 2 n_steps - 1 network calls.

    Integrates ``dx/ds = (x - D(x; s)) / s`` in the variance-exploding variables ``x = x_t / alpha``,
    ``s = sigma / alpha`` over N = `n_steps` levels ``s_0 > ... > s_{N-1}``, then ``s_N = 0``:
    Heun steps, except an Euler step into s = 0, which returns the last denoised estimate D.
    The levels are Karras's rho-grid (`karras_sigmas`) between ``s(t_max)`` and ``s(t_min)``,
    evaluated at ``t = schedule.t_of_log_snr(-2 log s)``; with ``rho=None`` they are ``s(t_i)`` on a
    uniform grid in t (for the `EDM` schedule both give its own grid when rho is its rho).
    Arguments as in `ddim`; `n_steps` >= 2, `rho` (static). The levels must be finite and
    positive: on `FlowMatching` (alpha(1) = 0, sigma(0) = 0) pass ``t_max < 1`` and ``t_min > 0``.
    """
    if n_steps < 2:
        raise ValueError(f"edm_heun needs n_steps >= 2, got {n_steps}")
    if rho is None:
        ts = jnp.linspace(t_max, t_min, n_steps, dtype=dtype)
        levels = schedule.sigma(ts) / schedule.alpha(ts)
    else:
        ends = jnp.exp(-schedule.log_snr(jnp.array([t_max, t_min], dtype)) / 2)
        levels = karras_sigmas(n_steps, ends[1], ends[0], rho)[:-1].astype(dtype)
        ts = schedule.t_of_log_snr(-2 * jnp.log(levels)).astype(dtype)

    def clean(x: Array, t: Array) -> Array:
        x_t = schedule.alpha(t).astype(dtype) * x
        x0, _ = denoise(
            apply_fn, params, x_t, _times(x, t), cond, schedule, kind=kind, sigma_data=sigma_data
        )
        return x0

    def step(x: Array, inputs: tuple) -> tuple[Array, None]:
        t, t_next, s, s_next = inputs
        slope = (x - clean(x, t)) / s
        x_euler = x + (s_next - s) * slope
        slope_next = (x_euler - clean(x_euler, t_next)) / s_next
        return (x + (s_next - s) * 0.5 * (slope + slope_next)).astype(dtype), None

    x = _initial(key, shape, dtype, levels[0])
    x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:], levels[:-1], levels[1:]))
    return clean(x, ts[-1])


def _velocity(apply_fn, params, cond, schedule, kind, sigma_data) -> Callable:
    def velocity(x: Array, t: Array) -> Array:
        return predict(
            apply_fn,
            params,
            x,
            _times(x, t),
            cond,
            schedule,
            kind=kind,
            space="flow",
            sigma_data=sigma_data,
        )

    return velocity


@functools.partial(jax.jit, static_argnames=(*_STATIC, "prior"))
def flow_euler(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    schedule: Schedule,
    n_steps: int,
    kind: Kind = "flow",
    sigma_data: Scalar = 0.5,
    t_max: Scalar = 1.0,
    t_min: Scalar = 0.0,
    dtype: Any = jnp.float32,
    prior: Prior | None = None,
) -> Sample:
    """Explicit Euler on the flow ``dx/dt = u(x, t)`` from t_max to t_min in `n_steps` steps.

    u is the network's velocity (converted from any parameterisation). Returns x at t_min (for
    `FlowMatching` with ``sigma_min = 0``, t_min = 0 is the data). `prior` (static): the noise
    the network was trained from (default N(0, I)); other arguments as in `ddim`.
    """
    velocity = _velocity(apply_fn, params, cond, schedule, kind, sigma_data)
    ts = jnp.linspace(t_max, t_min, n_steps + 1, dtype=dtype)

    def step(x: Array, inputs: tuple) -> tuple[Array, None]:
        t, s = inputs
        return (x + (s - t) * velocity(x, t)).astype(dtype), None

    x = _initial(key, shape, dtype, schedule.sigma(ts[0]), prior)
    x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:]))
    return x


_SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
}


@functools.partial(
    jax.jit,
    static_argnames=(*_STATIC, "solver", "adaptive", "max_steps", "return_steps", "prior"),
)
def flow_ode(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    schedule: Schedule,
    n_steps: int = 16,
    kind: Kind = "flow",
    solver: Literal["euler", "heun", "midpoint", "bosh3", "tsit5", "dopri5"] = "tsit5",
    adaptive: bool = True,
    rtol: Scalar = 1e-5,
    atol: Scalar = 1e-5,
    max_steps: int = 4096,
    sigma_data: Scalar = 0.5,
    t_max: Scalar = 1.0,
    t_min: Scalar = 0.0,
    dtype: Any = jnp.float32,
    return_steps: bool = False,
    prior: Prior | None = None,
) -> Sample | tuple[Sample, Int[Array, ""]]:
    """The probability-flow ODE ``dx/dt = u(x, t)`` from t_max to t_min solved by diffrax.

    ``adaptive=True``: an embedded Runge-Kutta pair (Tsit5 / Dopri5 / Bosh3 / Heun) with a PID
    step-size controller (rtol, atol; one error norm over the whole batch), starting from
    ``dt = (t_max - t_min) / n_steps``. ``adaptive=False``: `n_steps` fixed steps of `solver`.

    Args:
        solver: diffrax solver name (static).
        adaptive: step-size control (static).
        rtol, atol: tolerances of the controller.
        max_steps: diffrax's step budget (static); exceeding it raises at run time.
        return_steps: also return the number of accepted steps (static).
        prior: the noise the network was trained from (static; default N(0, I)).
        Others: as in `ddim`.
    Returns:
        Samples of `shape` (and the accepted step count).
    """
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {sorted(_SOLVERS)}, got {solver!r}")
    velocity = _velocity(apply_fn, params, cond, schedule, kind, sigma_data)
    t_max, t_min = jnp.asarray(t_max, dtype), jnp.asarray(t_min, dtype)
    x = _initial(key, shape, dtype, schedule.sigma(t_max), prior)
    controller = (
        diffrax.PIDController(rtol=rtol, atol=atol) if adaptive else diffrax.ConstantStepSize()
    )
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: velocity(y, t).astype(dtype)),
        _SOLVERS[solver](),
        t0=t_max,
        t1=t_min,
        dt0=(t_min - t_max) / n_steps,
        y0=x,
        stepsize_controller=controller,
        max_steps=max_steps,
        saveat=diffrax.SaveAt(t1=True),
    )
    sample = solution.ys[0]
    return (sample, solution.stats["num_accepted_steps"]) if return_steps else sample


def ensemble(
    sampler: Callable[..., Array],
    key: PRNGKeyArray,
    n_members: int,
    *args: Any,
    batch_size: int | None = None,
    **kwargs: Any,
) -> Float[Array, "m b *spatial c"]:
    """`n_members` independent draws of ``sampler(*args, key=k, **kwargs)``, stacked in front.

    Args:
        sampler: any sampler here (or a `Residual.sample`-style callable taking ``key=``).
        key: split into one key per member.
        n_members: ensemble size.
        *args, **kwargs: passed to the sampler.
        batch_size: keyword-only; None vmaps over all members at once, otherwise members are
            drawn `batch_size` at a time (`jax.lax.map`), bounding memory.
    Returns:
        Shape (n_members, *sample_shape).
    """
    keys = jax.random.split(key, n_members)

    def draw(k: PRNGKeyArray) -> Array:
        return sampler(*args, key=k, **kwargs)

    if batch_size is None:
        return jax.vmap(draw)(keys)
    return jax.lax.map(draw, keys, batch_size=batch_size)
