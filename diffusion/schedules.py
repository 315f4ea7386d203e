"""Noise schedules and probability paths ``x_t = alpha(t) x0 + sigma(t) eps`` for t in [0, 1].

One convention for every path here: **t = 0 is the data, t = 1 the source** (noise, or the previous
state for forecasting); samplers integrate from t = 1 down to t = 0. Flow matching follows it too,
``x_t = (1 - t) x0 + t eps`` with velocity ``dx_t/dt = eps - x0`` (the rectified-flow / SD3
direction), so every sampler and loss works with every path.

A schedule is a frozen `flax.struct.dataclass` whose hyperparameters are static fields: it is
hashable, has no pytree leaves, and can be passed to jitted functions as an ordinary argument.
Each gives ``alpha``, ``sigma``, their time derivatives (for velocities and probability-flow ODEs),
``log_snr = log(alpha^2 / sigma^2)`` and the training distribution of t (`sample_t`).
"""

import abc
import math

import flax.struct
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

Time = Float[ArrayLike, "*t"]
Coefficient = Float[Array, "*t"]


class Schedule(abc.ABC):
    """A Gaussian probability path ``x_t = alpha(t) x0 + sigma(t) eps``, ``eps ~ N(0, I)``."""

    @abc.abstractmethod
    def alpha(self, t: Time) -> Coefficient:
        """Signal coefficient alpha(t)."""

    @abc.abstractmethod
    def sigma(self, t: Time) -> Coefficient:
        """Noise coefficient sigma(t)."""

    @abc.abstractmethod
    def d_alpha(self, t: Time) -> Coefficient:
        """Time derivative d alpha / dt."""

    @abc.abstractmethod
    def d_sigma(self, t: Time) -> Coefficient:
        """Time derivative d sigma / dt."""

    def log_snr(self, t: Time) -> Coefficient:
        """``log(alpha^2 / sigma^2)``, decreasing in t."""
        return 2 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def t_of_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Coefficient:
        """The inverse of `log_snr` (samplers that place their own noise levels need it)."""
        raise NotImplementedError(f"{type(self).__name__} does not define t_of_log_snr")

    def sample_t(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "*s"]:
        """Training times, uniform on [0, 1) unless a schedule says otherwise."""
        return jax.random.uniform(key, shape)


@flax.struct.dataclass
class CosineVP(Schedule):
    """Variance-preserving cosine schedule parameterised by its log-SNR (Nichol & Dhariwal; FLEX).

    ``log_snr(t) = -2 log tan(a t + b) + 2 shift`` with ``b = atan(exp(-lmax / 2))`` and
    ``a = atan(exp(-lmin / 2)) - b``: the plain cosine schedule ``-2 log tan(pi t / 2)`` with t
    remapped so the unshifted log-SNR runs exactly from ``lmax`` (t = 0) to ``lmin`` (t = 1).
    ``shift`` moves the whole curve by ``2 shift`` (``shift = log(64 / d)`` is the "shifted cosine"
    of simple diffusion at resolution d). ``alpha = sqrt(sigmoid(log_snr))``,
    ``sigma = sqrt(sigmoid(-log_snr))``, so ``alpha^2 + sigma^2 = 1``.

    Attributes:
        logsnr_min: log-SNR at t = 1 before the shift.
        logsnr_max: log-SNR at t = 0 before the shift.
        shift: log-SNR shift (half of the additive offset).
    """

    logsnr_min: float = flax.struct.field(pytree_node=False, default=-20.0)
    logsnr_max: float = flax.struct.field(pytree_node=False, default=20.0)
    shift: float = flax.struct.field(pytree_node=False, default=0.0)

    def _ab(self) -> tuple[float, float]:
        b = math.atan(math.exp(-self.logsnr_max / 2))
        return math.atan(math.exp(-self.logsnr_min / 2)) - b, b

    def log_snr(self, t: Time) -> Coefficient:
        a, b = self._ab()
        return -2 * jnp.log(jnp.tan(a * jnp.asarray(t) + b)) + 2 * self.shift

    def t_of_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Coefficient:
        a, b = self._ab()
        return (jnp.arctan(jnp.exp(self.shift - jnp.asarray(log_snr) / 2)) - b) / a

    def d_log_snr(self, t: Time) -> Coefficient:
        """``d log_snr / dt = -4 a / sin(2 (a t + b))``."""
        a, b = self._ab()
        return -4 * a / jnp.sin(2 * (a * jnp.asarray(t) + b))

    def alpha(self, t: Time) -> Coefficient:
        return jnp.sqrt(jax.nn.sigmoid(self.log_snr(t)))

    def sigma(self, t: Time) -> Coefficient:
        return jnp.sqrt(jax.nn.sigmoid(-self.log_snr(t)))

    def d_alpha(self, t: Time) -> Coefficient:
        # d(alpha^2)/dt = alpha^2 sigma^2 d(log_snr)/dt.
        return 0.5 * self.alpha(t) * self.sigma(t) ** 2 * self.d_log_snr(t)

    def d_sigma(self, t: Time) -> Coefficient:
        return -0.5 * self.sigma(t) * self.alpha(t) ** 2 * self.d_log_snr(t)


def karras_sigmas(
    n_steps: int,
    sigma_min: Float[ArrayLike, ""],
    sigma_max: Float[ArrayLike, ""],
    rho: float = 7.0,
) -> Float[Array, " n_plus_1"]:
    """Karras et al. (2022) noise levels, eq. 5, with the final ``sigma_N = 0`` appended.

    ``sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i = 0 .. N - 1``.

    Args:
        n_steps: N >= 2, the number of non-zero levels.
        sigma_min, sigma_max: the end levels.
        rho: the warping exponent (7 in EDM).
    Returns:
        Shape (N + 1,), decreasing from sigma_max to sigma_min, then 0.
    """
    if n_steps < 2:
        raise ValueError(f"the Karras grid needs n_steps >= 2, got {n_steps}")
    ramp = jnp.linspace(0.0, 1.0, n_steps)
    lo, hi = jnp.asarray(sigma_min) ** (1 / rho), jnp.asarray(sigma_max) ** (1 / rho)
    return jnp.append((hi + ramp * (lo - hi)) ** rho, 0.0)


@flax.struct.dataclass
class EDM(Schedule):
    """The EDM (Karras et al. 2022) variance-exploding path ``x = x0 + sigma eps``.

    ``alpha = 1`` and ``sigma(t) = (sigma_min^(1/rho) + t (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``,
    so a uniform grid in t from 1 to 0 is exactly the Karras rho-grid (`karras_sigmas`). Training
    draws ``ln sigma ~ N(p_mean, p_std^2)`` and maps it to t (clipped to [0, 1], which moves a
    probability of about 1e-5 with the defaults).

    Attributes:
        sigma_min, sigma_max: the noise levels at t = 0 and t = 1.
        sigma_data: the data standard deviation assumed by the preconditioning and weighting.
        rho: the grid's warping exponent.
        p_mean, p_std: the training log-normal over sigma.
    """

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.002)
    sigma_max: float = flax.struct.field(pytree_node=False, default=80.0)
    sigma_data: float = flax.struct.field(pytree_node=False, default=0.5)
    rho: float = flax.struct.field(pytree_node=False, default=7.0)
    p_mean: float = flax.struct.field(pytree_node=False, default=-1.2)
    p_std: float = flax.struct.field(pytree_node=False, default=1.2)

    def _ends(self) -> tuple[float, float]:
        lo = self.sigma_min ** (1 / self.rho)
        return lo, self.sigma_max ** (1 / self.rho) - lo

    def alpha(self, t: Time) -> Coefficient:
        return jnp.ones_like(jnp.asarray(t))

    def sigma(self, t: Time) -> Coefficient:
        lo, span = self._ends()
        return (lo + span * jnp.asarray(t)) ** self.rho

    def d_alpha(self, t: Time) -> Coefficient:
        return jnp.zeros_like(jnp.asarray(t))

    def d_sigma(self, t: Time) -> Coefficient:
        lo, span = self._ends()
        return self.rho * span * (lo + span * jnp.asarray(t)) ** (self.rho - 1)

    def log_snr(self, t: Time) -> Coefficient:
        return -2 * jnp.log(self.sigma(t))

    def t_of_sigma(self, sigma: Float[ArrayLike, "*t"]) -> Coefficient:
        """The inverse of `sigma` (not clipped)."""
        lo, span = self._ends()
        return (jnp.asarray(sigma) ** (1 / self.rho) - lo) / span

    def t_of_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Coefficient:
        return self.t_of_sigma(jnp.exp(-jnp.asarray(log_snr) / 2))

    def sample_t(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "*s"]:
        sigma = jnp.exp(self.p_mean + self.p_std * jax.random.normal(key, shape))
        return jnp.clip(self.t_of_sigma(sigma), 0.0, 1.0)

    def sigmas(self, n_steps: int) -> Float[Array, " n_plus_1"]:
        """`karras_sigmas` of this schedule: N levels from sigma_max to sigma_min, then 0."""
        return karras_sigmas(n_steps, self.sigma_min, self.sigma_max, self.rho)


@flax.struct.dataclass
class FlowMatching(Schedule):
    """Linear (optimal-transport / rectified-flow) path ``x_t = (1 - t) x0 + (s + (1 - s) t) eps``.

    With ``s = sigma_min = 0`` (the default) this is rectified flow, velocity ``eps - x0``;
    ``sigma_min > 0`` is Lipman et al.'s OT path (data blurred by ``sigma_min`` at t = 0).

    Attributes:
        sigma_min: noise left at t = 0.
    """

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.0)

    def alpha(self, t: Time) -> Coefficient:
        return 1.0 - jnp.asarray(t)

    def sigma(self, t: Time) -> Coefficient:
        return self.sigma_min + (1.0 - self.sigma_min) * jnp.asarray(t)

    def d_alpha(self, t: Time) -> Coefficient:
        return jnp.full_like(jnp.asarray(t), -1.0)

    def d_sigma(self, t: Time) -> Coefficient:
        return jnp.full_like(jnp.asarray(t), 1.0 - self.sigma_min)

    def t_of_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Coefficient:
        # alpha / sigma = r solved for t.
        r = jnp.exp(jnp.asarray(log_snr) / 2)
        return (1 - r * self.sigma_min) / (1 + r * (1 - self.sigma_min))


@flax.struct.dataclass
class StochasticInterpolant(Schedule):
    """Forecasting path between the next state (t = 0) and the previous one (t = 1).

    Written in residual coordinates ``r = x_next - x_prev``: the path of ``x_t - x_prev`` is
    ``(1 - t) r + gamma(t) eps`` with ``gamma(t)^2 = sigma_min^2 + 2 scale^2 t (1 - t)``, i.e.
    ``x_t = (1 - t) x_next + t x_prev + gamma(t) eps``: the stochastic interpolant with the
    Brownian-bridge noise ``scale sqrt(2 t (1 - t))``, floored by sigma_min (the path of Lim et
    al.'s forecasting study has this form). Use it with `Residual` and `last_snapshot_base`, so
    that sampling starts from ``x_prev + sigma_min eps``. The floor keeps the velocity target
    ``-r + gamma'(t) eps`` bounded (the bare bridge's ``gamma'`` is infinite at both ends) and
    gives deterministic samplers a source with spread; its price is that the t = 0 marginal is
    the data blurred by ``N(0, sigma_min^2)`` and that the flow is stiff within about
    ``sigma_min^2 / (2 scale^2)`` of either end (prefer adaptive `flow_ode` or `ddim`).

    Attributes:
        scale: bridge noise amplitude.
        sigma_min: noise at both ends.
    """

    scale: float = flax.struct.field(pytree_node=False, default=1.0)
    sigma_min: float = flax.struct.field(pytree_node=False, default=0.01)

    def alpha(self, t: Time) -> Coefficient:
        return 1.0 - jnp.asarray(t)

    def sigma(self, t: Time) -> Coefficient:
        t = jnp.asarray(t)
        return jnp.sqrt(self.sigma_min**2 + 2 * self.scale**2 * t * (1 - t))

    def d_alpha(self, t: Time) -> Coefficient:
        return jnp.full_like(jnp.asarray(t), -1.0)

    def d_sigma(self, t: Time) -> Coefficient:
        return self.scale**2 * (1 - 2 * jnp.asarray(t)) / self.sigma(t)

    def t_of_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Coefficient:
        # sigma^2 = q alpha^2 with q = exp(-log_snr) is A t^2 - B t + C = 0; sigma / alpha is
        # increasing, so the root in [0, 1) is the smaller one, written without cancellation.
        q = jnp.exp(-jnp.asarray(log_snr))
        two_s2 = 2 * self.scale**2
        a, b, c = q + two_s2, 2 * q + two_s2, q - self.sigma_min**2
        return 2 * c / (b + jnp.sqrt(jnp.maximum(b**2 - 4 * a * c, 0.0)))
