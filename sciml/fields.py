"""Grids, spectral resampling, spectral derivatives and energy spectra of periodic fields.

Fields are channels-last arrays ``(..., *spatial, channels)``; functions take the number of spatial
dimensions `ndim` (the spatial axes are the `ndim` axes before the channel axis). Every resolution
change in the project goes through `spectral_resample`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def grid(n: int, length: float = 1.0) -> np.ndarray:
    """Cell-vertex points ``x_j = j * length / n`` of a periodic grid, shape (n,)."""
    return np.arange(n) * (length / n)


def wavenumbers(n: int, length: float = 1.0, real: bool = False) -> np.ndarray:
    """Angular wavenumbers ``2 pi k / length`` in FFT order, shape (n,) or (n // 2 + 1,) if `real`."""
    freqs = np.fft.rfftfreq(n, d=1.0 / n) if real else np.fft.fftfreq(n, d=1.0 / n)
    return 2 * np.pi * freqs / length


def _spatial_axes(u: Array | np.ndarray, ndim: int) -> tuple[int, ...]:
    if u.ndim < ndim + 1:
        raise ValueError(f"expected (..., {ndim} spatial axes, channels), got shape {u.shape}")
    return tuple(range(u.ndim - 1 - ndim, u.ndim - 1))


def _resample_spectrum(spec: Array, axis: int, n_in: int, n_out: int, last: bool) -> Array:
    """Truncate or zero-pad the spectrum of one axis from grid `n_in` to grid `n_out`.

    Modes 0..h and -h..-1, h = (min(n_in, n_out) - 1) // 2, are kept as they are, so down-sampling
    drops the new grid's Nyquist mode and nothing aliases; up-sampling an even grid splits its
    Nyquist mode evenly between +n_in/2 and -n_in/2, the real interpolant. On the rfft (`last`)
    axis only the non-negative half is stored.
    """
    half = (min(n_in, n_out) - 1) // 2
    pos = jax.lax.slice_in_dim(spec, 0, half + 1, axis=axis)
    split_nyquist = n_out > n_in and n_in % 2 == 0
    if split_nyquist:
        nyquist = jax.lax.slice_in_dim(spec, n_in // 2, n_in // 2 + 1, axis=axis) / 2
        pos = jnp.concatenate([pos, nyquist], axis=axis)
    widths = [(0, 0)] * spec.ndim
    # Zeros by jnp.pad keep the batch sharding of `spec` (scattering into jnp.zeros would not).
    if last:
        widths[axis] = (0, n_out // 2 + 1 - pos.shape[axis])
        return jnp.pad(pos, widths)
    neg = jax.lax.slice_in_dim(spec, n_in - half, n_in, axis=axis)
    if split_nyquist:
        neg = jnp.concatenate([nyquist, neg], axis=axis)
    widths[axis] = (0, n_out - pos.shape[axis] - neg.shape[axis])
    return jnp.concatenate([jnp.pad(pos, widths), neg], axis=axis)


def spectral_resample(
    u: Float[Array | np.ndarray, "*batch_and_space c"], shape: tuple[int, ...] | int
) -> Float[Array, "*batch_and_new_space c"]:
    """Resample a periodic channels-last field onto a grid of `shape` by Fourier truncation/padding.

    A field band-limited below both grids' Nyquist frequencies is reproduced to round-off.
    Down-sampling drops every mode the new grid cannot hold (its Nyquist mode included), so
    nothing aliases; up-sampling splits an even grid's Nyquist mode between +k and -k. One
    rfftn / irfftn pair built from slices and pads, so batches sharded over a mesh stay sharded.

    Args:
        u: field of shape (..., *spatial, c).
        shape: new spatial shape (an int for 1D).
    Returns:
        Field of shape (..., *shape, c).
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    ndim = len(shape)
    spatial_axes = _spatial_axes(u, ndim)
    in_shape = tuple(u.shape[a] for a in spatial_axes)
    if in_shape == shape:
        return jnp.asarray(u)
    # Channels before space so the FFTs run over contiguous trailing axes; "forward" norm: the
    # coefficients of a function do not depend on the grid, so no rescaling is needed.
    v = jnp.moveaxis(jnp.asarray(u), -1, spatial_axes[0])
    axes = tuple(range(v.ndim - ndim, v.ndim))
    spec = jnp.fft.rfftn(v, axes=axes, norm="forward")
    for i, (n_in, n_out) in enumerate(zip(in_shape, shape, strict=True)):
        if n_in != n_out:
            spec = _resample_spectrum(spec, axes[i], n_in, n_out, last=i == ndim - 1)
    out = jnp.fft.irfftn(spec, s=shape, axes=axes, norm="forward")
    return jnp.moveaxis(out, spatial_axes[0], -1).astype(u.dtype)


def lowpass(
    u: Float[Array | np.ndarray, "*batch_and_space c"], max_wavenumber: int, ndim: int
) -> Float[Array, "*batch_and_space c"]:
    """Keep the Fourier modes with every ``|k_i| <= max_wavenumber`` of a periodic field; zero the rest.

    Args:
        u: field of shape (..., *spatial, c) with `ndim` spatial axes.
    Returns:
        The band-limited field, same shape.
    """
    axes = _spatial_axes(u, ndim)
    spec = jnp.fft.rfftn(u, axes=axes)
    keep = np.ones(spec.shape[axes[0] : axes[-1] + 1], bool)
    for i, axis in enumerate(axes):
        n = u.shape[axis]
        k = np.abs(np.fft.rfftfreq(n, 1.0 / n) if i == ndim - 1 else np.fft.fftfreq(n, 1.0 / n))
        keep &= (k <= max_wavenumber).reshape([-1 if j == i else 1 for j in range(ndim)])
    keep = keep.reshape((1,) * axes[0] + keep.shape + (1,))
    return jnp.fft.irfftn(spec * keep, s=[u.shape[a] for a in axes], axes=axes).astype(u.dtype)


def spectral_derivative(
    u: Float[Array | np.ndarray, "*batch_and_space c"],
    axis: int,
    ndim: int,
    order: int = 1,
    length: float = 1.0,
) -> Float[Array, "*batch_and_space c"]:
    """``d^order u / dx_axis^order`` of a periodic field, exact for band-limited fields.

    Args:
        u: field of shape (..., *spatial, c).
        axis: spatial axis index in 0..ndim-1.
        ndim: number of spatial dimensions.
        order: derivative order.
        length: period of that axis.
    """
    ax = _spatial_axes(u, ndim)[axis]
    n = u.shape[ax]
    k = wavenumbers(n, length, real=True)
    if order % 2 == 1 and n % 2 == 0:
        k = k.copy()
        k[n // 2] = 0.0  # the Nyquist mode of an odd derivative has no real-valued meaning
    shape = [1] * u.ndim
    shape[ax] = -1
    multiplier = jnp.asarray((1j * k) ** order).reshape(shape)
    spec = jnp.fft.rfft(u, axis=ax)
    return jnp.fft.irfft(spec * multiplier, n=n, axis=ax).astype(u.dtype)


def energy_spectrum(
    u: Float[Array | np.ndarray, "*batch_and_space c"], ndim: int, shells: str = "round"
) -> tuple[np.ndarray, np.ndarray]:
    """Shell-summed energy spectrum ``E(k) = sum_{kappa in shell k} |u_hat(kappa)|^2 / 2``.

    Shells are k = 0..max(n)//2: the rounded radius |kappa| of the integer wavevector
    (``shells="round"``), or its largest component max_i |kappa_i| (``"square"``, the shells of
    grid resolutions: shell k holds exactly the modes a grid of 2k points cannot represent
    beyond). The energy is summed over channels and averaged over every leading (batch) axis.
    The FFT is normalised by the number of grid points, so E does not depend on the resolution
    for a resolved field.

    Returns:
        ``(k, E)``, each of shape (max(n)//2 + 1,).
    """
    axes = _spatial_axes(u, ndim)
    shape = [u.shape[a] for a in axes]
    spec = jnp.fft.fftn(u, axes=axes, norm="forward")
    power = 0.5 * jnp.abs(spec) ** 2
    power = power.sum(axis=-1).reshape((-1, *shape)).mean(axis=0)
    kvec = np.meshgrid(*[np.fft.fftfreq(n, d=1.0 / n) for n in shape], indexing="ij")
    if shells not in ("round", "square"):
        raise ValueError(f"energy_spectrum: shells must be 'round' or 'square', got {shells!r}")
    if shells == "round":
        radius = np.rint(np.sqrt(sum(k**2 for k in kvec))).astype(int)
    else:
        radius = np.max(np.abs(np.stack(kvec)), axis=0).astype(int)
    n_shells = max(shape) // 2 + 1
    energy = np.bincount(radius.ravel(), weights=np.asarray(power).ravel(), minlength=n_shells)
    return np.arange(n_shells), energy[:n_shells]
