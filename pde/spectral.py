"""Periodic pseudo-spectral problems ``u_t = L u + N(u)`` stepped by ETDRK.

An equation subclasses `SpectralProblem` and fills in two hooks: `linear_operator(grid)` (the
diagonal L in Fourier space) and `nonlinear(u_hat, grid)` (N, returned in Fourier space, forcing
included). States are channels-last ``(*shape, channels)`` on the grid ``x_j = j * length / n``;
batching is `jax.vmap` and trajectories `rollout` (a `lax.scan` that stays in Fourier space).
"""

import abc
import dataclasses
import typing
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from sciml.pde.etdrk import etdrk_coefficients, etdrk_step


@dataclasses.dataclass(frozen=True)
class SpectralGrid:
    """Wavenumbers and transforms of a periodic box of `shape` points and side `length`.

    Fourier arrays are channels-first ``(channels, *spectrum)`` with the rfftn layout (the last
    axis holds the non-negative half), which keeps the FFTs on contiguous trailing axes.
    """

    shape: tuple[int, ...]
    length: float
    dealias_fraction: float

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def wavenumbers(self) -> list[np.ndarray]:
        """Angular wavenumbers k_d, one per axis, each broadcastable to ``(1, *spectrum)``."""
        ks = []
        for d, n in enumerate(self.shape):
            f = np.fft.rfftfreq(n, 1.0 / n) if d == self.ndim - 1 else np.fft.fftfreq(n, 1.0 / n)
            shape = [1] * (self.ndim + 1)
            shape[d + 1] = -1
            ks.append((2 * np.pi / self.length * f).reshape(shape))
        return ks

    def k_squared(self) -> np.ndarray:
        return sum(k**2 for k in self.wavenumbers())

    def dealias_mask(self) -> np.ndarray:
        """True on the modes kept by the dealiasing rule (|k_d| < fraction * k_max per axis)."""
        mask = np.ones((), dtype=bool)
        for n, k in zip(self.shape, self.wavenumbers(), strict=True):
            integer = np.abs(k) * self.length / (2 * np.pi)
            mask = mask & (integer < self.dealias_fraction * (n // 2) + 1e-9)
        return mask

    def derivative_factor(self, axis: int, order: int = 1) -> np.ndarray:
        """``(i k_axis)^order`` with the Nyquist mode of odd derivatives set to zero."""
        k = self.wavenumbers()[axis].copy()
        n = self.shape[axis]
        if order % 2 and n % 2 == 0:
            k[np.isclose(np.abs(k), np.pi * n / self.length)] = 0.0
        return (1j * k) ** order

    def forward(self, u: Float[Array, "c *shape"]) -> Complex[Array, "c *spectrum"]:
        """rfftn of a channels-first physical field."""
        return jnp.fft.rfftn(u, axes=tuple(range(1, self.ndim + 1)))

    def to_physical(self, u_hat: Complex[Array, "c *spectrum"]) -> Float[Array, "c *shape"]:
        """Channels-first physical field (what `nonlinear` hooks compute with)."""
        return jnp.fft.irfftn(u_hat, s=self.shape, axes=tuple(range(1, self.ndim + 1)))

    def to_spectral(self, u: Float[Array, "*shape c"]) -> Complex[Array, "c *spectrum"]:
        return self.forward(jnp.moveaxis(u, -1, 0))

    def coordinates(self) -> list[np.ndarray]:
        """Grid coordinates x_d, each broadcastable to ``(1, *shape)``."""
        xs = []
        for d, n in enumerate(self.shape):
            shape = [1] * (self.ndim + 1)
            shape[d + 1] = -1
            xs.append((np.arange(n) * self.length / n).reshape(shape))
        return xs

    def to_channels_last(self, u_hat: Complex[Array, "c *spectrum"]) -> Float[Array, "*shape c"]:
        return jnp.moveaxis(self.to_physical(u_hat), 0, -1)


Param = float | Array
"""An equation parameter: a float, or an array of them when a batch of problems is vmapped."""


def equation(cls: type) -> type:
    """Make `cls` a frozen keyword-only dataclass and a pytree whose float parameters are leaves.

    Fields annotated `Param` are the leaves; they may be traced or batched: ``jax.vmap`` over a problem whose viscosity is an array
    of one value per trajectory solves them all at once. Shape, box, step, order and other
    settings stay static.
    """
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = [n for n in names if hints.get(n) == Param]
    return jax.tree_util.register_dataclass(
        cls, data_fields=data, meta_fields=[n for n in names if n not in data]
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpectralProblem(abc.ABC):
    """A periodic problem ``u_t = L u + N(u)`` on ``[0, length)^d`` with ETDRK of `order`.

    Attributes:
        shape: grid points per axis (its length is the dimension).
        length: side of the periodic box.
        dt: time step.
        order: ETDRK order, 1-4.
    """

    shape: tuple[int, ...]
    length: float = 2 * np.pi
    dt: float = 1e-2
    order: int = 4
    n_channels: ClassVar[int] = 1
    dealias_fraction: ClassVar[float] = 2 / 3  # quadratic nonlinearity; cubic ones use 1/2

    @property
    def grid(self) -> SpectralGrid:
        return SpectralGrid(tuple(self.shape), self.length, self.dealias_fraction)

    @abc.abstractmethod
    def linear_operator(self, grid: SpectralGrid) -> np.ndarray:
        """Diagonal L, broadcastable to ``(channels, *spectrum)``."""

    @abc.abstractmethod
    def nonlinear(
        self, u_hat: Complex[Array, "c *spectrum"], grid: SpectralGrid
    ) -> Complex[Array, "c *spectrum"]:
        """N(u) in Fourier space, from dealiased ``u_hat`` (channels-first)."""

    def full_linear_operator(self, dtype=jnp.complex64) -> Array:
        """L broadcast to ``(channels, *spectrum)``."""
        spec_shape = (self.n_channels, *self.shape[:-1], self.shape[-1] // 2 + 1)
        return jnp.broadcast_to(
            jnp.asarray(self.linear_operator(self.grid), dtype=dtype), spec_shape
        )

    def spectral_step_fn(self, dtype=jnp.float32) -> Callable[[Array], Array]:
        """A pure step on Fourier coefficients ``(channels, *spectrum)``."""
        grid = self.grid
        complex_dtype = jnp.result_type(dtype, jnp.complex64)
        lin = self.full_linear_operator(complex_dtype)
        coeffs = etdrk_coefficients(lin, self.dt, self.order, dtype=complex_dtype)
        mask = jnp.asarray(grid.dealias_mask(), dtype=dtype)

        def nonlinear(v):
            # Masking the product as well keeps the state band-limited, so aliased modes of the
            # quadratic/cubic terms never reach the stored fields.
            return self.nonlinear(v * mask, grid) * mask

        return lambda v: etdrk_step(v, coeffs, nonlinear)

    def step_fn(self, dtype=jnp.float32) -> Callable[[Array], Array]:
        """A pure ``step(u) -> u after dt`` on one channels-last state ``(*shape, channels)``."""
        grid, spectral_step = self.grid, self.spectral_step_fn(dtype)
        return lambda u: grid.to_channels_last(spectral_step(grid.to_spectral(u))).astype(u.dtype)

    def rollout(
        self, u0: Float[Array, "*shape c"], n_steps: int, save_every: int = 1
    ) -> Float[Array, "t *shape c"]:
        """States at steps 0, save_every, ..., n_steps (`n_steps` a multiple of `save_every`)."""
        if n_steps % save_every:
            raise ValueError(f"n_steps={n_steps} must be a multiple of save_every={save_every}")
        grid, step = self.grid, self.spectral_step_fn(u0.dtype)

        def advance(v, _):
            v = jax.lax.fori_loop(0, save_every, lambda _, w: step(w), v)
            return v, grid.to_channels_last(v).astype(u0.dtype)

        _, saved = jax.lax.scan(advance, grid.to_spectral(u0), None, length=n_steps // save_every)
        return jnp.concatenate([u0[None], saved])

    def rhs(self, u: Float[Array, "*shape c"]) -> Float[Array, "*shape c"]:
        """``L u + N(u)`` in physical space (no dealiasing of u itself): the PDE's right-hand side."""
        grid = self.grid
        u_hat = grid.to_spectral(u)
        lin = self.full_linear_operator(u_hat.dtype)
        return grid.to_channels_last(lin * u_hat + self.nonlinear(u_hat, grid)).astype(u.dtype)
