"""Physics residuals, usable as training losses.

``residual(u, t, problem) = u_t - (L u + N(u))`` on a trajectory: spectral derivatives in space
(the problem's own L and N, so every `SpectralProblem` has one) and second-order central differences
in time. The residual of an exact solution is at the time-discretisation error O(dt^2); that of a
perturbed solution is not. Darcy and the porous-medium family use their own finite-difference /
finite-volume operators.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sciml.pde.darcy import darcy_operator
from sciml.pde.porous_medium import GeneralizedPorousMedium
from sciml.pde.spectral import SpectralProblem


def time_derivative(
    u: Float[Array, "t *shape c"], t: Float[Array, " t"]
) -> Float[Array, "t_interior *shape c"]:
    """Second-order central difference ``u_t`` at the interior times t[1:-1] of a non-uniform grid."""
    h1 = (t[1:-1] - t[:-2]).reshape((-1,) + (1,) * (u.ndim - 1))
    h2 = (t[2:] - t[1:-1]).reshape((-1,) + (1,) * (u.ndim - 1))
    return (
        -h2 / (h1 * (h1 + h2)) * u[:-2]
        + (h2 - h1) / (h1 * h2) * u[1:-1]
        + h1 / (h2 * (h1 + h2)) * u[2:]
    )


def residual(
    u: Float[Array, "t *shape c"], t: Float[Array, " t"], problem: SpectralProblem
) -> Float[Array, "t_interior *shape c"]:
    """PDE residual ``u_t - L u - N(u)`` of the trajectory `u` at times t[1:-1].

    Args:
        u: states at times `t`, channels-last, on the problem's grid.
        t: (T,) increasing times, T >= 3.
        problem: the equation and its parameters.
    Returns:
        (T - 2, *shape, c) residual; ``jnp.mean(residual(...) ** 2)`` is a PINO-style loss.
    """
    if u.shape[0] != t.shape[0] or u.shape[0] < 3:
        raise ValueError(
            f"need at least 3 states with one time each, got u {u.shape} and t {t.shape}"
        )
    rhs = jax.vmap(problem.rhs)(u[1:-1])
    return time_derivative(u, jnp.asarray(t, dtype=u.dtype)) - rhs


def darcy_residual(
    u: Float[Array, "n n"],
    a: Float[Array, "n n"],
    forcing: float = 1.0,
    face_mean: str = "harmonic",
) -> Float[Array, "n-2 n-2"]:
    """``-div(a grad u) - f`` at the interior nodes (5-point stencil, u = 0 on the boundary)."""
    return darcy_operator(a, u, face_mean=face_mean) - forcing


def porous_medium_residual(
    u: Float[Array, "t n"], t: Float[Array, " t"], problem: GeneralizedPorousMedium, parameter
) -> Float[Array, "t_interior n"]:
    """``u_t + (F_{i+1/2} - F_{i-1/2}) / h`` of cell averages `u` at times t[1:-1] (finite volumes)."""
    du = time_derivative(u[..., None], jnp.asarray(t, dtype=u.dtype))[..., 0]
    rhs = jax.vmap(lambda ti, ui: problem.rhs(ti, ui, parameter))(t[1:-1], u[1:-1])
    return du - rhs
