"""Random initial conditions for periodic problems."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def gaussian_random_field(
    key: Array,
    shape: tuple[int, ...],
    *,
    sigma: float,
    tau: float,
    alpha: float,
    length: float = 1.0,
    dtype=jnp.float32,
) -> Float[Array, "*shape"]:
    """Mean-zero sample of N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha)) on a periodic box.

    The FNO paper's sampler: ``u = sqrt(2) Re sum_kappa a_kappa xi_kappa exp(i kappa . x)`` with
    ``a_kappa = sigma (|kappa|^2 + tau^2)^(-alpha/2)`` over angular wavenumbers kappa, the mean mode
    removed, and xi_kappa complex with independent N(0, 1) real and imaginary parts. Returned on the
    grid of `shape` (values at points j * length / n).
    """
    kvec = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=length / n) for n in shape], indexing="ij")
    amplitude = sigma * (sum(k**2 for k in kvec) + tau**2) ** (-alpha / 2)
    amplitude.flat[0] = 0.0
    re, im = jax.random.normal(key, (2, *shape), dtype=dtype)
    modes = (re + 1j * im) * jnp.asarray(amplitude * np.prod(shape), dtype=re.dtype)
    return (np.sqrt(2) * jnp.fft.ifftn(modes).real).astype(dtype)
