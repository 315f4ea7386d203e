"""Convolutional neural operator (CNO; Raonic et al., NeurIPS 2023) on 1D, 2D and 3D periodic fields."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from sciml.fields import spectral_resample
from sciml.nn import gelu


def antialiased_gelu(
    v: Float[Array, "b *spatial c"], out_shape: Sequence[int] | None = None
) -> Float[Array, "b *out_spatial c"]:
    """CNO's activation operator: upsample spectrally, apply gelu, low-pass back onto `out_shape`.

    The activation runs on a grid twice as fine per axis as the finer of the input and output
    grids, so the harmonics it creates up to that grid's Nyquist frequency are removed by the
    final spectral truncation instead of aliasing onto the kept modes.
    """
    in_shape = tuple(v.shape[1:-1])
    out_shape = in_shape if out_shape is None else tuple(out_shape)
    fine = tuple(2 * max(a, b) for a, b in zip(in_shape, out_shape, strict=True))
    return spectral_resample(gelu(spectral_resample(v, fine)), out_shape)


def _conv(features: int, ndim: int) -> nn.Conv:
    return nn.Conv(features, (3,) * ndim, padding="CIRCULAR")


class CNOBlock(nn.Module):
    """Convolution (3 per axis, periodic padding) then `antialiased_gelu` onto the grid `out_shape`."""

    features: int

    @nn.compact
    def __call__(
        self, v: Float[Array, "b *spatial ci"], out_shape: Sequence[int] | None = None
    ) -> Float[Array, "b *out_spatial co"]:
        return antialiased_gelu(_conv(self.features, v.ndim - 2)(v), out_shape)


class CNOResidualBlock(nn.Module):
    """``v + conv(antialiased_gelu(conv(v)))`` at a fixed grid and width."""

    @nn.compact
    def __call__(self, v: Float[Array, "b *spatial c"]) -> Float[Array, "b *spatial c"]:
        ndim, c = v.ndim - 2, v.shape[-1]
        return v + _conv(c, ndim)(antialiased_gelu(_conv(c, ndim)(v)))


class CNO(nn.Module):
    """CNO: a U-Net of convolutions with anti-aliased activations, down/up-sampling by 2 per level.

    Lift with a `CNOBlock` to ``widths[0]``; ``L = len(widths) - 1`` down blocks (conv at N_l,
    activation onto N_l / 2, ``widths[l + 1]`` channels); `n_res_neck` residual blocks at the
    coarsest grid; up blocks back through the same grids, each concatenated with the encoder's
    features on that grid after they pass `n_res` residual blocks (the skip connections), then an
    invariant `CNOBlock`; a final 3-point convolution to `out_channels`. Every grid change is a
    spectral resampling (`spectral_resample`), every convolution periodic. No normalisation layers
    (no batch statistics to carry).

    Resolution: convolution kernels are discrete (3 grid points), so the map is learnt at the
    training grid. It runs on any grid whose sizes are divisible by 2^L, but only the training
    grid gives the trained operator. Set `resolution` to the training grid to follow Raonic et
    al.'s continuous-discrete equivalence: any input is first resampled spectrally onto
    `resolution` and the output back onto the input's grid, so band-limited inputs at any
    resolution give the same function.

    Input (batch, *spatial, in_c) -> (batch, *spatial, out_channels), 1-3 spatial axes.
    """

    out_channels: int
    widths: tuple[int, ...] = (16, 32, 64)
    n_res: int = 1
    n_res_neck: int = 2
    resolution: int | tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: Float[Array, "b *spatial c"]) -> Float[Array, "b *spatial o"]:
        ndim = x.ndim - 2
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"CNO expects (batch, *spatial, channels) with 1-3 spatial axes, got {x.shape}"
            )
        in_grid = tuple(x.shape[1:-1])
        if self.resolution is not None:
            res = self.resolution
            x = spectral_resample(x, (res,) * ndim if isinstance(res, int) else tuple(res))
        widths, n_levels = tuple(self.widths), len(self.widths) - 1
        grid = tuple(x.shape[1:-1])
        if any(n % 2**n_levels for n in grid):
            raise ValueError(
                f"CNO with {n_levels} levels needs spatial sizes divisible by {2**n_levels},"
                f" got {grid}; resample the input or set `resolution`"
            )
        grids = [tuple(n // 2**level for n in grid) for level in range(n_levels + 1)]

        v = CNOBlock(widths[0])(x)
        skips = []
        for level in range(n_levels):
            skip = v
            for _ in range(self.n_res):
                skip = CNOResidualBlock()(skip)
            skips.append(skip)
            v = CNOBlock(widths[level + 1])(v, grids[level + 1])
        for _ in range(self.n_res_neck):
            v = CNOResidualBlock()(v)
        for level in reversed(range(n_levels)):
            v = CNOBlock(widths[level])(v, grids[level])
            v = CNOBlock(widths[level])(jnp.concatenate([v, skips[level]], axis=-1))
        out = _conv(self.out_channels, ndim)(v)
        if self.resolution is not None:
            out = spectral_resample(out, in_grid)
        return out
