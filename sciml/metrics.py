"""Evaluation metrics on channels-last batches ``(batch, *spatial, channels)``.

Each returns one number averaged over the batch (and channels where it is per channel), so batches
can be averaged sample-weighted by the caller.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.constraints import LinearConstraint, NonlinearConstraint
from sciml.fields import energy_spectrum, spectral_resample
from sciml.losses import relative_lp

_EPS = 1e-12
Batch = Float[Array, "b *spatial c"]


def _spatial_axes(x: Array) -> tuple[int, ...]:
    return tuple(range(1, x.ndim - 1))


def relative_l2(pred: Batch, target: Batch) -> Float[Array, ""]:
    """Mean over samples of ``||pred - target||_2 / ||target||_2`` over space and channels."""
    return relative_lp(pred, target, 2)


def relative_l1(pred: Batch, target: Batch) -> Float[Array, ""]:
    """Mean over samples of ``||pred - target||_1 / ||target||_1``."""
    return relative_lp(pred, target, 1)


def rmse(pred: Batch, target: Batch) -> Float[Array, ""]:
    """Mean over samples and channels of the root mean squared error over space."""
    return jnp.mean(jnp.sqrt(jnp.mean((pred - target) ** 2, axis=_spatial_axes(pred))))


def nrmse(pred: Batch, target: Batch) -> Float[Array, ""]:
    """PDEBench nRMSE: per sample and channel ``||pred - target||_2 / ||target||_2``, averaged."""
    axes = _spatial_axes(pred)
    err = jnp.sqrt(jnp.sum((pred - target) ** 2, axis=axes))
    return jnp.mean(err / (jnp.sqrt(jnp.sum(target**2, axis=axes)) + _EPS))


def vrmse(pred: Batch, target: Batch) -> Float[Array, ""]:
    """The Well's VRMSE: per sample and channel ``sqrt(mean (pred - target)^2 / (var(target) + eps))``.

    1 means no better than predicting the target's spatial mean.
    """
    axes = _spatial_axes(pred)
    mse = jnp.mean((pred - target) ** 2, axis=axes)
    var = jnp.var(target, axis=axes)
    return jnp.mean(jnp.sqrt(mse / (var + 1e-7)))


def max_error(pred: Batch, target: Batch) -> Float[Array, ""]:
    """Largest absolute error over the batch."""
    return jnp.max(jnp.abs(pred - target))


def fourier_band_rmse(
    pred: Batch, target: Batch, bounds: tuple[int, int] = (4, 12)
) -> dict[str, Float[Array, ""]]:
    """RMSE of the error restricted to low / mid / high integer wavenumber shells (PDEBench fRMSE).

    Bands: ``|k| < bounds[0]``, ``bounds[0] <= |k| < bounds[1]``, ``|k| >= bounds[1]``, with |k| the
    rounded radius of the integer wavevector. By Parseval ``low^2 + mid^2 + high^2 = rmse_all^2``
    where rmse_all is the RMSE over every sample, point and channel.
    """
    axes = _spatial_axes(pred)
    spec = jnp.fft.fftn(pred - target, axes=axes, norm="forward")
    power = jnp.mean(jnp.abs(spec) ** 2, axis=(0, -1))
    kvec = np.meshgrid(*[np.fft.fftfreq(n, d=1.0 / n) for n in pred.shape[1:-1]], indexing="ij")
    radius = np.rint(np.sqrt(sum(k**2 for k in kvec)))
    low, high = bounds
    masks = {"low": radius < low, "mid": (radius >= low) & (radius < high), "high": radius >= high}
    return {name: jnp.sqrt(jnp.sum(jnp.where(mask, power, 0.0))) for name, mask in masks.items()}


def all_metrics(pred: Batch, target: Batch) -> dict[str, Float[Array, ""]]:
    """Every metric above, with the Fourier bands as ``frmse_low/mid/high``."""
    out = {
        "rel_l2": relative_l2(pred, target),
        "rel_l1": relative_l1(pred, target),
        "rmse": rmse(pred, target),
        "nrmse": nrmse(pred, target),
        "vrmse": vrmse(pred, target),
        "max_error": max_error(pred, target),
    }
    out |= {f"frmse_{band}": v for band, v in fourier_band_rmse(pred, target).items()}
    return out


def spectral_error_ratio(
    pred: Float[Array | np.ndarray, "b *spatial c"],
    target: Float[Array | np.ndarray, "b *spatial c"],
) -> tuple[np.ndarray, np.ndarray]:
    """Aliasing diagnostic: ``E_(pred - target)(k) / E_target(k)`` on square shells.

    Shells k = max_i |kappa_i| (see `sciml.fields.energy_spectrum`); 1 means the error carries as
    much energy as the truth at that wavenumber. Zero-shot super-resolution shows up as a ratio
    rising by orders of magnitude above the training grid's Nyquist k.

    Returns:
        ``(k, ratio)``, each of shape (max(n)//2 + 1,).
    """
    ndim = np.ndim(target) - 2
    k, e_err = energy_spectrum(jnp.asarray(pred) - jnp.asarray(target), ndim, shells="square")
    _, e_true = energy_spectrum(target, ndim, shells="square")
    # Shells whose true energy is below float32 round-off of the total hold no signal to compare.
    return k, e_err / np.maximum(e_true, np.finfo(np.float32).eps * e_true.sum())


def resolution_consistency(
    pred_a: Float[Array | np.ndarray, "b *spatial_a c"],
    pred_b: Float[Array | np.ndarray, "b *spatial_b c"],
) -> float:
    """Relative L2 between two predictions of the same samples made on two grids.

    The finer prediction is spectrally resampled onto the coarser grid (the band both grids
    represent) before comparing; 0 means the operator computed one function at both resolutions.
    """
    coarse, fine = sorted((jnp.asarray(pred_a), jnp.asarray(pred_b)), key=lambda a: a.size)
    return float(relative_l2(spectral_resample(fine, coarse.shape[1:-1]), coarse))


# Sample metrics of constrained generation (ECI): ensembles against ground-truth ensembles.


def mmse(
    samples: Float[Array | np.ndarray, "b *spatial c"],
    truth: Float[Array | np.ndarray, "n *spatial c"],
) -> Float[Array, ""]:
    """``mean_grid (mean_b samples - mean_n truth)^2``: the error of the pixelwise mean."""
    return jnp.mean((jnp.mean(samples, axis=0) - jnp.mean(truth, axis=0)) ** 2)


def smse(
    samples: Float[Array | np.ndarray, "b *spatial c"],
    truth: Float[Array | np.ndarray, "n *spatial c"],
) -> Float[Array, ""]:
    """``mean_grid (std_b samples - std_n truth)^2``: the error of the pixelwise spread."""
    return jnp.mean((jnp.std(samples, axis=0) - jnp.std(truth, axis=0)) ** 2)


def constraint_error(
    samples: Float[Array | np.ndarray, "b *spatial c"],
    constraint: LinearConstraint | NonlinearConstraint,
) -> Float[Array, ""]:
    """Mean over samples and equations of the squared residual ``(A u - b)^2`` or ``h(u)^2``."""
    with jax.default_matmul_precision("highest"):
        residual = jax.vmap(constraint.residual)(jnp.asarray(samples))
    return jnp.mean(residual**2)


def frechet_distance(
    features_a: Float[Array | np.ndarray, "n f"], features_b: Float[Array | np.ndarray, "m f"]
) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``, computed in float64 with
    symmetric eigendecompositions (so the matrix square root is real); 0 for identical sets.
    """
    a, b = (np.asarray(f, np.float64) for f in (features_a, features_b))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)

    def sqrt_psd(s: np.ndarray) -> np.ndarray:
        vals, vecs = np.linalg.eigh(s)
        return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T

    root_a = sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
