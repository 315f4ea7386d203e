import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import fields
from sciml.data import shard_batch
from sciml.fields import spectral_resample
from sciml.operators import CNO, FNO, TFNO, UNO, FactorizedSpectralConv, FourierLayer, UNet
from sciml.operators.tfno import cp_rank
from sciml.train import make_mesh, replicate

# Small presets, initialised under jit with an "rbg" key: threefry's initialisers take XLA:CPU
# ~8 s to compile for a model of a few dozen parameter arrays, rbg's ~1 s.
KEY = "rbg"
PRESETS = {
    "tfno": lambda: TFNO(out_channels=2, modes=4, width=8, n_layers=2, projection_width=8),
    "uno": lambda: UNO(out_channels=2, modes=4, widths=(8, 12), projection_width=8),
    "cno": lambda: CNO(out_channels=2, widths=(4, 8), n_res=1, n_res_neck=1),
    "unet": lambda: UNet(out_channels=2, widths=(4, 8), groups=2),
}
# The reference resampler, compiled once per shape (run eagerly it compiles every primitive).
_spectral_resample = jax.jit(spectral_resample, static_argnums=1)
SHAPES = {"tfno": [(16,), (8, 12), (8, 8, 6)], "uno": [(20,), (12, 10), (8, 6, 7)]}
SHAPES["cno"] = SHAPES["unet"] = [(16,), (8, 16), (8, 8, 4)]


def _band_limited(shape: tuple[int, ...], max_mode: int, seed: int = 0) -> np.ndarray:
    """Two channels of a random trigonometric polynomial (|k| <= max_mode per axis), (1, *shape, 2)."""
    rng = np.random.default_rng(seed)
    coords = np.meshgrid(*[fields.grid(n) for n in shape], indexing="ij")
    channels = []
    for _ in range(2):
        u = np.zeros(shape)
        for _ in range(5):
            k = rng.integers(-max_mode, max_mode + 1, len(shape))
            phase = 2 * np.pi * sum(int(ki) * x for ki, x in zip(k, coords))
            u += rng.normal() * np.cos(phase + rng.uniform(0, 2 * np.pi))
        channels.append(u)
    return np.stack(channels, -1)[None]


@pytest.mark.parametrize("name", PRESETS)
def test_output_shapes_in_one_two_and_three_dimensions(name):
    model = PRESETS[name]()
    for shape in SHAPES[name]:
        x = jnp.zeros((2, *shape, 3))
        params = jax.eval_shape(model.init, jax.random.key(0), x)
        assert jax.eval_shape(model.apply, params, x).shape == (2, *shape, 2)


@pytest.mark.parametrize("name", PRESETS)
def test_jit_and_finite_gradients_on_an_explicit_mesh(name):
    # The batch is sharded over 8 devices with explicit axis types: arrays made inside a model must
    # inherit its sharding (no jnp.zeros from scratch), or tracing fails.
    shape = SHAPES[name][1]
    model = PRESETS[name]()
    x = np.random.default_rng(1).normal(size=(8, *shape, 3)).astype(np.float32)
    params = jax.jit(model.init)(jax.random.key(0, impl=KEY), x)

    @jax.jit
    def forward_and_grad(params, x):
        y = model.apply(params, x)
        return y, jax.grad(lambda p: jnp.mean(model.apply(p, x) ** 2))(params)

    mesh = make_mesh()
    with jax.set_mesh(mesh):
        (xs,) = shard_batch((x,), mesh)
        y, grads = forward_and_grad(replicate(params, mesh), xs)
    assert y.shape == (8, *shape, 2)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


@pytest.mark.parametrize(
    ("shape", "modes", "width", "rank"),
    [((64,), 16, 32, 0.05), ((32, 32), (8, 6), 16, 0.1), ((8, 8, 8), 3, 8, 5)],
)
def test_tfno_parameter_count_matches_the_formula_and_undercuts_fno(shape, modes, width, rank):
    kwargs = dict(out_channels=2, modes=modes, width=width, n_layers=3, projection_width=24)
    x = jnp.zeros((1, *shape, 1))
    count = lambda m: sum(  # noqa: E731
        p.size for p in jax.tree.leaves(jax.eval_shape(m.init, jax.random.key(0), x))
    )
    d = len(shape)
    m = (modes,) * d if isinstance(modes, int) else modes
    sizes = [2 * mi for mi in m[:-1]] + [m[-1]]
    r = cp_rank(rank, m, width, width)
    c = 1 + d
    expected = (
        (c + 1) * width
        + 3 * (2 * r * (sum(sizes) + 2 * width) + width**2 + width)
        + (width + 1) * 24
        + 25 * 2
    )
    assert count(TFNO(rank=rank, **kwargs)) == expected
    assert count(TFNO(rank=rank, **kwargs)) < count(FNO(**kwargs)) / 2


def test_cp_rank_of_a_fraction():
    # 2D, modes 16, width 32: the dense weight has 32 * 16 * 32 * 32 complex entries.
    assert cp_rank(0.05, (16, 16), 32, 32) == round(0.05 * 32 * 16 * 32 * 32 / (32 + 16 + 64))
    assert cp_rank(7, (16, 16), 32, 32) == 7
    with pytest.raises(ValueError, match="fraction"):
        cp_rank(1.5, (16, 16), 32, 32)


@pytest.mark.parametrize("shape", [(32,), (16, 20)])
def test_factorized_spectral_conv_gives_the_same_function_at_two_resolutions(shape, x64):
    # As for SpectralConv: a band-limited input (|k| <= 3 < 4 kept modes) on two grids gives outputs
    # that agree after spectral resampling, to float64 round-off.
    layer = FactorizedSpectralConv(out_channels=2, modes=(4,) * len(shape), rank=3)
    fine_shape = tuple(2 * n for n in shape)
    fine = jnp.asarray(_band_limited(fine_shape, 3))
    coarse = _spectral_resample(fine, shape)
    params = jax.jit(layer.init)(jax.random.key(0, impl=KEY), coarse)
    apply = jax.jit(layer.apply)
    out_coarse = _spectral_resample(apply(params, coarse), fine_shape)
    out_fine = apply(params, fine)
    assert np.abs(out_fine).max() > 1e-6
    assert np.abs(out_coarse - out_fine).max() < 1e-12 * max(1.0, np.abs(out_fine).max())


@pytest.mark.parametrize(("shape", "scale"), [((32,), 0.5), ((16, 20), 0.5), ((16, 12), 2.0)])
def test_fourier_layer_between_grids_is_discretisation_invariant(shape, scale, x64):
    # UNO's layer maps grid N to grid scale * N. For an input band-limited below both output grids'
    # Nyquist and the kept modes, input grids N and 2N give one output function (round-off).
    layer = FourierLayer(out_channels=3, modes=(3,) * len(shape))
    fine_shape = tuple(2 * n for n in shape)
    fine = jnp.asarray(_band_limited(fine_shape, 2))
    coarse = _spectral_resample(fine, shape)
    out_of = lambda s: tuple(int(scale * n) for n in s)  # noqa: E731
    params = jax.jit(layer.init, static_argnums=2)(
        jax.random.key(0, impl=KEY), coarse, out_of(shape)
    )
    apply = jax.jit(layer.apply, static_argnums=2)
    out_coarse = apply(params, coarse, out_of(shape))
    out_fine = apply(params, fine, out_of(fine_shape))
    assert out_coarse.shape == (1, *out_of(shape), 3)
    assert np.abs(out_fine).max() > 1e-6
    resampled = _spectral_resample(out_coarse, out_of(fine_shape))
    assert np.abs(resampled - out_fine).max() < 1e-12 * max(1.0, np.abs(out_fine).max())


def test_uno_runs_at_any_resolution_with_the_same_parameters():
    model = PRESETS["uno"]()
    # Shapes by tracing only (jax.eval_shape): the numerics run in the test above.
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
    for shape in [(16, 16), (24, 20), (9, 13)]:  # odd grids coarsen to ceil(n / 2)
        out = jax.eval_shape(model.apply, params, jnp.ones((2, *shape, 1)))
        assert out.shape == (2, *shape, 2)
    up = UNO(out_channels=2, modes=4, widths=(8, 12), projection_width=8, output_scale=2.0)
    assert jax.eval_shape(up.apply, params, jnp.ones((1, 12, 10, 1))).shape == (1, 24, 20, 2)


@pytest.mark.parametrize("name", ["cno", "unet"])
def test_conv_models_run_on_multiples_of_two_to_the_levels(name):
    model = PRESETS[name]()  # one level: sizes must be even
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    for shape in [(8, 8), (16, 32), (4, 6)]:
        out = jax.eval_shape(model.apply, params, jnp.ones((1, *shape, 1)))
        assert out.shape == (1, *shape, 2)
    with pytest.raises(ValueError, match="divisible by 2"):
        jax.eval_shape(model.apply, params, jnp.ones((1, 9, 8, 1)))


def test_cno_with_a_native_resolution_gives_one_function_at_every_resolution():
    # With `resolution` set, inputs are resampled onto it and outputs back: band-limited inputs on
    # 16^2 and 32^2 give outputs that agree after resampling; float32 FFT round-off ~1e-6.
    model = CNO(out_channels=2, widths=(4, 8), n_res=1, n_res_neck=1, resolution=16)
    fine = jnp.asarray(_band_limited((32, 32), 3), dtype=jnp.float32)
    coarse = spectral_resample(fine, (16, 16))
    params = jax.jit(model.init)(jax.random.key(0, impl=KEY), coarse)
    apply = jax.jit(model.apply)
    out_fine = apply(params, fine)
    out_coarse = spectral_resample(apply(params, coarse), (32, 32))
    assert np.abs(out_coarse - out_fine).max() < 1e-5 * np.abs(out_fine).max()
