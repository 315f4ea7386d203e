"""2D Darcy flow ``-div(a grad u) = f`` on the unit square with ``u = 0`` on the boundary.

Discretisation: the 5-point finite-difference stencil on the node grid ``x_i = i h``,
``h = 1 / (n - 1)`` (boundary nodes included, as in the FNO paper's data), with the coefficient at a
cell face taken as the **harmonic mean** of its two neighbouring nodes by default (the arithmetic
mean is available). The harmonic mean is the flux-continuous choice for the piecewise-constant
coefficients of the FNO recipe (two resistances in series); both are second order for smooth `a`.

Solver: matrix-free preconditioned conjugate gradients (`jax.scipy.sparse.linalg.cg`), so a solve is
jit-, vmap- and grad-able and works in float32 and float64. The default preconditioner is the exact
inverse of the constant-coefficient operator ``mean(a) * (-Lap_h)``, applied by fast sine transforms
(the 5-point Dirichlet Laplacian is diagonal in the DST-I basis). Since
``min(a) (-Lap_h) <= A <= max(a) (-Lap_h)``, the preconditioned condition number is at most
``max(a) / min(a)`` (4 for the FNO coefficients) whatever the resolution, so CG needs a few tens of
iterations at any `n`; the Jacobi (diagonal) preconditioner needs O(n) iterations and is kept for
comparison and for strongly varying coefficients.
"""

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.data import Trajectories

FaceMean = Literal["harmonic", "arithmetic"]
Preconditioner = Literal["poisson", "jacobi", "none"]


def cosine_random_field(
    key: Array,
    n: int,
    *,
    tau: float = 3.0,
    alpha: float = 2.0,
    sigma: float = 1.0,
    dtype=jnp.float32,
) -> Float[Array, "n n"]:
    """Mean-zero Gaussian field with covariance ``sigma^2 (-Lap + tau^2 I)^(-alpha)``, Neumann BCs.

    The FNO paper's Darcy sampler: a cosine series on the unit square,
    ``g(x, y) = sigma sum_{k,l} (pi^2 (k^2 + l^2) + tau^2)^(-alpha/2) xi_kl cos(pi k x) cos(pi l y)``
    with ``xi_kl ~ N(0, 1)``, modes ``0 <= k, l < n`` and the constant mode removed, evaluated at the
    nodes ``x_i = i / (n - 1)``. Unlike the periodic `gaussian_random_field`, its samples are not
    forced to match across opposite edges.

    Args:
        key: PRNG key.
        n: number of nodes per side (boundary nodes included).
        tau, alpha, sigma: inverse length scale, smoothness and amplitude of the covariance.
        dtype: float dtype of the result.
    Returns:
        Field of shape (n, n).
    """
    k = np.arange(n)
    amplitude = sigma * (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2) ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    xi = jax.random.normal(key, (n, n), dtype=dtype)
    cosines = jnp.asarray(np.cos(np.pi * np.outer(np.linspace(0.0, 1.0, n), k)), dtype=dtype)
    return cosines @ (jnp.asarray(amplitude, dtype=dtype) * xi) @ cosines.T


def darcy_coefficient(
    key: Array,
    n: int,
    *,
    tau: float = 3.0,
    alpha: float = 2.0,
    high: float = 12.0,
    low: float = 3.0,
    dtype=jnp.float32,
) -> Float[Array, "n n"]:
    """FNO-paper coefficient ``a = psi(g)``: `high` where the cosine-series GRF g >= 0, else `low`.

    The threshold makes the GRF's amplitude irrelevant; only its correlation structure (tau, alpha)
    matters. Returns an (n, n) field on the nodes ``i / (n - 1)``.
    """
    g = cosine_random_field(key, n, tau=tau, alpha=alpha, dtype=dtype)
    return jnp.where(g >= 0, high, low).astype(dtype)


def _face_coefficients(a: Array, face_mean: FaceMean) -> tuple[Array, Array]:
    """Coefficients on the x-faces (n-1, n-2) and y-faces (n-2, n-1) around interior nodes."""

    def mean(p, q):
        if face_mean == "harmonic":
            return 2 * p * q / (p + q)
        if face_mean == "arithmetic":
            return (p + q) / 2
        raise ValueError(f"face_mean must be 'harmonic' or 'arithmetic', got {face_mean!r}")

    return mean(a[1:, 1:-1], a[:-1, 1:-1]), mean(a[1:-1, 1:], a[1:-1, :-1])


def _apply(ax: Array, ay: Array, v: Array, h: float) -> Array:
    """``-div(a grad u)`` at interior nodes for interior values v and u = 0 on the boundary."""
    u = jnp.pad(v, 1)
    flux_x = ax * (u[1:, 1:-1] - u[:-1, 1:-1])
    flux_y = ay * (u[1:-1, 1:] - u[1:-1, :-1])
    return -((flux_x[1:] - flux_x[:-1]) + (flux_y[:, 1:] - flux_y[:, :-1])) / h**2


def darcy_operator(
    a: Float[Array, "n n"], u: Float[Array, "n n"], *, face_mean: FaceMean = "harmonic"
) -> Float[Array, "n-2 n-2"]:
    """The 5-point discretisation of ``-div(a grad u)`` at the interior nodes.

    ``(A u)_ij = -[a_{i+1/2,j} (u_{i+1,j} - u_ij) - a_{i-1/2,j} (u_ij - u_{i-1,j}) + (same in y)] / h^2``
    with ``h = 1 / (n - 1)``; u's boundary values are taken as zero (the Dirichlet condition).

    Args:
        a: coefficient at the nodes, shape (n, n), positive.
        u: solution at the nodes, shape (n, n).
        face_mean: "harmonic" or "arithmetic" mean of the two nodes next to a face.
    Returns:
        ``-div(a grad u)`` at the interior nodes, shape (n - 2, n - 2).
    """
    ax, ay = _face_coefficients(a, face_mean)
    return _apply(ax, ay, u[1:-1, 1:-1], 1.0 / (a.shape[0] - 1))


def _dst1(v: Array, axis: int) -> Array:
    """Unnormalised DST-I ``X_k = sum_j v_j sin(pi j k / (N + 1))`` along `axis`, via an odd FFT."""
    v = jnp.moveaxis(v, axis, -1)
    zero = jnp.zeros((*v.shape[:-1], 1), v.dtype)
    odd = jnp.concatenate([zero, v, zero, -v[..., ::-1]], axis=-1)
    out = -jnp.fft.rfft(odd)[..., 1 : v.shape[-1] + 1].imag / 2
    return jnp.moveaxis(out.astype(v.dtype), -1, axis)


def _poisson_preconditioner(a: Array, h: float):
    """``r -> (mean(a) (-Lap_h))^-1 r`` with zero Dirichlet values, by DST-I in both directions."""
    m = a.shape[0] - 2
    eig = (4 / h**2) * np.sin(np.pi * np.arange(1, m + 1) / (2 * (m + 1))) ** 2
    scale = (2 / (m + 1)) ** 2  # DST-I is its own inverse up to 2 / (N + 1) per axis
    inv = jnp.asarray(scale / (eig[:, None] + eig[None, :]), dtype=a.dtype) / jnp.mean(a)
    return lambda r: _dst1(_dst1(inv * _dst1(_dst1(r, 0), 1), 0), 1)


@functools.partial(jax.jit, static_argnames=("face_mean", "preconditioner", "tol", "maxiter"))
def solve_darcy(
    a: Float[Array, "n n"],
    f: Float[Array, "n n"] | Float[Array, ""] | float = 1.0,
    *,
    face_mean: FaceMean = "harmonic",
    preconditioner: Preconditioner = "poisson",
    tol: float = 1e-6,
    maxiter: int | None = None,
) -> Float[Array, "n n"]:
    """Solve ``-div(a grad u) = f`` on (0, 1)^2 with ``u = 0`` on the boundary by preconditioned CG.

    The result is computed in `a`'s dtype. CG stops when ``||f - A u||_2 <= tol ||f||_2`` (interior
    nodes) or after `maxiter` iterations (default 10 (n - 2), enough for Jacobi; with the Poisson
    preconditioner ~15-20 iterations reach 1e-10 on FNO coefficients at any n, measured at 65 to
    421 nodes); check `darcy_operator` for the residual when it matters.

    Args:
        a: positive coefficient at the nodes, shape (n, n).
        f: right-hand side at the nodes, shape (n, n), or a constant (the FNO recipe uses 1).
        face_mean: how face coefficients are formed from the nodes ("harmonic" or "arithmetic").
        preconditioner: "poisson" (fast-sine-transform inverse of ``mean(a) (-Lap_h)``), "jacobi"
            or "none".
        tol: relative residual tolerance of CG.
        maxiter: iteration cap.
    Returns:
        u at the nodes, shape (n, n), zero on the boundary.
    """
    n = a.shape[0]
    h = 1.0 / (n - 1)
    ax, ay = _face_coefficients(a, face_mean)
    rhs = jnp.broadcast_to(jnp.asarray(f, a.dtype), (n, n))[1:-1, 1:-1]
    if preconditioner == "poisson":
        precondition = _poisson_preconditioner(a, h)
    elif preconditioner == "jacobi":
        diagonal = (ax[1:] + ax[:-1] + ay[:, 1:] + ay[:, :-1]) / h**2
        precondition = lambda r: r / diagonal  # noqa: E731
    elif preconditioner == "none":
        precondition = None
    else:
        raise ValueError(
            f"preconditioner must be 'poisson', 'jacobi' or 'none', got {preconditioner!r}"
        )
    v, _ = jax.scipy.sparse.linalg.cg(
        lambda w: _apply(ax, ay, w, h),
        rhs,
        tol=tol,
        maxiter=10 * (n - 2) if maxiter is None else maxiter,
        M=precondition,
    )
    return jnp.pad(v, 1)


@dataclasses.dataclass(frozen=True)
class DarcyDataset:
    """FNO-paper Darcy data: ``a = psi(GRF)``, ``-div(a grad u) = f`` on (0, 1)^2, u = 0 on the edge.

    The GRF is the cosine-series (Neumann) field of `cosine_random_field` with covariance
    ``(-Lap + tau^2 I)^(-alpha)``; psi maps g >= 0 to `high` and g < 0 to `low`; f is constant.
    Solved on `n_solve` nodes per side and stored at every ``(n_solve - 1) / (resolution - 1)``-th
    node (the FNO paper solves at 421 and subsamples to 85, 141, 211).

    `generate` returns fields "a" and "u", each (trajectory, 1, resolution, resolution) with one
    time step, coordinates x and y on ``linspace(0, 1, resolution)``, WALL boundaries.
    """

    resolution: int = 85
    n_solve: int = 421
    tau: float = 3.0
    alpha: float = 2.0
    high: float = 12.0
    low: float = 3.0
    forcing: float = 1.0
    face_mean: FaceMean = "harmonic"
    tol: float = 1e-6

    def __post_init__(self):
        if self.resolution < 3 or (self.n_solve - 1) % (self.resolution - 1):
            raise ValueError(
                f"n_solve - 1 = {self.n_solve - 1} must be a multiple of resolution - 1 ="
                f" {self.resolution - 1} (and resolution >= 3), so stored nodes are solver nodes"
            )

    def physics_residual(
        self, a: Float[Array, "b n n 1"], u: Float[Array, "b n n 1"]
    ) -> Float[Array, ""]:
        """PINO loss term: mean over interior nodes of ``((-div(a grad u) - f) / f)^2``.

        Args:
            a, u: coefficient and solution in physical units on a node grid of any size n.
        """
        apply = functools.partial(darcy_operator, face_mean=self.face_mean)
        residual = jax.vmap(apply)(a[..., 0], u[..., 0]) - self.forcing
        return jnp.mean(residual**2) / self.forcing**2

    def generate(self, key: Array, n_trajectories: int) -> Trajectories:
        """`n_trajectories` coefficient/solution pairs as (trajectory, 1, resolution, resolution)."""
        a, u = (np.asarray(v)[:, None] for v in self._solve(key, n_trajectories))
        coord = np.linspace(0.0, 1.0, self.resolution)
        return Trajectories(
            fields={"a": a, "u": u},
            time=np.zeros(1),
            coords={"x": coord, "y": coord},
            boundary={"x": "WALL", "y": "WALL"},
            scalars={"forcing": self.forcing, "a_high": self.high, "a_low": self.low},
        )

    @jax.jit(static_argnums=(0, 2))
    def _solve(self, key: Array, n_trajectories: int) -> tuple[Array, Array]:
        def one(k):
            a = darcy_coefficient(
                k, self.n_solve, tau=self.tau, alpha=self.alpha, high=self.high, low=self.low
            )
            return a, solve_darcy(a, self.forcing, face_mean=self.face_mean, tol=self.tol)

        a, u = jax.vmap(one)(jax.random.split(key, n_trajectories))
        stride = (self.n_solve - 1) // (self.resolution - 1)
        return a[:, ::stride, ::stride], u[:, ::stride, ::stride]
