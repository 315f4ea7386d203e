"""A plain convolutional U-Net baseline on 1D, 2D and 3D channels-last fields."""

import math

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from sciml.nn import gelu

_PADDING = {"circular": "CIRCULAR", "zeros": "SAME"}


class ConvBlock(nn.Module):
    """Two ``conv (3 per axis) -> GroupNorm (optional) -> gelu`` layers with `features` channels."""

    features: int
    groups: int = 8
    padding: str = "circular"

    @nn.compact
    def __call__(self, v: Float[Array, "b *spatial ci"]) -> Float[Array, "b *spatial co"]:
        for _ in range(2):
            v = nn.Conv(self.features, (3,) * (v.ndim - 2), padding=_PADDING[self.padding])(v)
            if self.groups:
                v = nn.GroupNorm(num_groups=math.gcd(self.groups, self.features))(v)
            v = gelu(v)
        return v


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) for fields: conv blocks, average-pool down, transposed-conv up.

    ``L = len(widths) - 1`` levels: a `ConvBlock` with ``widths[l]`` channels on grid N / 2^l,
    2 x 2 average pooling between levels; the decoder upsamples by a stride-2 transposed
    convolution, concatenates the encoder's features on that grid and applies a `ConvBlock`; a
    pointwise layer maps to `out_channels`. `groups` sets GroupNorm's groups (gcd with the width;
    0 disables normalisation); `padding` is "circular" (periodic problems) or "zeros".

    A discrete-kernel baseline, not a neural operator: it runs on grids whose sizes are divisible
    by 2^L, but learns the map at the training resolution only.

    Input (batch, *spatial, in_c) -> (batch, *spatial, out_channels), 1-3 spatial axes.
    """

    out_channels: int
    widths: tuple[int, ...] = (32, 64, 128)
    groups: int = 8
    padding: str = "circular"

    @nn.compact
    def __call__(self, x: Float[Array, "b *spatial c"]) -> Float[Array, "b *spatial o"]:
        ndim = x.ndim - 2
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"UNet expects (batch, *spatial, channels) with 1-3 spatial axes, got {x.shape}"
            )
        if self.padding not in _PADDING:
            raise ValueError(f"padding must be one of {sorted(_PADDING)}, got {self.padding!r}")
        widths, n_levels = tuple(self.widths), len(self.widths) - 1
        if any(n % 2**n_levels for n in x.shape[1:-1]):
            raise ValueError(
                f"UNet with {n_levels} levels needs spatial sizes divisible by {2**n_levels},"
                f" got {x.shape[1:-1]}"
            )
        window = (2,) * ndim
        v, skips = x, []
        for level, width in enumerate(widths):
            if level:
                v = nn.avg_pool(v, window, strides=window)
            v = ConvBlock(width, self.groups, self.padding)(v)
            skips.append(v)
        for level in reversed(range(n_levels)):
            v = nn.ConvTranspose(widths[level], window, strides=window, padding="VALID")(v)
            v = jnp.concatenate([v, skips[level]], axis=-1)
            v = ConvBlock(widths[level], self.groups, self.padding)(v)
        return nn.Dense(self.out_channels)(v)
