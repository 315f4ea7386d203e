import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.config import build
from sciml.data import shard_batch
from sciml.diffusion import FLEX, FLEX_PRESETS, CosineVP, DiffusionUNet, UViT, ddim
from sciml.train import make_mesh, replicate

# Tiny models for the numerics, 32^2 -> 8^2 (64 tokens), with no ResBlocks besides the down /
# up-sampling ones in the encoder (the decoder still has one plain block per level): compiling is
# most of these tests' time. The 4-level structure with more blocks is checked by shapes only.
# Initialised under jit with an "unsafe_rbg" key: flax derives one key per parameter by fold_in,
# which for threefry-based keys takes XLA:CPU about twice as long to compile.
KEY = "unsafe_rbg"
# The programs run for milliseconds: skip LLVM's optimisations (a third less compile time).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
TINY = {"channels": (4, 8), "blocks": (0, 0), "groups": 4}
MODELS = {
    "flex": lambda **kw: FLEX(depth=3, heads=2, **TINY, **kw),
    "unet": lambda **kw: DiffusionUNet(n_mid=1, **TINY, **kw),
    "uvit": lambda **kw: UViT(patch_size=4, dim=16, depth=3, heads=2, **kw),
}
SHAPE = (32, 32)


def _inputs(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *SHAPE, 1)).astype(np.float32)
    t = rng.uniform(size=(batch,)).astype(np.float32)
    cond = {
        "field": rng.normal(size=(batch, *SHAPE, 2)).astype(np.float32),
        "params": rng.uniform(size=(batch, 1)).astype(np.float32),
    }
    return x, t, cond


def _varied_inputs(batch: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rows 1, 2, 3 differ from row 0 only in the field, in t, in the physical parameter."""
    x, t, cond = _inputs(batch)
    field, p = cond["field"], cond["params"]
    x[1:4], t[1:4], field[1:4], p[1:4] = x[0], t[0], field[0], p[0]
    field[1] = _inputs(1, seed=5)[2]["field"][0]
    t[2] = t[0] / 2
    p[3] = p[0] + 1
    return x, t, cond


@functools.cache
def _init(name: str):
    """Parameters of the tiny model `name` (the weak and strong FLEX share their structure)."""
    x, t, cond = _inputs(1)
    return jit(MODELS[name](out_channels=1).init)(jax.random.key(0, impl=KEY), x, t, cond)


def _perturbed(params, scale: float = 0.05):
    """Params plus noise (the zero-initialised convs make the output independent of inputs)."""
    # In numpy: an eager jax op per leaf would compile one kernel per parameter shape.
    rng = np.random.default_rng(1)
    noise = lambda p: scale * rng.normal(size=p.shape)  # noqa: E731
    return jax.tree.map(lambda p: (np.asarray(p) + noise(p)).astype(p.dtype), params)


def _assert_depends_on_field_time_and_parameters(y: np.ndarray) -> None:
    # A change is measured against the output's own size; float32 round-off is ~1e-7 of it.
    assert np.isfinite(y).all()
    size = np.abs(y[0]).max()
    assert size > 0
    for row in (1, 2, 3):
        assert np.abs(y[row] - y[0]).max() > 1e-4 * size, row


@pytest.mark.parametrize("name", MODELS)
def test_zero_output_at_init_gradients_and_conditioning_on_a_sharded_batch(name):
    # Batch of 8 sharded over 8 CPU devices with explicit axis types: arrays made inside a model
    # must inherit the batch sharding, or tracing fails. One compilation, two calls.
    model = MODELS[name](out_channels=1)
    x, t, cond = _varied_inputs(8)
    target = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)

    @jit
    def forward_and_grad(params, x, t, field, p, target):
        cond = {"field": field, "params": p}

        def loss(params):
            # Linear in the output: with a zero output, d mean(y^2) / d params would vanish.
            y = model.apply(params, x, t, cond)
            return jnp.mean(y * target), y

        (_, y), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return y, grads

    mesh = make_mesh()
    with jax.set_mesh(mesh):
        batch = shard_batch((x, t, cond["field"], cond["params"], target), mesh)
        y, grads = forward_and_grad(replicate(_init(name), mesh), *batch)
        y_perturbed, _ = forward_and_grad(replicate(_perturbed(_init(name)), mesh), *batch)
    assert y.shape == x.shape
    # The last conv (kernel and bias) is zero-initialised: the untrained network outputs exactly 0.
    assert np.all(np.asarray(y) == 0.0)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert sum(np.abs(g).sum() for g in jax.tree.leaves(grads)) > 0
    _assert_depends_on_field_time_and_parameters(np.asarray(y_perturbed))


def test_weak_conditioning_also_depends_on_the_field():
    model = MODELS["flex"](out_channels=1, conditioning="weak")
    x, t, cond = _varied_inputs(4)
    y = jit(model.apply)(_perturbed(_init("flex")), x, t, cond)
    _assert_depends_on_field_time_and_parameters(np.asarray(y))


def _resblock(c_in: int, c: int, emb: int | None) -> int:
    """Parameters of a `ResBlock` (3x3 convs, 3x3 skip conv when the width changes), 2-D."""
    n = 2 * c_in + 9 * c_in * c + c + 2 * c + 9 * c * c + c
    n += 0 if emb is None else emb * 2 * c + 2 * c
    return n + (9 * c_in * c + c if c_in != c else 0)


def _encoder(c_in: int, channels, blocks, emb: int | None) -> tuple[int, list[int]]:
    """(parameters, widths of the outputs) of a `ConvEncoder`."""
    n, widths, c = 9 * c_in * channels[0] + channels[0], [channels[0]], channels[0]
    for width, n_blocks in zip(channels, blocks):
        for _ in range(n_blocks + 1):  # the last one downsamples
            n, c = n + _resblock(c, width, emb), width
            widths.append(width)
    return n, widths


def _flex_parameters(size: str, n: int, c_in: int, c_cond: int, n_params: int) -> int:
    """FLEX's parameter count from its description, independent of the module code."""
    channels, blocks = FLEX_PRESETS[size]["channels"], FLEX_PRESETS[size]["blocks"]
    depth, e = FLEX_PRESETS[size]["depth"], FLEX_PRESETS[size]["channels"][-1]
    mlp = lambda a, h, b: a * h + h + h * b + b  # noqa: E731
    total = mlp(e, 2 * e, e) + mlp(n_params, 2 * e, e)  # time and parameter embeddings
    total += mlp(n_params, 2 * e, e)  # the task encoder's parameter embedding
    encoder, widths = _encoder(c_in, channels, blocks, e)
    task, _ = _encoder(c_cond, channels, blocks, e)
    total += encoder + task
    tokens = (n // 2 ** len(channels)) ** 2 + 1
    block = 4 * e + 4 * (e * e + e) + mlp(e, 2 * e, e)  # 2 LayerNorms, q k v out, MLP (ratio 2)
    total += tokens * e + depth * block + (depth // 2) * (2 * e * e + e) + 2 * e
    c = e
    total += _resblock(c + widths.pop(), e, e)  # upsampling block on the coarsest grid
    for level in reversed(range(len(channels))):
        for _ in range(blocks[level] + 1):
            total, c = total + _resblock(c + widths.pop(), channels[level], e), channels[level]
        if level:
            total += _resblock(c, c, e)
    return total + 2 * c + 9 * c * 1 + 1  # GroupNorm, zero conv to one channel


# Super-resolution at FLEX's default 256^2: one channel, the upsampled coarse field, Re as input.
PRESET_COUNTS = {"small": 49_333_249, "medium": 197_613_569, "big": 941_904_641}


@pytest.mark.parametrize("size", PRESET_COUNTS)
def test_preset_parameter_counts_at_256_squared(size):
    # Shapes only (jax.eval_shape): nothing is allocated. The notes give ~50M / 200M / 950M; the
    # release has separate time embeddings for its encoder and decoder (here one is shared).
    x, t = jnp.zeros((1, 256, 256, 1)), jnp.zeros((1,))
    cond = {"field": jnp.zeros((1, 256, 256, 1)), "params": jnp.zeros((1, 1))}
    shapes = jax.eval_shape(FLEX(size=size).init, jax.random.key(0), x, t, cond)
    count = sum(p.size for p in jax.tree.leaves(shapes))
    assert count == PRESET_COUNTS[size] == _flex_parameters(size, 256, 1, 1, 1)
    assert abs(count / {"small": 50e6, "medium": 200e6, "big": 950e6}[size] - 1) < 0.02


def test_conditioning_variants_and_input_checks():
    model = MODELS["flex"](out_channels=2)
    x, t, cond = _inputs(2)
    init = lambda m, c: jax.eval_shape(m.init, jax.random.key(0), x, t, c)  # noqa: E731
    params = init(model, cond)
    # Without params, without a field (no task encoder), with none, and a coarse field (resized).
    coarse = {"field": jnp.zeros((2, 8, 8, 2))}
    for c in [{"field": cond["field"]}, {"params": cond["params"]}, None, coarse]:
        out = jax.eval_shape(model.apply, init(model, c), x, t, c)
        assert out.shape == (2, *SHAPE, 2)
    assert "task_encoder" not in init(model, {"params": cond["params"]})["params"]
    with pytest.raises(ValueError, match="divisible by 4"):
        jax.eval_shape(model.apply, params, x[:, :30], t, cond)
    with pytest.raises(ValueError, match="'field' and/or 'params'"):
        jax.eval_shape(model.apply, params, x, t, {"image": cond["field"]})
    with pytest.raises(ValueError, match="strong"):
        jax.eval_shape(model.clone(conditioning="both").init, jax.random.key(0), x, t, cond)
    with pytest.raises(ValueError, match="size"):
        jax.eval_shape(FLEX(size="huge").init, jax.random.key(0), x, t, cond)


def test_built_from_a_config_and_sampled_with_ddim():
    spec = {
        "type": "sciml.diffusion.FLEX",
        "out_channels": 1,
        "channels": [4, 8, 8, 16],
        "blocks": [1, 1, 1, 1],
        "depth": 1,
        "heads": 2,
        "groups": 4,
        "conditioning": "weak",
    }
    model = build(spec, "model")
    assert model.channels == (4, 8, 8, 16) and model.architecture()[2:] == (1, 2)
    x, t, cond = _inputs(2)
    params = jax.eval_shape(model.init, jax.random.key(0), x, t, cond)
    sample = jax.eval_shape(
        lambda p, c: ddim(
            model.apply, p, c, key=jax.random.key(0), shape=x.shape, schedule=CosineVP(), n_steps=2
        ),
        params,
        cond,
    )
    assert sample.shape == x.shape
