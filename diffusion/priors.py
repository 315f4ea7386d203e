"""Noise priors for functional flow matching: random fields sampled on any grid.

Every prior is a frozen `flax.struct.dataclass` with static hyperparameters (hashable, no pytree
leaves, so it can be a static argument of a jitted sampler) and one method,
``sample(key, shape) -> (b, *spatial, c)``, independent across batch rows and channels.

- `WhiteNoise`: i.i.d. ``N(0, std^2)`` per grid point (ECI's Navier-Stokes prior; the paper's
  Matern-1/2 GP with length-scale 0.001 is this to within ``exp(-spacing / 0.001)``).
- `UniformNoise`: i.i.d. ``U[low, high)`` (ECI's porous-medium prior uses U[0, 1)).
- `SpectralGRF`: the stationary Gaussian field ``N(0, sigma^2 (-Laplacian + tau^2)^(-alpha))`` on
  the periodic box, sampled in Fourier space: resolution independent (the value at a point has
  the same law on every grid fine enough to hold its spectrum, for ``alpha > d / 2``).
- `GaussianProcess`: a GP with a Matern-1/2 or RBF kernel on the grid ``linspace(0, 1, n)`` per
  axis, by a dense Cholesky factor (n = prod(spatial) at most `GaussianProcess.max_points`).
"""

import abc
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

Sample = Float[Array, "b *spatial c"]


class Prior(abc.ABC):
    """A distribution over fields on a grid, sampled channels-last."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Sample:
        """Independent draws of shape (b, *spatial, c)."""


@flax.struct.dataclass
class WhiteNoise(Prior):
    """I.i.d. ``N(0, std^2)`` at every grid point.

    Attributes:
        std: standard deviation.
    """

    std: float = flax.struct.field(pytree_node=False, default=1.0)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Sample:
        return self.std * jax.random.normal(key, shape, dtype)


@flax.struct.dataclass
class UniformNoise(Prior):
    """I.i.d. ``U[low, high)`` at every grid point.

    Attributes:
        low, high: the interval.
    """

    low: float = flax.struct.field(pytree_node=False, default=0.0)
    high: float = flax.struct.field(pytree_node=False, default=1.0)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Sample:
        return jax.random.uniform(key, shape, dtype, minval=self.low, maxval=self.high)


@flax.struct.dataclass
class SpectralGRF(Prior):
    """Periodic Gaussian random field ``N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha))``.

    Karhunen-Loeve on the box [0, length)^d: ``u(x) = Re sum_kappa a_kappa xi_kappa exp(i kappa.x)``
    over the angular wavevectors kappa the grid resolves, ``a_kappa = sigma (|kappa|^2 +
    tau^2)^(-alpha/2)``, xi complex with independent N(0, 1) parts; the covariance is
    ``sum_kappa a_kappa^2 cos(kappa.(x - y))``. The mean mode is kept (its variance is
    ``sigma^2 tau^(-2 alpha)``), so the field is non-degenerate. A grid that resolves a wavevector
    gives it the same amplitude at every resolution: refining only adds the (for ``alpha > d/2``
    summable) tail, see `pointwise_variance`.

    Attributes:
        alpha: smoothness exponent (> d/2 for a resolution-independent pointwise variance).
        tau: inverse length scale.
        sigma: amplitude.
        length: box side (the grid's points are ``j * length / n``).
    """

    alpha: float = flax.struct.field(pytree_node=False, default=2.0)
    tau: float = flax.struct.field(pytree_node=False, default=3.0)
    sigma: float = flax.struct.field(pytree_node=False, default=1.0)
    length: float = flax.struct.field(pytree_node=False, default=1.0)

    def amplitudes(self, spatial: tuple[int, ...]) -> np.ndarray:
        """``a_kappa`` on the FFT grid of `spatial` (numpy, float64), shape `spatial`."""
        freqs = [2 * np.pi * np.fft.fftfreq(n, d=self.length / n) for n in spatial]
        kappa2 = sum(k**2 for k in np.meshgrid(*freqs, indexing="ij"))
        return self.sigma * (kappa2 + self.tau**2) ** (-self.alpha / 2)

    def pointwise_variance(self, spatial: tuple[int, ...]) -> float:
        """``Var u(x) = sum_kappa a_kappa^2`` over the modes a grid of `spatial` holds."""
        return float(np.sum(self.amplitudes(spatial) ** 2))

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Sample:
        spatial = tuple(shape[1:-1])
        axes = tuple(range(1, len(shape) - 1))
        scale = self.amplitudes(spatial) * np.prod(spatial)  # ifftn divides by prod(spatial)
        scale = jnp.asarray(scale.reshape(1, *spatial, 1), dtype)
        re, im = jax.random.normal(key, (2, *shape), dtype)
        return jnp.fft.ifftn(jax.lax.complex(scale * re, scale * im), axes=axes).real.astype(dtype)


@functools.lru_cache(maxsize=8)
def _gp_cholesky(
    spatial: tuple[int, ...], kernel: str, length_scale: float, variance: float, jitter: float
) -> np.ndarray:
    axes = [np.linspace(0.0, 1.0, n) for n in spatial]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(spatial))
    dist = np.sqrt(np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=-1))
    if kernel == "matern12":
        cov = variance * np.exp(-dist / length_scale)
    else:
        cov = variance * np.exp(-0.5 * (dist / length_scale) ** 2)
    cov[np.diag_indices_from(cov)] += jitter * variance
    return np.linalg.cholesky(cov)


@flax.struct.dataclass
class GaussianProcess(Prior):
    """A GP on the grid ``linspace(0, 1, n)`` per axis, sampled as ``L z`` with ``L L^T = K``.

    Kernels of the Euclidean distance r: "matern12" ``variance exp(-r / l)`` (ECI's choice, with
    l = 0.001 and variance 1) and "rbf" ``variance exp(-r^2 / (2 l^2))``. ``jitter * variance``
    is added to the diagonal (RBF Gram matrices are numerically singular). The factor is computed
    once per grid in float64 numpy and embedded as a constant: dense, so for small grids only.

    Attributes:
        kernel: "matern12" or "rbf".
        length_scale: l, in units of the unit box.
        variance: the kernel's variance.
        jitter: relative diagonal regularisation.
    """

    kernel: str = flax.struct.field(pytree_node=False, default="matern12")
    length_scale: float = flax.struct.field(pytree_node=False, default=0.001)
    variance: float = flax.struct.field(pytree_node=False, default=1.0)
    jitter: float = flax.struct.field(pytree_node=False, default=1e-6)

    max_points = 4096

    def cholesky(self, spatial: tuple[int, ...]) -> np.ndarray:
        """The lower Cholesky factor of the grid's covariance (float64), shape (n, n)."""
        if self.kernel not in ("matern12", "rbf"):
            raise ValueError(
                f"GaussianProcess.kernel must be 'matern12' or 'rbf', got {self.kernel!r}"
            )
        n = int(np.prod(spatial))
        if n > self.max_points:
            raise ValueError(
                f"GaussianProcess factors a dense {n} x {n} covariance; grids of at most "
                f"{self.max_points} points are supported: use SpectralGRF for larger grids"
            )
        return _gp_cholesky(
            tuple(spatial), self.kernel, self.length_scale, self.variance, self.jitter
        )

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Sample:
        b, *spatial, c = shape
        chol = jnp.asarray(self.cholesky(tuple(spatial)), dtype)
        z = jax.random.normal(key, (b, chol.shape[0], c), dtype)
        fields = jnp.einsum("nm,bmc->bnc", chol, z, precision=jax.lax.Precision.HIGHEST)
        return fields.reshape(shape)
