"""PCFM (Utkarsh et al. 2025): physics-constrained flow matching for nonlinear ``h(u) = 0``.

**Time convention: the package's, t = 0 data, t = 1 noise** (as `sciml.diffusion.eci`; the
paper's tau = 1 - t). From ``x_1 = x0 ~ prior``, each of `n_steps` steps

```
t = 1 - i / n_steps,  s = t - 1 / n_steps
u   = x - t v(x, t)                     extrapolate to the data end
u   = Proj(u)                           Gauss-Newton projection onto h = 0 (n_newton iterations)
x   = (1 - s) u + s x0                  OT re-interpolation with the *initial* noise
```
and finally ``x = Proj(x)`` run to convergence (tolerance `tol`), so the sample satisfies
``h(x) = 0`` to round-off for any network. Proj is `sciml.constraints.project_gauss_newton`, whose
first iteration is PCFM's ``u - J^T (J J^T + eps I)^{-1} h(u)``; later ones add the tangential
Newton step that makes it the closest point. For a `LinearConstraint` Proj is the exact
`EuclideanProjection` (then PCFM is ECI with ``n_mix = 1`` and no resampling). PCFM's optional
relaxed penalty step between the interpolation and the next extrapolation is not implemented.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.constraints import LinearConstraint, NonlinearConstraint, project_gauss_newton
from sciml.diffusion.eci import EuclideanProjection
from sciml.diffusion.parameterization import ApplyFn
from sciml.diffusion.priors import Prior

Sample = Float[Array, "b *spatial c"]


def gauss_newton_projection(
    constraint: NonlinearConstraint,
    x: Sample,
    *,
    max_steps: int,
    eps: float = 1e-6,
    tol: float | None = None,
) -> Sample:
    """`project_gauss_newton` of every sample of the batch x (b, *spatial, c)."""
    project = functools.partial(project_gauss_newton, eps=eps, tol=tol, max_steps=max_steps)
    return jax.vmap(project, in_axes=(None, 0))(constraint, x)


@functools.partial(
    jax.jit,
    static_argnames=(
        "apply_fn",
        "shape",
        "prior",
        "n_steps",
        "n_newton",
        "final_steps",
        "eps",
        "tol",
        "dtype",
    ),
)
def _pcfm(
    apply_fn,
    params,
    cond,
    constraint,
    *,
    key,
    shape,
    prior,
    n_steps,
    n_newton,
    final_steps,
    eps,
    tol,
    dtype,
):
    if isinstance(constraint, LinearConstraint):
        step_projection = final_projection = EuclideanProjection(constraint)
    else:
        step_projection = functools.partial(
            gauss_newton_projection, constraint, max_steps=n_newton, eps=eps, tol=tol
        )
        final_projection = functools.partial(
            gauss_newton_projection, constraint, max_steps=final_steps, eps=eps, tol=tol
        )
    x0 = prior.sample(key, shape, dtype)

    def body(x: Array, i: Array) -> tuple[Array, None]:
        t = ((n_steps - i) / n_steps).astype(dtype)
        s = ((n_steps - i - 1) / n_steps).astype(dtype)
        u = step_projection(x - t * apply_fn(params, x, jnp.full((shape[0],), t, dtype), cond))
        return ((1 - s) * u + s * x0).astype(dtype), None

    x, _ = jax.lax.scan(body, x0, jnp.arange(n_steps))
    return final_projection(x)


def pcfm_sample(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    constraint: NonlinearConstraint | LinearConstraint,
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    prior: Prior,
    n_steps: int,
    n_newton: int = 1,
    final_steps: int = 50,
    eps: float = 1e-6,
    tol: float | None = None,
    dtype: Any = jnp.float32,
) -> Sample:
    """PCFM sampling (module docstring): `n_steps` network calls, then an exact final projection.

    Args:
        apply_fn: ``apply_fn(params, x_t, t, cond) -> velocity`` (t = 0 data), static.
        params, cond: the network's parameters and conditioning.
        constraint: ``h(u) = 0`` on one sample (*spatial, c) (its `fn` receives that shape; scale
            h to order one), or a `LinearConstraint` (exact projections throughout). Its arrays
            are arguments of the compiled program, `NonlinearConstraint.fn` is static.
        key: keyword-only PRNG key of the initial noise.
        shape: (b, *spatial, c).
        prior: the noise prior the network was trained with.
        n_steps: flow steps (network calls).
        n_newton: Gauss-Newton iterations of the projection inside each step (PCFM: 1).
        final_steps: iteration cap of the final projection.
        eps: Tikhonov term of the Gauss-Newton normal equations.
        tol: the projections' absolute tolerance on ``|h|`` (default 100 machine epsilons).
        dtype: sample dtype.
    Returns:
        Samples of `shape` with ``h = 0`` to `tol` (to round-off for a linear constraint).
    """
    if not isinstance(constraint, LinearConstraint | NonlinearConstraint):
        raise TypeError(
            f"pcfm_sample needs a LinearConstraint or NonlinearConstraint, got {type(constraint)}"
        )
    return _pcfm(
        apply_fn,
        params,
        cond,
        constraint,
        key=key,
        shape=tuple(shape),
        prior=prior,
        n_steps=n_steps,
        n_newton=n_newton,
        final_steps=final_steps,
        eps=eps,
        tol=tol,
        dtype=dtype,
    )
