"""FLEX (Erichson et al. 2025): a hybrid U-Net / U-ViT backbone for residual diffusion; baselines.

FLEX = a conv encoder (4 levels of `ResBlock`s, each ending in a downsampling block) whose coarsest
map becomes the tokens (patch size 1) of a U-ViT bottleneck, and a decoder mirroring the encoder.
A task-specific conv encoder reads the conditioning field (the upsampled coarse field for
super-resolution, the past snapshots for forecasting) and conditions the shared network:

- weak: its features after every encoder module are added to the shared encoder's features;
- strong (default): in addition, every decoder skip receives the task skip, and the task encoder's
  coarsest map is added to the transformer's output.

`DiffusionUNet` (conditioning field concatenated to the input, ResBlocks only) and `UViT` (patch
tokens, the same transformer bottleneck) are baselines built from the same blocks. All three take
``__call__(x_t, t, cond)`` with x_t (batch, *spatial, c), t (batch,) and
``cond = {"field": (batch, *spatial', c_cond), "params": (batch, p)}`` (either key optional, or
None), so ``model.apply`` is an ``apply_fn(params, x_t, t, cond)`` for `sciml.diffusion`'s losses
and samplers. A field on another grid than x_t is resized bicubically onto it first.
"""

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sciml.nn import (
    FourierTimeEmbedding,
    ParameterEmbedding,
    ResBlock,
    TransformerBlock,
    conv,
    group_norm,
)

# channels / ResBlocks per level / transformer depth / heads; the token width is channels[-1].
FLEX_PRESETS: dict[str, dict[str, tuple[int, ...] | int]] = {
    "small": {"channels": (64, 128, 128, 256), "blocks": (2, 3, 3, 3), "depth": 13, "heads": 4},
    "medium": {"channels": (64, 128, 256, 512), "blocks": (2, 3, 3, 4), "depth": 13, "heads": 8},
    "big": {"channels": (128, 256, 512, 1152), "blocks": (2, 3, 3, 3), "depth": 21, "heads": 16},
}

Cond = Mapping[str, Array] | None


def _split_cond(
    cond: Cond, x_t: Array
) -> tuple[Float[Array, "b *spatial c"] | None, Float[Array, "b p"] | None]:
    """(field on x_t's grid or None, params or None) from ``{"field": ..., "params": ...}``."""
    if cond is None:
        return None, None
    if not isinstance(cond, Mapping) or set(cond) - {"field", "params"}:
        keys = sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__
        raise ValueError(
            f"cond must be None or a dict with keys 'field' and/or 'params'; got {keys}"
        )
    field, params = cond.get("field"), cond.get("params")
    if field is not None:
        if field.ndim != x_t.ndim:
            raise ValueError(f"cond['field'] {field.shape} and x_t {x_t.shape} differ in rank")
        if field.shape[1:-1] != x_t.shape[1:-1]:
            shape = (field.shape[0], *x_t.shape[1:-1], field.shape[-1])
            field = jax.image.resize(field, shape, "bicubic")
    if params is not None and params.ndim != 2:
        raise ValueError(f"cond['params'] must be (batch, n_params), got shape {params.shape}")
    return field, params


def _check_grid(x: Array, levels: int, name: str) -> None:
    if x.ndim not in (3, 4, 5) or any(n % 2**levels for n in x.shape[1:-1]):
        raise ValueError(
            f"{name} with {levels} levels expects (batch, *spatial, channels) with 1-3 spatial"
            f" axes divisible by {2**levels}; got {x.shape}"
        )


class Embedding(nn.Module):
    """``FourierTimeEmbedding(t) + ParameterEmbedding(params)`` (the latter only when given)."""

    features: int
    time_scale: float = 1.0

    @nn.compact
    def __call__(
        self, t: Float[Array, " b"], params: Float[Array, "b p"] | None = None
    ) -> Float[Array, "b e"]:
        emb = FourierTimeEmbedding(self.features, scale=self.time_scale)(t)
        if params is not None:
            emb = emb + ParameterEmbedding(self.features)(params)
        return emb


class ConvEncoder(nn.Module):
    """Stem conv, then per level `blocks[l]` ResBlocks of width `channels[l]` and a downsampler.

    Returns the output of every module (stem, blocks, downsamplers): 1 + sum(blocks) + len(blocks)
    maps, the last on the grid N / 2^len(channels). `added`, a list of maps of the same shapes
    (another encoder's output), is added to each output as it is produced (weak conditioning).
    """

    channels: tuple[int, ...]
    blocks: tuple[int, ...]
    groups: int = 32
    padding: str = "zeros"
    skip_kernel: int = 3

    @nn.compact
    def __call__(
        self,
        x: Float[Array, "b *spatial c"],
        emb: Float[Array, "b e"] | None = None,
        added: Sequence[Array] | None = None,
    ) -> list[Array]:
        kw = {"groups": self.groups, "padding": self.padding, "skip_kernel": self.skip_kernel}
        outputs: list[Array] = []

        def keep(v: Array) -> Array:
            if added is not None:
                v = v + added[len(outputs)]
            outputs.append(v)
            return v

        v = keep(conv(self.channels[0], x.ndim - 2, self.padding)(x))
        for width, n_blocks in zip(self.channels, self.blocks, strict=True):
            for _ in range(n_blocks):
                v = keep(ResBlock(width, **kw)(v, emb))
            v = keep(ResBlock(width, resample="down", **kw)(v, emb))
        return outputs


class ConvDecoder(nn.Module):
    """Mirror of `ConvEncoder`, its outputs as concatenated skips; ends GN -> SiLU -> zero conv.

    An upsampling block on the coarsest grid, then per level (coarse to fine) `blocks[l] + 1`
    ResBlocks, each on ``concat(v, skip)``, and an upsampling block between levels.
    """

    channels: tuple[int, ...]
    blocks: tuple[int, ...]
    out_channels: int
    groups: int = 32
    padding: str = "zeros"
    skip_kernel: int = 3

    @nn.compact
    def __call__(
        self, v: Float[Array, "b *coarse c"], skips: Sequence[Array], emb: Float[Array, "b e"]
    ) -> Array:
        kw = {"groups": self.groups, "padding": self.padding, "skip_kernel": self.skip_kernel}
        skips = list(skips)
        cat = lambda v: jnp.concatenate([v, skips.pop()], axis=-1)  # noqa: E731
        v = ResBlock(self.channels[-1], resample="up", **kw)(cat(v), emb)
        for level in reversed(range(len(self.channels))):
            for _ in range(self.blocks[level] + 1):
                v = ResBlock(self.channels[level], **kw)(cat(v), emb)
            if level:
                v = ResBlock(self.channels[level], resample="up", **kw)(v, emb)
        v = nn.silu(group_norm(v.shape[-1], self.groups)(v))
        return conv(self.out_channels, v.ndim - 2, self.padding, zero=True)(v)


class ViTBottleneck(nn.Module):
    """U-ViT transformer (Bao et al. 2023) over tokens plus one conditioning token.

    ``[cond; tokens] + learned positions`` -> depth // 2 blocks whose outputs are kept -> one
    middle block (odd depth) -> depth // 2 blocks, each after a long skip
    ``Dense(concat(x, skip))`` (2D -> D) -> LayerNorm; the conditioning token is dropped from the
    output. The positions fix the number of tokens at initialisation.

    Input tokens (batch, n, d), cond (batch, d) -> (batch, n, d).
    """

    depth: int
    heads: int
    mlp_ratio: float = 2.0

    @nn.compact
    def __call__(
        self, tokens: Float[Array, "b n d"], cond: Float[Array, "b d"]
    ) -> Float[Array, "b n d"]:
        x = jnp.concatenate([cond[:, None, :], tokens], axis=1)
        pos = self.param(
            "positions", nn.initializers.truncated_normal(0.02), (1, *x.shape[1:]), x.dtype
        )
        x = x + pos
        skips = []
        for _ in range(self.depth // 2):
            x = TransformerBlock(self.heads, self.mlp_ratio)(x)
            skips.append(x)
        if self.depth % 2:
            x = TransformerBlock(self.heads, self.mlp_ratio)(x)
        for _ in range(self.depth // 2):
            x = nn.Dense(x.shape[-1])(jnp.concatenate([x, skips.pop()], axis=-1))
            x = TransformerBlock(self.heads, self.mlp_ratio)(x)
        return nn.LayerNorm(epsilon=1e-6)(x)[:, 1:]


class FLEX(nn.Module):
    """FLEX backbone: conv encoder, U-ViT bottleneck (patch size 1), conv decoder, task encoder.

    The embedding ``FourierTimeEmbedding(t) + ParameterEmbedding(params)`` (width channels[-1])
    modulates every shared ResBlock and is the transformer's conditioning token; the task encoder
    (input ``cond["field"]``) has no time and no transformer, and its ResBlocks are modulated by
    its own embedding of ``cond["params"]`` (none without params). Without a field the task encoder
    is left out.

    Attributes:
        out_channels: channels of the prediction (e.g. v for the residual).
        size: preset "small", "medium" or "big" (`FLEX_PRESETS`); `channels`, `blocks`, `depth`,
            `heads` override it one by one.
        mlp_ratio: transformer MLP width / token width.
        conditioning: "strong" (weak + task skips into the decoder + task bottleneck added to the
            transformer output) or "weak" (task features added to the shared encoder only).
        groups: GroupNorm groups (gcd with each width).
        padding: "zeros" (FLEX trains on non-periodic crops) or "circular".
        skip_kernel: kernel of a ResBlock's skip conv when its width changes (3 as in FLEX).
        time_scale: standard deviation of the Fourier frequencies of t in [0, 1].

    Input x_t (batch, *spatial, c), t (batch,), cond -> (batch, *spatial, out_channels); spatial
    sizes divisible by 2^len(channels) and fixed at initialisation (learned token positions).
    """

    out_channels: int = 1
    size: str = "small"
    channels: tuple[int, ...] | None = None
    blocks: tuple[int, ...] | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float = 2.0
    conditioning: str = "strong"
    groups: int = 32
    padding: str = "zeros"
    skip_kernel: int = 3
    time_scale: float = 1.0

    def architecture(self) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
        """(channels, blocks, depth, heads): the preset with the given overrides."""
        if self.size not in FLEX_PRESETS:
            raise ValueError(f"FLEX size must be one of {sorted(FLEX_PRESETS)}, got {self.size!r}")
        preset = FLEX_PRESETS[self.size]
        channels = tuple(self.channels or preset["channels"])
        blocks = tuple(self.blocks or preset["blocks"])
        depth = self.depth if self.depth is not None else preset["depth"]
        heads = self.heads if self.heads is not None else preset["heads"]
        if len(channels) != len(blocks):
            raise ValueError(f"FLEX channels {channels} and blocks {blocks} differ in length")
        return channels, blocks, depth, heads

    @nn.compact
    def __call__(
        self, x_t: Float[Array, "b *spatial c"], t: Float[Array, " b"], cond: Cond = None
    ) -> Float[Array, "b *spatial o"]:
        if self.conditioning not in ("strong", "weak"):
            raise ValueError(f"conditioning must be 'strong' or 'weak', got {self.conditioning!r}")
        channels, blocks, depth, heads = self.architecture()
        _check_grid(x_t, len(channels), "FLEX")
        field, params = _split_cond(cond, x_t)
        width = channels[-1]
        kw = {"groups": self.groups, "padding": self.padding, "skip_kernel": self.skip_kernel}

        emb = Embedding(width, self.time_scale)(t, params)
        task = None
        if field is not None:
            task_emb = None if params is None else ParameterEmbedding(width)(params)
            task = ConvEncoder(channels, blocks, name="task_encoder", **kw)(field, task_emb)
        skips = ConvEncoder(channels, blocks, name="encoder", **kw)(x_t, emb, task)

        coarse = skips[-1]
        tokens = coarse.reshape(coarse.shape[0], -1, width)
        v = ViTBottleneck(depth, heads, self.mlp_ratio)(tokens, emb).reshape(coarse.shape)
        if task is not None and self.conditioning == "strong":
            v = v + task[-1]
            skips = [s + c for s, c in zip(skips, task, strict=True)]
        decoder = ConvDecoder(channels, blocks, self.out_channels, name="decoder", **kw)
        return decoder(v, skips, emb)


class DiffusionUNet(nn.Module):
    """ADM-style conditional U-Net baseline from FLEX's blocks, without a transformer.

    ``concat(x_t, cond["field"])`` -> `ConvEncoder` -> `n_mid` ResBlocks on the coarsest grid ->
    `ConvDecoder`; every ResBlock is modulated by ``FourierTimeEmbedding(t) +
    ParameterEmbedding(params)`` of width channels[-1]. Defaults: FLEX-small's conv widths.

    Input x_t (batch, *spatial, c), t (batch,), cond -> (batch, *spatial, out_channels).
    """

    out_channels: int = 1
    channels: tuple[int, ...] = (64, 128, 128, 256)
    blocks: tuple[int, ...] = (2, 3, 3, 3)
    n_mid: int = 2
    groups: int = 32
    padding: str = "zeros"
    skip_kernel: int = 3
    time_scale: float = 1.0

    @nn.compact
    def __call__(
        self, x_t: Float[Array, "b *spatial c"], t: Float[Array, " b"], cond: Cond = None
    ) -> Float[Array, "b *spatial o"]:
        channels, blocks = tuple(self.channels), tuple(self.blocks)
        _check_grid(x_t, len(channels), "DiffusionUNet")
        field, params = _split_cond(cond, x_t)
        kw = {"groups": self.groups, "padding": self.padding, "skip_kernel": self.skip_kernel}
        emb = Embedding(channels[-1], self.time_scale)(t, params)
        x = x_t if field is None else jnp.concatenate([x_t, field], axis=-1)
        skips = ConvEncoder(channels, blocks, **kw)(x, emb)
        v = skips[-1]
        for _ in range(self.n_mid):
            v = ResBlock(channels[-1], **kw)(v, emb)
        return ConvDecoder(channels, blocks, self.out_channels, **kw)(v, skips, emb)


class UViT(nn.Module):
    """U-ViT baseline (Bao et al. 2023) with FLEX's transformer bottleneck on image patches.

    ``concat(x_t, cond["field"])`` -> patches of `patch_size`^d as tokens of width `dim` (a strided
    conv) -> `ViTBottleneck` with the conditioning token ``FourierTimeEmbedding(t) +
    ParameterEmbedding(params)`` -> a transposed strided conv back to pixels -> a zero-initialised
    3^d conv (U-ViT's output conv).

    Input x_t (batch, *spatial, c), t (batch,), cond -> (batch, *spatial, out_channels); spatial
    sizes divisible by `patch_size` and fixed at initialisation.
    """

    out_channels: int = 1
    patch_size: int = 4
    dim: int = 256
    depth: int = 13
    heads: int = 4
    mlp_ratio: float = 2.0
    padding: str = "zeros"
    time_scale: float = 1.0

    @nn.compact
    def __call__(
        self, x_t: Float[Array, "b *spatial c"], t: Float[Array, " b"], cond: Cond = None
    ) -> Float[Array, "b *spatial o"]:
        ndim, p = x_t.ndim - 2, self.patch_size
        if any(n % p for n in x_t.shape[1:-1]):
            raise ValueError(
                f"UViT needs spatial sizes divisible by patch_size={p}, got {x_t.shape}"
            )
        field, params = _split_cond(cond, x_t)
        emb = Embedding(self.dim, self.time_scale)(t, params)
        x = x_t if field is None else jnp.concatenate([x_t, field], axis=-1)
        patches = nn.Conv(self.dim, (p,) * ndim, strides=(p,) * ndim, padding="VALID")(x)
        tokens = patches.reshape(patches.shape[0], -1, self.dim)
        tokens = ViTBottleneck(self.depth, self.heads, self.mlp_ratio)(tokens, emb)
        v = nn.ConvTranspose(self.out_channels, (p,) * ndim, strides=(p,) * ndim, padding="VALID")(
            tokens.reshape(patches.shape)
        )
        return conv(self.out_channels, ndim, self.padding, zero=True)(v)
