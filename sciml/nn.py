"""Generic flax.linen layers shared by the domains: spectral convolution and pointwise MLPs."""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def gelu(x: Array) -> Array:
    """Tanh-approximated GELU: exact GELU lowers to a slow erfc on CPU and differs by < 1e-3."""
    return jax.nn.gelu(x, approximate=True)


def _kept_modes(n: int, modes: int, last: bool) -> int:
    """How many modes per sign an axis of `n` points can hold (grids too coarse keep fewer)."""
    return min(modes, n // 2 + 1) if last else min(modes, n // 2)


def _take_kept(a: Array, axis: int, m: int, full: int | None = None) -> Array:
    """Modes 0..m-1 and -m..-1 of `a` along `axis` as one block [positive | negative]."""
    n = a.shape[axis] if full is None else full
    pos = jax.lax.slice_in_dim(a, 0, m, axis=axis)
    neg = jax.lax.slice_in_dim(a, n - m, n, axis=axis)
    return jnp.concatenate([pos, neg], axis=axis)


def _place_kept(block: Array, axis: int, m: int, n: int) -> Array:
    """Inverse of `_take_kept`: spread [positive | negative] over an axis of `n` modes, zeros between."""
    pos = jax.lax.slice_in_dim(block, 0, m, axis=axis)
    neg = jax.lax.slice_in_dim(block, m, 2 * m, axis=axis)
    widths = [(0, 0)] * block.ndim
    widths[axis] = (0, n - 2 * m)
    return jnp.concatenate([jnp.pad(pos, widths), neg], axis=axis)


class SpectralConv(nn.Module):
    """Fourier-space convolution ``v -> IFFT(R . FFT(v)[kept modes])`` on channels-last fields.

    Input (batch, *spatial, c_in) -> output (batch, *spatial, out_channels). `R` holds complex
    weights of shape (2m_1, ..., 2m_{d-1}, m_d, c_in, c_out): both signs of every non-last axis and
    the non-negative half of the last (rfftn) axis. Parameters: 2 * 2^(d-1) * prod(m) * c_in * c_out.
    """

    out_channels: int
    modes: Sequence[int]

    @nn.compact
    def __call__(self, v: Float[Array, "b *spatial ci"]) -> Float[Array, "b *spatial co"]:
        ndim = v.ndim - 2
        if len(self.modes) != ndim:
            raise ValueError(
                f"modes {tuple(self.modes)} given for a {ndim}-D input of shape {v.shape}"
            )
        c_in = v.shape[-1]
        wshape = (*[2 * m for m in self.modes[:-1]], self.modes[-1], c_in, self.out_channels)
        scale = 1.0 / (c_in * self.out_channels)
        w_re = self.param("weight_real", nn.initializers.uniform(scale), wshape)
        w_im = self.param("weight_imag", nn.initializers.uniform(scale), wshape)
        weight = jax.lax.complex(w_re, w_im)

        # Channels-first so the FFTs run over contiguous trailing axes (much faster on CPU).
        spatial = v.shape[1:-1]
        axes = tuple(range(2, 2 + ndim))
        spec = jnp.fft.rfftn(jnp.moveaxis(v, -1, 1), axes=axes)
        kept = [
            _kept_modes(n, m, last=i == ndim - 1)
            for i, (n, m) in enumerate(zip(spatial, self.modes, strict=True))
        ]
        for i in range(ndim - 1):
            spec = _take_kept(spec, 2 + i, kept[i])
            weight = _take_kept(weight, i, kept[i], full=2 * self.modes[i])
        spec = spec[..., : kept[-1]]
        weight = weight[..., : kept[-1], :, :]
        # Written out per dimension: einsum's "..." cannot sit between named axes on both operands.
        letters = "xyz"[:ndim]
        out = jnp.einsum(f"bi{letters},{letters}io->bo{letters}", spec, weight)
        for i in range(ndim - 1):
            out = _place_kept(out, 2 + i, kept[i], spatial[i])
        out = jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, spatial[-1] // 2 + 1 - kept[-1])])
        result = jnp.fft.irfftn(out, s=spatial, axes=axes)
        return jnp.moveaxis(result, 1, -1).astype(v.dtype)


class MLP(nn.Module):
    """Pointwise multilayer perceptron on the last axis: Dense -> act -> ... -> Dense."""

    features: Sequence[int]
    activation: Callable[[Array], Array] = gelu

    @nn.compact
    def __call__(self, x: Float[Array, "... c"]) -> Float[Array, "... f"]:
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x
