"""Tensorised FNO: Fourier layers whose complex weights are a CP (canonical polyadic) factorisation."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.nn import spectral_apply, take_corners
from sciml.operators.fno import FNO


def cp_rank(rank: float | int, modes: Sequence[int], c_in: int, c_out: int) -> int:
    """CP rank R: `rank` itself if an int, else the fraction `rank` of the dense weight's size.

    The dense complex weight has ``N = 2^(d-1) prod(modes) c_in c_out`` entries; its CP factors
    ``sum(n_i) + c_in + c_out`` per rank, so a fraction f gives
    ``R = max(1, round(f N / (sum(n_i) + c_in + c_out)))``, n_i = 2 m_i except n_d = m_d.
    """
    if isinstance(rank, int) and not isinstance(rank, bool):
        if rank < 1:
            raise ValueError(f"CP rank must be >= 1, got {rank}")
        return rank
    if not 0 < rank <= 1:
        raise ValueError(f"rank as a fraction of the dense weight must lie in (0, 1], got {rank}")
    sizes = [2 * m for m in modes[:-1]] + [modes[-1]]
    dense = int(np.prod(sizes)) * c_in * c_out
    return max(1, round(rank * dense / (sum(sizes) + c_in + c_out)))


class FactorizedSpectralConv(nn.Module):
    """`SpectralConv` whose complex weight tensor is a CP (canonical polyadic) factorisation.

    ``R[k, i, o] = sum_r U_1[k_1, r] ... U_d[k_d, r] A[i, r] B[o, r]``, all factors complex (stored
    as real pairs). The mode factors U_j have 2 m_j rows [positive | negative] on non-last axes and
    m_d rows on the rfft axis; grids too coarse for `modes` use the leading rows, like
    `SpectralConv`. One einsum contracts the spectrum with the factors in the order opt_einsum finds
    cheapest: through the rank axis, O(R (c_in + c_out)) per kept mode and sample, or by first
    rebuilding the dense weight when the batch is large. Layout as `SpectralConv`
    (channels-last, or channels-first with `channels_first`).
    Parameters: ``2 R (sum_j n_j + c_in + c_out)``, n_j = 2 m_j for j < d and n_d = m_d, with
    R = `cp_rank(rank, modes, c_in, c_out)`.
    """

    out_channels: int
    modes: Sequence[int]
    rank: float | int = 0.05
    channels_first: bool = False

    @nn.compact
    def __call__(self, v: Float[Array, "b ..."]) -> Float[Array, "b ..."]:
        ndim = v.ndim - 2
        if len(self.modes) != ndim:
            raise ValueError(
                f"modes {tuple(self.modes)} given for a {ndim}-D input of shape {v.shape}"
            )
        c_in, c_out = v.shape[1 if self.channels_first else -1], self.out_channels
        r = cp_rank(self.rank, self.modes, c_in, c_out)
        sizes = [2 * m for m in self.modes[:-1]] + [self.modes[-1]]
        # Match the dense layer's initial weight scale: with independent complex factors of
        # variance s^2, each reconstructed entry has variance R s^(2 (d + 2)).
        dense_scale = 1.0 / (c_in * c_out)
        s = (dense_scale**2 / r) ** (1.0 / (2 * (ndim + 2)))
        init = nn.initializers.normal(s / np.sqrt(2.0))

        def factor(name: str, rows: int) -> Array:
            p = self.param(name, init, (rows, r, 2))
            return jax.lax.complex(p[..., 0], p[..., 1])

        mode_factors = [factor(f"modes_{j}", n) for j, n in enumerate(sizes)]
        a_in, b_out = factor("in", c_in), factor("out", c_out)

        def contract(block: Array, kept: tuple[int, ...]) -> Array:
            us = [take_corners(mode_factors[i], 0, kept[i], sizes[i]) for i in range(ndim - 1)]
            us.append(mode_factors[-1][: kept[-1]])
            letters = "xyz"[:ndim]
            operands = ",".join(f"{x}r" for x in letters)
            return jnp.einsum(
                f"bi{letters},ir,{operands},or->bo{letters}",
                block,
                a_in,
                *us,
                b_out,
                optimize="optimal",
            )

        return spectral_apply(v, contract, self.modes, None, self.channels_first)


class TFNO(FNO):
    """Tensorised FNO: `FNO` with CP-factorised spectral weights (`FactorizedSpectralConv`).

    Same lifting, Fourier layers ``v <- gelu(W v + b + K(v))`` (no activation after the last),
    projection MLP and positional grid as `FNO`; 1D, 2D and 3D. `rank` is the CP rank (an int)
    or the fraction of the dense spectral weight's entries that the factors may hold (a float in
    (0, 1]; neuraloperator's convention), see `cp_rank`.

    Parameter count, with c = in_c + d * positional_grid, w = width, p = projection_width,
    o = out_channels, n_j = 2 m_j for j < d and n_d = m_d, R = cp_rank(rank, modes, w, w):
        (c + 1) w + n_layers (2 R (sum_j n_j + 2 w) + w^2 + w) + (w + 1) p + (p + 1) o.
    FNO's spectral term is 2^d prod(m) w^2; at width 32, modes 16 in 2D and rank 0.05 a layer has
    ~52k instead of ~1M spectral parameters.
    """

    rank: float | int = 0.05

    def integral_operator(self, modes: tuple[int, ...], channels_first: bool) -> nn.Module:
        return FactorizedSpectralConv(self.width, modes, self.rank, channels_first=channels_first)
