"""Generic flax.linen layers shared by the domains: spectral convolution, MLPs and the blocks of
diffusion backbones (ResBlocks, time / parameter embeddings, transformer blocks)."""

import functools
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def gelu(x: Array) -> Array:
    """Tanh-approximated GELU: exact GELU lowers to a slow erfc on CPU and differs by < 1e-3."""
    return jax.nn.gelu(x, approximate=True)


# (spectral block (b, c_in, *kept), kept modes per axis) -> (b, c_out, *kept)
Contraction = Callable[[Array, tuple[int, ...]], Array]


def kept_modes(
    modes: Sequence[int], in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[int, ...]:
    """Modes per sign that both grids can hold: n // 2 on full axes, n // 2 + 1 on the rfft axis."""
    last = len(modes) - 1
    return tuple(
        min(m, n_in // 2 + (i == last), n_out // 2 + (i == last))
        for i, (m, n_in, n_out) in enumerate(zip(modes, in_shape, out_shape, strict=True))
    )


def take_corners(a: Array, axis: int, k: int, n: int) -> Array:
    """Rows 0..k-1 and n-k..n-1 of `a` along `axis`, as one block [positive | negative]."""
    pos = jax.lax.slice_in_dim(a, 0, k, axis=axis)
    neg = jax.lax.slice_in_dim(a, n - k, n, axis=axis)
    return jnp.concatenate([pos, neg], axis=axis)


def spectral_apply(
    v: Float[Array, "..."],
    contract: Contraction,
    modes: Sequence[int],
    out_shape: tuple[int, ...] | None = None,
    channels_first: bool = False,
) -> Float[Array, "..."]:
    """``IFFT_out( contract( FFT(v)[kept modes] ) )``: a Fourier layer onto a grid of `out_shape`.

    Coefficients use the ``norm="forward"`` convention (the forward transform divides by the number
    of points), so a band-limited function gives the same coefficients on every grid and the output
    is the same function whatever the input and output resolutions: kept modes are truncated to
    what both grids hold, the rest of the output spectrum is zero (spectral zero-padding).

    Args:
        v: (b, *spatial, c_in), or (b, c_in, *spatial) with `channels_first`.
        contract: maps the kept spectral block (b, c_in, *kept) to (b, c_out, *kept); the non-last
            axes hold [modes 0..k-1 | modes -k..-1], the last axis modes 0..k-1.
        modes: modes per sign per axis (the rfft axis keeps modes 0..m-1).
        out_shape: output grid; the input's grid when None.
        channels_first: the layout of `v` and of the result.
    Returns:
        (b, *out_shape, c_out), or (b, c_out, *out_shape) with `channels_first`.
    """
    if not channels_first:
        # Channels-first so the FFTs run over contiguous trailing axes (much faster on CPU).
        out = spectral_apply(jnp.moveaxis(v, -1, 1), contract, modes, out_shape, True)
        return jnp.moveaxis(out, 1, -1)
    ndim = v.ndim - 2
    in_shape = v.shape[2:]
    out_shape = in_shape if out_shape is None else tuple(out_shape)
    kept = kept_modes(modes, in_shape, out_shape)
    axes = tuple(range(2, 2 + ndim))
    spec = jnp.fft.rfftn(v, axes=axes, norm="forward")
    for i in range(ndim - 1):
        spec = take_corners(spec, 2 + i, kept[i], in_shape[i])
    out = contract(spec[..., : kept[-1]], kept)
    for i in range(ndim - 1):
        # Zeros between the corners via pad: keeps the batch sharding of `out` (jnp.zeros would not).
        pos = jax.lax.slice_in_dim(out, 0, kept[i], axis=2 + i)
        neg = jax.lax.slice_in_dim(out, kept[i], 2 * kept[i], axis=2 + i)
        widths = [(0, 0)] * out.ndim
        widths[2 + i] = (0, out_shape[i] - 2 * kept[i])
        out = jnp.concatenate([jnp.pad(pos, widths), neg], axis=2 + i)
    out = jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, out_shape[-1] // 2 + 1 - kept[-1])])
    return jnp.fft.irfftn(out, s=out_shape, axes=axes, norm="forward").astype(v.dtype)


def _dft_matrices(n: int, kept: int, last: bool, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Truncated DFT of one axis in real block form: (forward, inverse) for the kept modes.

    Non-last axes keep modes [0..m-1 | -m..-1] (K = 2m) and map complex to complex, written as
    real 2x2 blocks over (re, im): forward (n, 2, K, 2), inverse (K, 2, n, 2). The last axis keeps
    modes 0..m-1 (K = m) of a real signal: forward (n, 2, K) gives (re, im) of the rfft; inverse
    (K, 2, n) is irfft's real part, doubling every mode but DC and Nyquist (whose imaginary parts
    it ignores, as irfft does).
    """
    k = np.arange(kept) if last else np.concatenate([np.arange(kept), np.arange(n - kept, n)])
    phase = 2j * np.pi * np.outer(np.arange(n), k) / n
    fwd, inv = np.exp(-phase), np.exp(phase).T / n
    if last:
        inv = inv * np.where((k == 0) | (2 * k == n), 1.0, 2.0)[:, None]
        forward = np.stack([fwd.real, fwd.imag], axis=1)
        inverse = np.stack([inv.real, -inv.imag], axis=1)
    else:
        forward, inverse = _complex_blocks(fwd), _complex_blocks(inv)
    return forward.astype(dtype), inverse.astype(dtype)


def _complex_blocks(m: np.ndarray) -> np.ndarray:
    """Complex (p, q) matrix as real (p, 2, q, 2): out[q, s] = sum_{p, r} in[p, r] blocks[p, r, q, s]."""
    blocks = np.empty((m.shape[0], 2, m.shape[1], 2))
    blocks[:, 0, :, 0], blocks[:, 1, :, 1] = m.real, m.real
    blocks[:, 0, :, 1], blocks[:, 1, :, 0] = m.imag, -m.imag
    return blocks


class SpectralConv(nn.Module):
    """Fourier-space convolution ``v -> IFFT(R . FFT(v)[kept modes])``.

    Input (batch, *spatial, c_in) -> output (batch, *spatial, out_channels), or (batch, c_in,
    *spatial) -> (batch, out_channels, *spatial) with `channels_first` (the layout FNO keeps
    inside its Fourier layers: every transform then runs over contiguous axes). `R` holds complex
    weights of shape (2m_1, ..., 2m_{d-1}, m_d, c_in, c_out): both signs of every non-last axis and
    the non-negative half of the last (rfftn) axis. Parameters: 2 * 2^(d-1) * prod(m) * c_in * c_out.

    `implementation` picks how the kept modes are computed; both give the same function to
    round-off. "fft": rfftn / irfftn of the whole grid. "dft": only the kept modes, as dense
    real matrix products per axis (O(n m) per axis instead of O(n log n), but on GEMM units):
    2-3x faster on CPU for the usual m << n. "auto" takes "dft" on CPU and "fft" elsewhere (where
    FFT libraries are fast and float32 matmuls may run in reduced precision).
    """

    out_channels: int
    modes: Sequence[int]
    implementation: str = "auto"
    channels_first: bool = False

    @nn.compact
    def __call__(self, v: Float[Array, "b ..."]) -> Float[Array, "b ..."]:
        ndim = v.ndim - 2
        if len(self.modes) != ndim:
            raise ValueError(
                f"modes {tuple(self.modes)} given for a {ndim}-D input of shape {v.shape}"
            )
        if self.implementation not in ("auto", "fft", "dft"):
            raise ValueError(
                f"SpectralConv.implementation must be auto, fft or dft; got {self.implementation!r}"
            )
        if not self.channels_first:
            v = jnp.moveaxis(v, -1, 1)
        c_in = v.shape[1]
        wshape = (*[2 * m for m in self.modes[:-1]], self.modes[-1], c_in, self.out_channels)
        scale = 1.0 / (c_in * self.out_channels)
        w_re = self.param("weight_real", nn.initializers.uniform(scale), wshape)
        w_im = self.param("weight_imag", nn.initializers.uniform(scale), wshape)

        spatial = v.shape[2:]
        kept = kept_modes(self.modes, spatial, spatial)
        for i in range(ndim - 1):
            w_re = take_corners(w_re, i, kept[i], 2 * self.modes[i])
            w_im = take_corners(w_im, i, kept[i], 2 * self.modes[i])
        w_re, w_im = w_re[..., : kept[-1], :, :], w_im[..., : kept[-1], :, :]
        implementation = self.implementation
        if implementation == "auto":
            implementation = "dft" if jax.default_backend() == "cpu" else "fft"
        if implementation == "dft":
            out = _spectral_conv_dft(v, w_re, w_im, kept)
        else:
            weight = jax.lax.complex(w_re, w_im)
            # Written out per dimension: einsum's "..." cannot sit between named axes on both
            # operands.
            letters = "xyz"[:ndim]
            contract = functools.partial(jnp.einsum, f"bi{letters},{letters}io->bo{letters}")
            out = spectral_apply(
                v, lambda block, _: contract(block, weight), self.modes, None, True
            )
        return out if self.channels_first else jnp.moveaxis(out, 1, -1)


def _spectral_conv_dft(
    v: Float[Array, "b ci *spatial"], w_re: Array, w_im: Array, kept: tuple[int, ...]
) -> Float[Array, "b co *spatial"]:
    """SpectralConv of a channels-first `v` through truncated DFTs in real arithmetic.

    The last axis goes real -> complex first, then every other axis complex -> complex, last to
    first; the inverse runs first to last. Complex intermediates carry a (re, im) axis `r`/`s`
    placed just after the axis contracted next, so every contraction is over adjacent axes and
    only the small spectral blocks are ever transposed. Weights are cut to the `kept` modes.
    """
    ndim = v.ndim - 2
    spatial = v.shape[2:]
    dtype = np.dtype(v.dtype)
    mats = [
        _dft_matrices(n, k, i == ndim - 1, dtype)
        for i, (n, k) in enumerate(zip(spatial, kept, strict=True))
    ]
    space, modes = "xyz"[:ndim], "XYZ"[:ndim]
    ein = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
    last = ndim - 1

    z = ein(
        f"bc{space},{space[last]}r{modes[last]}->bc{space[:last]}r{modes[last]}", v, mats[last][0]
    )
    for i in reversed(range(last)):
        before, after = f"{space[: i + 1]}r{modes[i + 1 :]}", f"{space[:i]}s{modes[i:]}"
        z = ein(f"bc{before},{space[i]}r{modes[i]}s->bc{after}", z, mats[i][0])
    # Per-mode complex channel mixing, (re, im) pairs as one real contraction over (c_in, re/im).
    weight = jnp.stack(
        [jnp.stack([w_re, w_im], axis=-1), jnp.stack([-w_im, w_re], axis=-1)], axis=-3
    )
    z = ein(f"bcr{modes},{modes}cros->bos{modes}", z, weight.astype(v.dtype))
    for i in range(last):
        before, after = f"{space[:i]}s{modes[i:]}", f"{space[: i + 1]}r{modes[i + 1 :]}"
        z = ein(f"bo{before},{modes[i]}s{space[i]}r->bo{after}", z, mats[i][1])
    return ein(
        f"bo{space[:last]}r{modes[last]},{modes[last]}r{space[last]}->bo{space}", z, mats[last][1]
    )


class ChannelsFirstDense(nn.Module):
    """`nn.Dense` over axis 1: (b, c, *spatial) -> (b, features, *spatial).

    Same parameters as `nn.Dense` ("kernel" (c, features), "bias" (features,), same initialisers),
    so a model can switch layout and keep its checkpoints. Computed as one matrix product per
    sample with the kernel on the left, which needs no transpose of the (large) input.
    """

    features: int

    @nn.compact
    def __call__(self, x: Float[Array, "b c *spatial"]) -> Float[Array, "b f *spatial"]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        flat = x.reshape(*x.shape[:2], -1)
        # The kernel broadcast from the input so that it carries the batch sharding of x.
        kernel = jnp.zeros_like(flat[:, :1, :1]) + kernel.T.astype(x.dtype)[None]
        y = jax.lax.dot_general(kernel, flat, (((2,), (1,)), ((0,), (0,))))
        y = y + bias.astype(x.dtype)[None, :, None]
        return y.reshape(x.shape[0], self.features, *x.shape[2:])


class MLP(nn.Module):
    """Pointwise multilayer perceptron: Dense -> act -> ... -> Dense over the channel axis (the
    last, or axis 1 with `channels_first`; the parameters are the same either way)."""

    features: Sequence[int]
    activation: Callable[[Array], Array] = gelu
    channels_first: bool = False

    @nn.compact
    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        dense = ChannelsFirstDense if self.channels_first else nn.Dense
        for i, width in enumerate(self.features):
            x = dense(width, name=f"Dense_{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x


# Diffusion backbones' building blocks (ADM / U-ViT style), shared by FLEX and its baselines.

_CONV_PADDING = {"zeros": "SAME", "circular": "CIRCULAR"}


def conv(
    features: int, ndim: int, padding: str = "zeros", kernel: int = 3, zero: bool = False
) -> nn.Conv:
    """A `kernel`^ndim convolution; zero-initialised when `zero` (its block starts as identity)."""
    if padding not in _CONV_PADDING:
        raise ValueError(f"padding must be one of {sorted(_CONV_PADDING)}, got {padding!r}")
    init = {"kernel_init": nn.initializers.zeros_init()} if zero else {}
    return nn.Conv(features, (kernel,) * ndim, padding=_CONV_PADDING[padding], **init)


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with gcd(groups, channels) groups, so that narrow test models stay valid."""
    return nn.GroupNorm(num_groups=math.gcd(groups, channels))


def resample_dyadic(x: Float[Array, "b *spatial c"], mode: str) -> Float[Array, "b *out c"]:
    """Halve ("down": 2^d average pooling) or double ("up": nearest) every spatial axis."""
    ndim = x.ndim - 2
    if mode == "down":
        return nn.avg_pool(x, (2,) * ndim, strides=(2,) * ndim)
    if mode == "up":
        for axis in range(1, ndim + 1):
            x = jnp.repeat(x, 2, axis=axis)
        return x
    if mode == "none":
        return x
    raise ValueError(f"resample must be 'none', 'down' or 'up', got {mode!r}")


def _per_sample(v: Float[Array, "b c"], ndim: int) -> Float[Array, "b *ones c"]:
    """(b, c) -> (b, 1, ..., 1, c) for broadcasting over `ndim` spatial axes."""
    return jnp.expand_dims(v, tuple(range(1, ndim + 1)))


class ResBlock(nn.Module):
    """Residual block with adaptive GroupNorm (Dhariwal & Nichol 2021, "scale-shift norm").

    ``h = conv(SiLU(GN(x)))``, then ``h = GN(h) (1 + s) + b`` with ``(s, b) = Dense(SiLU(emb))``,
    then ``x' + zero_conv(SiLU(h))``. ``resample`` "down" / "up" halves / doubles the grid of
    both branches between the first norm and the first conv; the skip branch ``x'`` is a
    `skip_kernel`^d conv when the channel count changes, else the identity. The last conv is
    zero-initialised, so the block starts as (a projection of) the identity. Without `emb` the
    modulation is left out.

    Input (batch, *spatial, c_in) [+ emb (batch, e)] -> (batch, *spatial', features), 1-3 axes.
    """

    features: int
    resample: str = "none"
    groups: int = 32
    padding: str = "zeros"
    skip_kernel: int = 1

    @nn.compact
    def __call__(
        self, x: Float[Array, "b *spatial ci"], emb: Float[Array, "b e"] | None = None
    ) -> Float[Array, "b *out co"]:
        ndim = x.ndim - 2
        h = nn.silu(group_norm(x.shape[-1], self.groups)(x))
        h, x = resample_dyadic(h, self.resample), resample_dyadic(x, self.resample)
        h = conv(self.features, ndim, self.padding)(h)
        h = group_norm(self.features, self.groups)(h)
        if emb is not None:
            scale, shift = jnp.split(nn.Dense(2 * self.features)(nn.silu(emb)), 2, axis=-1)
            h = h * (1 + _per_sample(scale, ndim)) + _per_sample(shift, ndim)
        h = conv(self.features, ndim, self.padding, zero=True)(nn.silu(h))
        if x.shape[-1] != self.features:
            x = conv(self.features, ndim, self.padding, kernel=self.skip_kernel)(x)
        return x + h


class FourierTimeEmbedding(nn.Module):
    """Random Fourier features of the diffusion time followed by an MLP.

    ``phi(t) = sqrt(2) cos(2 pi (f t + p))`` with `n_fourier` fixed frequencies
    ``f ~ N(0, scale^2)`` and phases ``p ~ U(0, 1)`` drawn from `seed` (constants of the
    architecture, not parameters: the same in every checkpoint and untouched by weight decay),
    then ``Dense(2 features) -> SiLU -> Dense(features)``.

    Input t (batch,) -> (batch, features).
    """

    features: int
    n_fourier: int | None = None
    scale: float = 1.0
    seed: int = 0

    @nn.compact
    def __call__(self, t: Float[Array, " b"]) -> Float[Array, "b f"]:
        rng = np.random.default_rng(self.seed)
        n = self.n_fourier or self.features
        freqs = (self.scale * rng.normal(size=(1, n))).astype(t.dtype)
        phases = rng.uniform(size=(1, n)).astype(t.dtype)
        phi = np.sqrt(2.0) * jnp.cos(2 * np.pi * (t[:, None] * freqs + phases))
        return MLP((2 * self.features, self.features), activation=nn.silu)(phi)


class ParameterEmbedding(nn.Module):
    """Embedding of physical parameters (e.g. Re / 40000): ``Dense -> SiLU -> Dense``.

    Input (batch, p) -> (batch, features); `hidden` defaults to 2 * features.
    """

    features: int
    hidden: int | None = None

    @nn.compact
    def __call__(self, p: Float[Array, "b p"]) -> Float[Array, "b f"]:
        hidden = self.hidden or 2 * self.features
        return MLP((hidden, self.features), activation=nn.silu)(p)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block: ``x + MHSA(LN(x))``, then ``x + MLP(LN(x))`` (GELU, D -> r D -> D).

    Input (batch, tokens, d) -> (batch, tokens, d); d must be divisible by `num_heads`.
    """

    num_heads: int
    mlp_ratio: float = 2.0

    @nn.compact
    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        d = x.shape[-1]
        if d % self.num_heads:
            raise ValueError(f"token width {d} is not divisible by num_heads={self.num_heads}")
        h = nn.LayerNorm(epsilon=1e-6)(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h)
        h = nn.LayerNorm(epsilon=1e-6)(x)
        return x + MLP((int(d * self.mlp_ratio), d))(h)
