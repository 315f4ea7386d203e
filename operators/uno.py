"""U-shaped neural operator (U-NO; Rahman, Ross, Azizzadenesheli 2022) on 1D, 2D and 3D fields."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.fields import spectral_resample
from sciml.nn import MLP, gelu, spectral_apply, take_corners
from sciml.operators.fno import positional_grid


class FourierLayer(nn.Module):
    """Linear Fourier layer between grids: ``v -> K(v) + W I(v) + b`` on the grid `out_shape`.

    K is a spectral convolution (dense complex weights over the kept modes, as `SpectralConv`)
    evaluated onto the output grid by inverse rfftn with ``s=out_shape``: modes are truncated when
    coarsening and zero-padded when refining. I is `sciml.fields.spectral_resample` onto `out_shape` and W a
    pointwise linear map (applied on the coarser of the two grids: the two commute exactly).
    A band-limited input below the kept modes gives the same output function on every grid.
    Parameters: ``2^d prod(m) c_in c_out + c_in c_out + c_out``.
    """

    out_channels: int
    modes: Sequence[int]

    @nn.compact
    def __call__(
        self, v: Float[Array, "b *spatial ci"], out_shape: Sequence[int] | None = None
    ) -> Float[Array, "b *out_spatial co"]:
        in_shape = v.shape[1:-1]
        out_shape = in_shape if out_shape is None else tuple(out_shape)
        if len(self.modes) != len(in_shape) or len(out_shape) != len(in_shape):
            raise ValueError(
                f"modes {tuple(self.modes)} and out_shape {out_shape} given for input {v.shape}"
            )
        c_in, c_out = v.shape[-1], self.out_channels
        wshape = (*[2 * m for m in self.modes[:-1]], self.modes[-1], c_in, c_out)
        scale = 1.0 / (c_in * c_out)
        w_re = self.param("weight_real", nn.initializers.uniform(scale), wshape)
        w_im = self.param("weight_imag", nn.initializers.uniform(scale), wshape)
        weight = jax.lax.complex(w_re, w_im)
        ndim = len(in_shape)

        def contract(block: Array, kept: tuple[int, ...]) -> Array:
            w = weight
            for i in range(ndim - 1):
                w = take_corners(w, i, kept[i], 2 * self.modes[i])
            w = jax.lax.slice_in_dim(w, 0, kept[-1], axis=ndim - 1)
            letters = "xyz"[:ndim]
            return jnp.einsum(f"bi{letters},{letters}io->bo{letters}", block, w)

        pointwise = nn.Dense(c_out)
        if np.prod(out_shape) <= np.prod(in_shape):
            skip = pointwise(spectral_resample(v, out_shape))
        else:
            skip = spectral_resample(pointwise(v), out_shape)
        return spectral_apply(v, contract, self.modes, out_shape) + skip


class UNO(nn.Module):
    """U-NO: Fourier layers that coarsen the grid by 2 per level, then refine it back, with skips.

    Lift pointwise to ``widths[0]``; a Fourier layer at the input grid; an encoder of
    ``L = len(widths) - 1`` layers, layer l mapping grid N_(l-1) to N_l = ceil(N_(l-1) / 2) with
    ``widths[l]`` channels and modes m // 2^l per axis; a Fourier layer at the coarsest grid; a
    decoder mapping back through exactly the encoder's grids, each layer's output concatenated
    with the encoder features on that grid (skip connection); a last Fourier layer onto the output
    grid ``round(output_scale * N)`` and a pointwise projection MLP. gelu follows every Fourier
    layer. Grid sizes are relative, so any input resolution works with the same parameters, and
    `output_scale` other than 1 evaluates the output on a finer or coarser grid (super-resolution).
    Every grid change is a spectral truncation / zero-padding (`FourierLayer`).

    Input (batch, *spatial, in_c) -> (batch, *round(output_scale * spatial), out_channels), 1-3
    spatial axes; with `positional_grid` the d coordinates are appended to the input channels.
    """

    out_channels: int
    modes: int | tuple[int, ...] = 16
    widths: tuple[int, ...] = (16, 32, 64)
    projection_width: int = 128
    positional_grid: bool = True
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, x: Float[Array, "b *spatial c"]) -> Float[Array, "b *out_spatial o"]:
        ndim = x.ndim - 2
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"UNO expects (batch, *spatial, channels) with 1-3 spatial axes, got {x.shape}"
            )
        modes = (self.modes,) * ndim if isinstance(self.modes, int) else tuple(self.modes)
        widths = tuple(self.widths)
        grids = [tuple(x.shape[1:-1])]
        for _ in widths[1:]:
            grids.append(tuple(max(1, -(-n // 2)) for n in grids[-1]))
        level_modes = [tuple(max(1, m // 2**level) for m in modes) for level in range(len(grids))]
        out_grid = tuple(max(1, round(self.output_scale * n)) for n in grids[0])

        if self.positional_grid:
            coords = positional_grid(grids[0])[None].astype(x.dtype)
            x = jnp.concatenate([x, jnp.zeros_like(x[..., :1]) + coords], axis=-1)
        v = nn.Dense(widths[0])(x)
        v = gelu(FourierLayer(widths[0], level_modes[0])(v))
        skips = [v]
        for level in range(1, len(widths)):
            v = gelu(FourierLayer(widths[level], level_modes[level])(v, grids[level]))
            skips.append(v)
        v = gelu(FourierLayer(widths[-1], level_modes[-1])(v))
        for level in reversed(range(len(widths) - 1)):
            v = gelu(FourierLayer(widths[level], level_modes[level])(v, grids[level]))
            v = jnp.concatenate([v, skips[level]], axis=-1)
        v = gelu(FourierLayer(widths[0], level_modes[0])(v, out_grid))
        return MLP((self.projection_width, self.out_channels))(v)
