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


def truncated_fourier_series(
    key: Array,
    shape: tuple[int, ...],
    *,
    max_wavenumber: int = 5,
    amplitude: float = 1.0,
    dtype=jnp.float32,
) -> Float[Array, "*shape"]:
    """Random ``sum_{0 < |k|_inf <= K} a_k cos(2 pi k.x / L + phi_k)``, scaled to max |u| = amplitude.

    Coefficients a_k ~ N(0, 1) and phases phi_k ~ U[0, 2 pi) on the integer wavevectors with
    largest component at most K = `max_wavenumber`; the mean mode is left out.
    """
    k_amp, k_phase = jax.random.split(key)
    modes = np.stack(
        np.meshgrid(*[np.arange(-max_wavenumber, max_wavenumber + 1)] * len(shape), indexing="ij"),
        -1,
    )
    modes = modes.reshape(-1, len(shape))
    modes = modes[np.abs(modes).max(axis=1) > 0]
    amps = jax.random.normal(k_amp, (len(modes),), dtype=dtype)
    phases = jax.random.uniform(k_phase, (len(modes),), dtype=dtype, maxval=2 * np.pi)
    coords = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), -1)
    lead = (1,) * len(shape)
    arg = 2 * np.pi * jnp.asarray(coords @ modes.T, dtype=dtype) + phases.reshape(*lead, -1)
    u = jnp.sum(amps.reshape(*lead, -1) * jnp.cos(arg), axis=-1)
    return (amplitude * u / jnp.max(jnp.abs(u))).astype(dtype)


def initial_condition(
    key: Array, problem, *, kind: str = "grf", offset: float = 0.0, **options
) -> Array:
    """A random state ``(*shape, channels)`` for `problem`: ``offset`` + a field of `kind` per channel.

    Kinds: ``grf`` (`gaussian_random_field`, options sigma, tau, alpha; defaults 1, 3, 2) and
    ``fourier`` (`truncated_fourier_series`, options max_wavenumber, amplitude).
    """
    keys = jax.random.split(key, problem.n_channels)
    if kind == "grf":
        opts = {"sigma": 1.0, "tau": 3.0, "alpha": 2.0} | options
        fields = [
            gaussian_random_field(k, tuple(problem.shape), length=problem.length, **opts)
            for k in keys
        ]
    elif kind == "fourier":
        fields = [truncated_fourier_series(k, tuple(problem.shape), **options) for k in keys]
    else:
        raise ValueError(f"initial_condition kind must be 'grf' or 'fourier', got {kind!r}")
    return jnp.stack(fields, axis=-1) + offset
