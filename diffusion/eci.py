"""ECI sampling (Cheng et al., ICLR 2025): hard constraints on a flow-matching prior, gradient free.

**Time convention: the package's, t = 0 data, t = 1 noise** (`sciml.diffusion.ffm`); the paper's
time is tau = 1 - t. With the network's velocity ``v = dx_t/dt`` the extrapolation to the data end
is ``x_data_hat = x_t - t v(x_t, t)`` (the paper's ``x + (1 - tau) v_paper``). One ECI run makes
``n_steps * n_mix`` network calls, on the grid ``t_i = 1 - i / n_steps``:

```
x <- noise <- x_1 ~ prior;  counter <- 0
for i in 0 .. n_steps - 1:  t = 1 - i / n_steps,  s = t - 1 / n_steps
  for u in 0 .. n_mix - 1:
    counter += 1;  if counter % resample_every == 0: noise <- a fresh prior sample
    E: x_hat = x - t v(x, t)                    extrapolate to the data end
    C: x_hat = project(x_hat)                   exact correction onto the constraint set
    I: x = (1 - t') x_hat + t' noise,  t' = t (u < n_mix - 1: mix) or s (advance)
```
At the last step s = 0 exactly, so the sample *is* a projected field: any constraint with an exact
projection holds to round-off, whatever the network.

Corrections are callables ``project(x) -> x`` on a batch (b, *spatial, c). Ready-made exact ones:
`EuclideanProjection` (the L2 projection onto a `sciml.constraints.LinearConstraint` per sample:
values on a mask, initial / boundary slices, periodicity, integrals, their stacks) and
`ChainedProjection` (projections applied in turn: exact when their supports do not overlap).
Any other callable works too (a plain function, or a pytree with array leaves, which then are
arguments of the compiled sampler rather than constants).

Baseline: `guidance_sample`, DiffusionPDE-style gradient guidance on the extrapolated sample,
``x <- x + (s - t) v - eta grad_x mean_m r(x - t v(x, t))^2`` per sample, r the constraint
residual; the gradient goes through the network (one VJP per step) and the constraint is only
approached.
"""

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.constraints import LinearConstraint, NonlinearConstraint, project_euclidean
from sciml.diffusion.parameterization import ApplyFn, Scalar
from sciml.diffusion.priors import Prior

Sample = Float[Array, "b *spatial c"]
_STATIC = ("apply_fn", "shape", "prior", "n_steps", "dtype")


@flax.struct.dataclass
class EuclideanProjection:
    """The exact L2 projection of every sample onto ``A u = b`` (`project_euclidean`).

    ``u* = u - A^T (A A^T)^{-1} (A u - b)`` with u a sample (*spatial, c) flattened row-major
    (so with one channel the constraint is built on the (*spatial) grid). Matrix products run at
    full float32 precision even where the backend would default to reduced precision (TF32).

    Attributes:
        constraint: the linear equality, acting on ``prod(spatial) * c`` unknowns.
    """

    constraint: LinearConstraint

    def __call__(self, x: Sample) -> Sample:
        with jax.default_matmul_precision("highest"):
            return jax.vmap(project_euclidean, in_axes=(0, None))(x, self.constraint)

    def residual(self, x: Sample) -> Float[Array, "b m"]:
        """``A u - b`` per sample."""
        with jax.default_matmul_precision("highest"):
            return jax.vmap(self.constraint.residual)(x)


@flax.struct.dataclass
class ChainedProjection:
    """Projections applied in order; exact for all when their supports are disjoint.

    Attributes:
        projections: a tuple of corrections ``project(x) -> x``.
    """

    projections: tuple

    def __call__(self, x: Sample) -> Sample:
        for project in self.projections:
            x = project(x)
        return x


def _as_pytree(fn: Any) -> Any:
    """`fn` itself if all its leaves are arrays, else a leafless `Partial` (static, by identity)."""
    numeric = (jax.Array, np.ndarray, np.generic, float, int, bool)
    if all(isinstance(leaf, numeric) for leaf in jax.tree.leaves(fn)):
        return fn
    return Partial(fn)


def _time(i: Array, n_steps: int, dtype: Any) -> Array:
    """``(n_steps - i) / n_steps`` from integers, so the last step lands on exactly 0."""
    return ((n_steps - i) / n_steps).astype(dtype)


def _times(x: Array, t: Array) -> Array:
    return jnp.full((x.shape[0],), t, x.dtype)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "n_mix", "resample_every"))
def _eci(
    apply_fn, params, cond, project, *, key, shape, prior, n_steps, n_mix, resample_every, dtype
):
    key_init, key_resample = jax.random.split(key)
    noise = prior.sample(key_init, shape, dtype)

    def body(carry: tuple, j: Array) -> tuple[tuple, None]:
        x, noise = carry
        i, u = j // n_mix, j % n_mix
        if resample_every:
            noise = jax.lax.cond(
                (j + 1) % resample_every == 0,
                lambda: prior.sample(jax.random.fold_in(key_resample, j), shape, dtype),
                lambda: noise,
            )
        t = _time(i, n_steps, dtype)
        mix = jnp.where(u < n_mix - 1, t, _time(i + 1, n_steps, dtype))
        x_hat = project(x - t * apply_fn(params, x, _times(x, t), cond))
        return (((1 - mix) * x_hat + mix * noise).astype(dtype), noise), None

    (x, _), _ = jax.lax.scan(body, (noise, noise), jnp.arange(n_steps * n_mix))
    return x


def eci_sample(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    project: Any,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    prior: Prior,
    n_steps: int,
    n_mix: int = 1,
    resample_every: int | None = None,
    dtype: Any = jnp.float32,
) -> Sample:
    """ECI: extrapolate, correct, interpolate (module docstring); ``n_steps * n_mix`` network calls.

    Compiled once per (apply_fn, shape, prior, n_steps, n_mix, resample_every, dtype) and
    projection type; new keys, params, cond or constraint values reuse the program. The same key
    gives the same samples.

    Args:
        apply_fn: ``apply_fn(params, x_t, t, cond) -> velocity`` (t = 0 data), static: pass the
            same object (e.g. ``model.apply``) to reuse the compiled program.
        params, cond: the network's parameters and conditioning.
        project: the correction ``project(x) -> x`` on a batch (b, *spatial, c), e.g.
            `EuclideanProjection`; pass the identity for unconstrained Euler sampling.
        key: keyword-only PRNG key (initial noise and resampled noise).
        shape: (b, *spatial, c).
        prior: the noise prior the network was trained with.
        n_steps: Euler steps (paper: 200 on Stokes).
        n_mix: extrapolate-correct-interpolate iterations per step (paper: 5 for the Stokes IC,
            1 for the BC).
        resample_every: draw fresh mixing noise every this many iterations, counted over the
            whole run (paper: 5 for the Stokes BC); None keeps the initial noise.
        dtype: sample dtype.
    Returns:
        Samples of `shape`, each of the form ``project(.)`` (exactly: the last mixing weight is 0).

    Example:
        >>> project = EuclideanProjection(initial_value_constraint((nt, nx), u0))
        >>> x = eci_sample(model.apply, params, None, project, key=key, shape=(16, nt, nx, 1),
        ...                prior=WhiteNoise(), n_steps=200, n_mix=5)
    """
    if n_steps < 1 or n_mix < 1:
        raise ValueError(f"ECI needs n_steps >= 1 and n_mix >= 1, got {n_steps} and {n_mix}")
    return _eci(
        apply_fn,
        params,
        cond,
        _as_pytree(project),
        key=key,
        shape=tuple(shape),
        prior=prior,
        n_steps=n_steps,
        n_mix=n_mix,
        resample_every=resample_every or None,
        dtype=dtype,
    )


@functools.partial(jax.jit, static_argnames=_STATIC)
def _guidance(apply_fn, params, cond, constraint, eta, *, key, shape, prior, n_steps, dtype):
    def loss(x_hat: Array) -> Array:
        with jax.default_matmul_precision("highest"):
            residual = jax.vmap(constraint.residual)(x_hat)
        return jnp.sum(jnp.mean(residual**2, axis=1))

    def body(x: Array, i: Array) -> tuple[Array, None]:
        t, s = _time(i, n_steps, dtype), _time(i + 1, n_steps, dtype)

        def extrapolate(x: Array) -> tuple[Array, Array]:
            v = apply_fn(params, x, _times(x, t), cond)
            return x - t * v, v

        x_hat, pullback, v = jax.vjp(extrapolate, x, has_aux=True)
        (grad,) = pullback(jax.grad(loss)(x_hat))
        return (x + (s - t) * v - eta * grad).astype(dtype), None

    x, _ = jax.lax.scan(body, prior.sample(key, shape, dtype), jnp.arange(n_steps))
    return x


def guidance_sample(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    constraint: LinearConstraint | NonlinearConstraint,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    prior: Prior,
    n_steps: int,
    eta: Scalar,
    dtype: Any = jnp.float32,
) -> Sample:
    """Gradient guidance (DiffusionPDE style): Euler steps plus ``-eta grad`` of a residual loss.

    Per sample ``L(x) = mean_m r(x_hat)^2`` with ``x_hat = x - t v(x, t)`` and r the constraint's
    residual (``A u - b`` or ``h(u)``) of one sample (*spatial, c); the step is
    ``x <- x + (s - t) v(x, t) - eta dL/dx``, the gradient taken through the network. `n_steps`
    network calls, each with one vector-Jacobian product. The result only approximately
    satisfies the constraint.

    Args:
        constraint: a `LinearConstraint` or `NonlinearConstraint` on one sample.
        eta: guidance step size (a traced scalar: changing it does not recompile).
        Others: as in `eci_sample`.
    Returns:
        Samples of `shape`.
    """
    return _guidance(
        apply_fn,
        params,
        cond,
        constraint,
        jnp.asarray(eta, dtype),
        key=key,
        shape=tuple(shape),
        prior=prior,
        n_steps=n_steps,
        dtype=dtype,
    )
