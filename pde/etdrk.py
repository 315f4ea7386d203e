"""Exponential time differencing Runge-Kutta (Cox-Matthews ETDRK4) for diagonal linear operators.

For ``v_t = L v + N(v)`` in Fourier space, with L diagonal. The phi-function coefficients are
evaluated by the Kassam-Trefethen contour integral on a full circle around each ``z = dt * L`` and
kept **complex**: dropping their imaginary part silently degrades the scheme to first order when L
has odd derivatives (advection, dispersion).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex


class ETDRK4Coefficients(NamedTuple):
    """Per-mode coefficients of one ETDRK4 step, each shaped like the linear operator."""

    exp_full: Array
    exp_half: Array
    q: Array
    f1: Array
    f2: Array
    f3: Array


def etdrk4_coefficients(
    linear: np.ndarray, dt: float, n_contour: int = 32, dtype=jnp.complex64
) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for the diagonal operator `linear` (any shape) and step `dt`.

    Computed in complex128 with `n_contour` points on the unit circle around each ``dt * L``
    (the means of the phi-function integrands), then cast to `dtype`.
    """
    z = dt * np.asarray(linear, dtype=np.complex128)[..., None]
    z = z + np.exp(2j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    ez = np.exp(z)
    q = dt * np.mean((np.exp(z / 2) - 1) / z, axis=-1)
    f1 = dt * np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=-1)
    f2 = dt * np.mean((2 + z + ez * (z - 2)) / z**3, axis=-1)
    f3 = dt * np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=-1)
    lin_dt = dt * np.asarray(linear, dtype=np.complex128)
    arrays = (np.exp(lin_dt), np.exp(lin_dt / 2), q, f1, f2, f3)
    return ETDRK4Coefficients(*(jnp.asarray(a, dtype=dtype) for a in arrays))


def etdrk4_step(
    v: Complex[Array, "*modes"],
    coeffs: ETDRK4Coefficients,
    nonlinear: Callable[[Array], Array],
) -> Complex[Array, "*modes"]:
    """One Cox-Matthews ETDRK4 step of ``v_t = L v + N(v)`` on Fourier coefficients `v`."""
    c = coeffs
    nv = nonlinear(v)
    a = c.exp_half * v + c.q * nv
    na = nonlinear(a)
    b = c.exp_half * v + c.q * na
    nb = nonlinear(b)
    cc = c.exp_half * a + c.q * (2 * nb - nv)
    nc = nonlinear(cc)
    return c.exp_full * v + c.f1 * nv + 2 * c.f2 * (na + nb) + c.f3 * nc
