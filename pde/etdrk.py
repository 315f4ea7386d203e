"""Exponential time differencing Runge-Kutta schemes (Cox-Matthews ETDRK1-4) for diagonal L.

For ``v_t = L v + N(v)`` in Fourier space with L diagonal. The phi-function coefficients are
evaluated by the Kassam-Trefethen contour integral on a full circle around each ``z = dt * L`` and
kept **complex**: dropping their imaginary part silently degrades the scheme to first order when L
has odd derivatives (advection, dispersion).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex

ORDERS = (1, 2, 3, 4)


class ETDRKCoefficients(NamedTuple):
    """Per-mode coefficients of one ETDRK step, each shaped like the linear operator.

    ``exp_full = e^z``, ``exp_half = e^(z/2)``, and ``phi`` holds the dt-scaled weights of the
    stage nonlinearities, whose meaning depends on `order` (see `etdrk_step`).
    """

    order: int
    exp_full: Array
    exp_half: Array
    phi: tuple[Array, ...]


def etdrk_coefficients(
    linear: Array, dt: float, order: int = 4, n_contour: int = 32, dtype=jnp.complex64
) -> ETDRKCoefficients:
    """ETDRK coefficients of `order` for the diagonal operator `linear` (any shape) and step `dt`.

    Means over `n_contour` points on the unit circle around each ``dt * L`` (which removes the
    cancellation of the phi functions near z = 0), computed in `dtype` with jax.numpy so that L
    may depend on traced parameters (a vmap over viscosities, say).
    """
    if order not in ORDERS:
        raise ValueError(f"ETDRK order must be one of {ORDERS}, got {order}")
    lin = dt * jnp.asarray(linear, dtype=dtype)
    circle = np.exp(2j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    z = lin[..., None] + jnp.asarray(circle, dtype=dtype).reshape((1,) * lin.ndim + (-1,))
    ez = jnp.exp(z)

    def mean(values):
        return dt * jnp.mean(values, axis=-1)

    phi1 = mean((ez - 1) / z)
    if order == 1:
        phi = (phi1,)
    elif order == 2:
        phi = (phi1, mean((ez - 1 - z) / z**2))
    else:
        half = mean((jnp.exp(z / 2) - 1) / z)
        f1 = mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3)
        f2 = mean((2 + z + ez * (z - 2)) / z**3)
        f3 = mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3)
        phi = (half, f1, f2, f3, phi1)
    return ETDRKCoefficients(order, jnp.exp(lin), jnp.exp(lin / 2), phi)


def etdrk_step(
    v: Complex[Array, "*modes"], c: ETDRKCoefficients, nonlinear: Callable[[Array], Array]
) -> Complex[Array, "*modes"]:
    """One Cox-Matthews ETDRK step of ``v_t = L v + N(v)`` on Fourier coefficients `v`.

    Orders: 1 exponential Euler; 2 ETDRK2; 3 ETDRK3 (stages at dt/2 and dt); 4 ETDRK4.
    """
    nv = nonlinear(v)
    if c.order == 1:
        return c.exp_full * v + c.phi[0] * nv
    if c.order == 2:
        a = c.exp_full * v + c.phi[0] * nv
        return a + c.phi[1] * (nonlinear(a) - nv)
    half, f1, f2, f3, full = c.phi
    a = c.exp_half * v + half * nv
    na = nonlinear(a)
    if c.order == 3:
        b = c.exp_full * v + full * (2 * na - nv)
        return c.exp_full * v + f1 * nv + 4 * f2 * na + f3 * nonlinear(b)
    b = c.exp_half * v + half * na
    nb = nonlinear(b)
    cc = c.exp_half * a + half * (2 * nb - nv)
    return c.exp_full * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nonlinear(cc)
