"""Metrics for super-resolved and generated fields: deterministic errors and ensemble calibration.

Fields are channels-last, (batch, *spatial, c); ensembles put the members in front,
(members, batch, *spatial, c). Deterministic metrics (FLEX, Erichson et al. 2025):

- `rfne`: relative Frobenius-norm error ``||x_hat - x||_F / ||x||_F`` per sample (the paper's
  RFNE), `rfne_batch` the same over the whole batch at once;
- `psnr`: ``10 log10(R^2 / MSE)`` per sample, R the data range;
- `ssim`: Wang et al. (2004) structural similarity with an 11-point Gaussian window (sigma 1.5),
  ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``, averaged over the valid window positions;
- `spectrum_error`: radially averaged energy spectrum error in the band above the coarse grid's
  cut-off, where super-resolution must add information that interpolation cannot.

Probabilistic ones: `crps` (`sciml.scoring.crps_ensemble`), `spread_skill` and `pull_statistics`
(``z = (mean - x) / std``, ideally N(0, 1) up to the finite-ensemble t-distribution);
`calibrate_spread` picks the sampler setting whose spread/skill is closest to 1,
`calibrate_spectrum` the one whose draws have the target's energy spectrum in a band.
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.fields import energy_spectrum
from sciml.scoring import crps_ensemble

Batch = Float[Array | np.ndarray, "b *spatial c"]
Members = Float[Array | np.ndarray, "m b *spatial c"]


def _flat(x: Array) -> Array:
    return jnp.reshape(x, (x.shape[0], -1))


def rfne(pred: Batch, target: Batch) -> Float[Array, " b"]:
    """Relative Frobenius-norm error per sample, ``||x_hat_i - x_i||_F / ||x_i||_F``."""
    diff, ref = _flat(jnp.asarray(pred) - jnp.asarray(target)), _flat(jnp.asarray(target))
    return jnp.linalg.norm(diff, axis=1) / jnp.linalg.norm(ref, axis=1)


def rfne_batch(pred: Batch, target: Batch) -> Float[Array, ""]:
    """Relative Frobenius-norm error of the whole batch, ``||x_hat - x||_F / ||x||_F``."""
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    return jnp.linalg.norm(jnp.ravel(pred - target)) / jnp.linalg.norm(jnp.ravel(target))


def _data_range(target: Array, data_range: float | None) -> Array:
    """Per-sample range ``max - min`` of the target, or the given constant, shape (b,)."""
    if data_range is not None:
        return jnp.full((target.shape[0],), data_range, target.dtype)
    flat = _flat(target)
    return jnp.max(flat, axis=1) - jnp.min(flat, axis=1)


def psnr(pred: Batch, target: Batch, *, data_range: float | None = None) -> Float[Array, " b"]:
    """Peak signal-to-noise ratio per sample in dB, ``10 log10(R^2 / MSE)``.

    Args:
        pred, target: (batch, *spatial, c).
        data_range: keyword-only R; default each target's own ``max - min``.
    """
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    mse = jnp.mean(_flat(pred - target) ** 2, axis=1)
    return 10 * jnp.log10(_data_range(target, data_range) ** 2 / mse)


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _filter_valid(x: Array, window: np.ndarray) -> Array:
    """Separable 'valid' filtering of (b, *spatial, c) by `window` along every spatial axis."""
    w = jnp.asarray(window, x.dtype)
    n = w.shape[0]
    for axis in range(1, x.ndim - 1):
        length = x.shape[axis] - n + 1
        x = sum(w[i] * jax.lax.slice_in_dim(x, i, i + length, axis=axis) for i in range(n))
    return x


def ssim(
    pred: Batch,
    target: Batch,
    *,
    data_range: float | None = None,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Float[Array, " b"]:
    """Structural similarity (Wang et al. 2004) per sample, averaged over positions and channels.

    With Gaussian-weighted local means mu, variances s^2 and covariance s_xy (a `window`-point
    Gaussian of standard deviation `sigma` along each axis, valid positions only):
    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``,
    ``C1 = (k1 R)^2``, ``C2 = (k2 R)^2``. SSIM(x, x) = 1; noise lowers it.

    Args:
        pred, target: (batch, *spatial, c), every spatial size >= `window`.
        data_range: keyword-only R; default each target's own ``max - min``.
    """
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if min(target.shape[1:-1]) < window:
        raise ValueError(f"ssim needs spatial sizes >= window={window}, got {target.shape}")
    g = _gaussian_window(window, sigma)
    r = _data_range(target, data_range).reshape((-1,) + (1,) * (target.ndim - 1))
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    mu_x, mu_y = _filter_valid(pred, g), _filter_valid(target, g)
    s_xx = _filter_valid(pred * pred, g) - mu_x**2
    s_yy = _filter_valid(target * target, g) - mu_y**2
    s_xy = _filter_valid(pred * target, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * s_xy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (s_xx + s_yy + c2)
    return jnp.mean(_flat(num / den), axis=1)


def spectrum_error(
    pred: Batch, target: Batch, *, k_min: int, k_max: int | None = None, shells: str = "round"
) -> dict[str, float]:
    """Error of the batch-averaged, radially summed energy spectrum in the band ``k_min < k <= k_max``.

    ``E(k)`` is `sciml.fields.energy_spectrum` (shell sums of ``|u_hat|^2 / 2``, averaged over
    the batch). For super-resolution by a factor f from n points, the coarse grid resolves
    ``|k| <= n / (2 f)``: take ``k_min = n / (2 f)``. Returns
    ``{"rel": mean_k |E_hat(k) / E(k) - 1|, "log": mean_k |log10(E_hat(k) / E(k))|}``; both 0 for
    identical fields. `k_max` defaults to n/2 - 1 (the Nyquist shell is left out: it is half
    empty on an even grid).
    """
    spatial = np.asarray(target).ndim - 2
    _, e_hat = energy_spectrum(np.asarray(pred), spatial, shells)
    _, e = energy_spectrum(np.asarray(target), spatial, shells)
    k_max = len(e) - 2 if k_max is None else k_max
    band = slice(k_min + 1, k_max + 1)
    ratio = e_hat[band] / e[band]
    return {
        "rel": float(np.mean(np.abs(ratio - 1))),
        "log": float(np.mean(np.abs(np.log10(ratio)))),
    }


def crps(samples: Members, target: Batch, *, fair: bool = True) -> Float[Array, ""]:
    """Mean ensemble CRPS over all elements (`sciml.scoring.crps_ensemble`, fair by default)."""
    return crps_ensemble(jnp.asarray(samples), jnp.asarray(target), fair=fair)


def spread_skill(samples: Members, target: Batch) -> dict[str, float]:
    """Ensemble spread, skill and their ratio (ideal ratio 1 for a calibrated ensemble).

    spread = sqrt(mean unbiased member variance), skill = RMSE of the ensemble mean, and
    ``ratio = sqrt((m + 1) / m) spread / skill`` with the finite-ensemble factor of Fortin et al.
    (2014): the ensemble mean of m members misses the truth by ``(1 + 1/m)`` times the variance.
    """
    samples, target = jnp.asarray(samples), jnp.asarray(target)
    m = samples.shape[0]
    spread = jnp.sqrt(jnp.mean(jnp.var(samples, axis=0, ddof=1)))
    skill = jnp.sqrt(jnp.mean((jnp.mean(samples, axis=0) - target) ** 2))
    return {
        "spread": float(spread),
        "skill": float(skill),
        "ratio": float(math.sqrt((m + 1) / m) * spread / skill),
    }


def calibrate_spread(
    sample: Callable[[float], Members], target: Batch, levels: Sequence[float]
) -> tuple[float, dict[float, float]]:
    """The sampler setting whose ensembles have spread/skill closest to 1.

    Args:
        sample: ``sample(level) -> (m, b, ...)`` members for every target, drawn with one
            setting (e.g. the noise level t_min of a noisy DDIM end).
        target: (b, ...) truths.
        levels: the settings to try.
    Returns:
        The level with the smallest ``|log spread_skill ratio|``, and every level's ratio.
    """
    ratios = {float(level): spread_skill(sample(level), target)["ratio"] for level in levels}
    best = min(ratios, key=lambda level: abs(math.log(ratios[level])))
    return best, ratios


def calibrate_spectrum(
    sample: Callable[[float], Members],
    target: Batch,
    levels: Sequence[float],
    *,
    k_min: int,
    k_max: int | None = None,
) -> tuple[float, dict[float, float]]:
    """The sampler setting whose draws match the target's energy spectrum in a band best.

    Args:
        sample, target, levels: as `calibrate_spread`.
        k_min, k_max: the band ``k_min < k <= k_max`` of `spectrum_error`.
    Returns:
        The level with the smallest band spectrum error (``"rel"``, averaged over the members,
        each scored against all targets), and every level's error.
    """
    errors = {}
    for level in levels:
        members = np.asarray(sample(level))
        scores = [spectrum_error(m, target, k_min=k_min, k_max=k_max)["rel"] for m in members]
        errors[float(level)] = float(np.mean(scores))
    return min(errors, key=errors.get), errors


def pulls(samples: Members, target: Batch, *, min_std: float = 1e-12) -> Array:
    """The pull ``z = (x_hat - x) / sigma_hat`` per element, shaped like `target`.

    x_hat and sigma_hat are the ensemble mean and unbiased standard deviation, the latter times
    ``sqrt(1 + 1/m)`` for the error of the mean. For a calibrated Gaussian ensemble of m members
    z follows Student's t with m - 1 degrees of freedom: mean 0 and std ``sqrt((m-1)/(m-3))``
    (1.016 for m = 64), ~N(0, 1) for large m. std > 1: overconfident; < 1: underconfident.
    """
    samples, target = jnp.asarray(samples), jnp.asarray(target)
    m = samples.shape[0]
    std = jnp.std(samples, axis=0, ddof=1) * math.sqrt(1 + 1 / m)
    return (jnp.mean(samples, axis=0) - target) / jnp.maximum(std, min_std)


def pull_statistics(samples: Members, target: Batch, *, min_std: float = 1e-12) -> dict[str, float]:
    """Mean and standard deviation of the `pulls` over all elements."""
    z = pulls(samples, target, min_std=min_std)
    return {"mean": float(jnp.mean(z)), "std": float(jnp.std(z))}


def deterministic_metrics(
    pred: Batch,
    target: Batch,
    *,
    k_min: int,
    k_max: int | None = None,
    data_range: float | None = None,
) -> dict[str, float]:
    """RFNE (per-sample mean and batch), PSNR, SSIM (means over the batch), band spectrum errors."""
    spec = spectrum_error(pred, target, k_min=k_min, k_max=k_max)
    return {
        "rfne": float(jnp.mean(rfne(pred, target))),
        "rfne_batch": float(rfne_batch(pred, target)),
        "psnr": float(jnp.mean(psnr(pred, target, data_range=data_range))),
        "ssim": float(jnp.mean(ssim(pred, target, data_range=data_range))),
        "spectrum_rel": spec["rel"],
        "spectrum_log": spec["log"],
    }


def ensemble_metrics(
    samples: Members,
    target: Batch,
    *,
    k_min: int,
    k_max: int | None = None,
    data_range: float | None = None,
) -> dict[str, float]:
    """`deterministic_metrics` of the first member (one draw, as the paper reports) and of the
    ensemble mean, plus CRPS, spread/skill and pull statistics."""
    samples = jnp.asarray(samples)
    band = {"k_min": k_min, "k_max": k_max, "data_range": data_range}
    one = deterministic_metrics(samples[0], target, **band)
    mean = deterministic_metrics(jnp.mean(samples, axis=0), target, **band)
    out = {**one, **{f"mean_{k}": v for k, v in mean.items()}}
    out["crps"] = float(crps(samples, target)) if samples.shape[0] > 1 else float("nan")
    if samples.shape[0] > 3:
        ss, pull = spread_skill(samples, target), pull_statistics(samples, target)
        out |= {"spread_skill": ss["ratio"], "pull_mean": pull["mean"], "pull_std": pull["std"]}
    return out
