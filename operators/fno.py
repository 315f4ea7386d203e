"""Fourier Neural Operator (Li et al., ICLR 2021) for 1D, 2D and 3D channels-last fields."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.nn import MLP, ChannelsFirstDense, SpectralConv, gelu


def positional_grid(spatial: tuple[int, ...]) -> np.ndarray:
    """Coordinates in [0, 1) of a periodic grid, shape (*spatial, ndim)."""
    axes = [np.arange(n) / n for n in spatial]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)


class FNO(nn.Module):
    """FNO: lift pointwise to `width`, `n_layers` Fourier layers, project pointwise.

    Fourier layer: ``v <- gelu(W v + b + K(v))`` with K a `SpectralConv` keeping `modes` per axis
    (no activation after the last layer). Lifting is one Dense layer, projection a two-layer MLP
    with `projection_width` hidden units. Input (batch, *spatial, in_c) -> (batch, *spatial,
    out_channels); with `positional_grid` the ndim coordinates are appended to the input channels.

    Parameter count, with c = in_c + ndim * positional_grid, w = width, p = projection_width,
    d = ndim, M = prod(modes), o = out_channels:
        (c + 1) w + n_layers (2^d M w^2 + w^2 + w) + (w + 1) p + (p + 1) o.
    """

    out_channels: int
    modes: int | tuple[int, ...] = 16
    width: int = 32
    n_layers: int = 4
    projection_width: int = 128
    positional_grid: bool = True

    @nn.compact
    def __call__(self, x: Float[Array, "b *spatial c"]) -> Float[Array, "b *spatial o"]:
        ndim = x.ndim - 2
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"{type(self).__name__} expects (batch, *spatial, channels) with 1-3 spatial axes,"
                f" got {x.shape}"
            )
        modes = (self.modes,) * ndim if isinstance(self.modes, int) else tuple(self.modes)
        if self.positional_grid:
            # Adding to zeros_like(x) keeps x's batch sharding (a plain broadcast would not).
            coords = jnp.zeros_like(x[..., :1]) + positional_grid(x.shape[1:-1])[None].astype(
                x.dtype
            )
            x = jnp.concatenate([x, coords], axis=-1)
        # 2D/3D run channels-first from the lifting on: the transforms then contract contiguous
        # axes and only the small spectral blocks are ever transposed (FNO-2D forward 1.3x faster
        # on CPU). In 1D the channels-last layout measured faster (no large transposes there).
        first = ndim > 1
        dense = ChannelsFirstDense if first else nn.Dense
        v = dense(self.width, name="Dense_0")(jnp.moveaxis(x, -1, 1) if first else x)
        for layer in range(self.n_layers):
            skip = dense(self.width, name=f"Dense_{layer + 1}")(v)
            v = self.integral_operator(modes, first)(v) + skip
            if layer < self.n_layers - 1:
                v = gelu(v)
        out = MLP((self.projection_width, self.out_channels), channels_first=first)(v)
        return jnp.moveaxis(out, 1, -1) if first else out

    def integral_operator(self, modes: tuple[int, ...], channels_first: bool) -> nn.Module:
        """The kernel integral K of one Fourier layer in the given layout (variants such as
        `TFNO` swap it)."""
        return SpectralConv(self.width, modes, channels_first=channels_first)
