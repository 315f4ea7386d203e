import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import fields
from sciml.nn import SpectralConv
from sciml.operators import FNO


@pytest.mark.parametrize(
    ("shape", "modes", "width", "in_c", "out_c"),
    [((64,), 16, 32, 1, 1), ((32, 32), (8, 6), 16, 3, 2), ((8, 8, 8), 3, 8, 1, 1)],
)
def test_fno_parameter_count_matches_the_formula(shape, modes, width, in_c, out_c):
    model = FNO(out_channels=out_c, modes=modes, width=width, n_layers=3, projection_width=24)
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape, in_c)))
    d = len(shape)
    m = np.prod((modes,) * d if isinstance(modes, int) else modes)
    c = in_c + d
    expected = (
        (c + 1) * width
        + 3 * (2**d * m * width**2 + width**2 + width)
        + (width + 1) * 24
        + 25 * out_c
    )
    assert sum(p.size for p in jax.tree.leaves(params)) == expected


@pytest.mark.parametrize("implementation", ["fft", "dft"])
@pytest.mark.parametrize("shape", [(32,), (16, 20)])
def test_spectral_conv_gives_the_same_function_at_two_resolutions(shape, implementation, x64):
    # A band-limited input (modes <= 3) sampled on two grids: the layer's output on the coarse grid,
    # resampled to the fine one, must equal its output on the fine grid to round-off.
    layer = SpectralConv(out_channels=2, modes=(4,) * len(shape), implementation=implementation)
    rng = np.random.default_rng(0)
    fine_shape = tuple(2 * n for n in shape)
    coords = np.meshgrid(*[fields.grid(n) for n in fine_shape], indexing="ij")
    u = sum(
        rng.normal()
        * np.cos(
            2 * np.pi * sum(int(k) * x for k, x in zip(rng.integers(-3, 4, len(shape)), coords))
        )
        for _ in range(5)
    )
    fine = jnp.asarray(np.stack([u, u**2 * 0 + 1.0], -1)[None])
    coarse = fields.spectral_resample(fine, shape)
    params = layer.init(jax.random.key(0), coarse)
    out_coarse = fields.spectral_resample(layer.apply(params, coarse), fine_shape)
    out_fine = layer.apply(params, fine)
    assert np.abs(out_coarse - out_fine).max() < 1e-12 * max(1.0, np.abs(out_fine).max())


def test_fno_applies_at_any_resolution():
    model = FNO(out_channels=1, modes=8, width=8, n_layers=2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 64, 1)))
    for n in (8, 16, 64, 256):  # 8 and 16 points hold fewer than 8 modes: leading weights are used
        assert model.apply(params, jnp.ones((2, n, 1))).shape == (2, n, 1)


@pytest.mark.parametrize(
    ("shape", "modes"),
    [((33,), (5,)), ((6,), (8,)), ((16, 15), (4, 8)), ((10, 12), (5, 7)), ((8, 6, 7), (3, 2, 4))],
)
def test_spectral_conv_dft_equals_fft_with_gradients(shape, modes, x64):
    # Both implementations compute the same linear map; float64 round-off bounds the difference
    # (odd sizes, Nyquist modes kept, and grids too coarse for the modes included).
    x = jax.random.normal(jax.random.key(1), (2, *shape, 3))
    fft, dft = (SpectralConv(4, modes, implementation=i) for i in ("fft", "dft"))
    params = fft.init(jax.random.key(0), x)
    np.testing.assert_allclose(dft.apply(params, x), fft.apply(params, x), rtol=0, atol=1e-12)

    def grads(layer):
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x))), argnums=(0, 1))(params, x)

    for a, b in zip(jax.tree.leaves(grads(dft)), jax.tree.leaves(grads(fft))):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("implementation", ["fft", "dft"])
@pytest.mark.parametrize(
    ("shape", "modes"), [((12,), (4,)), ((10, 9), (3, 4)), ((6, 5, 8), (2, 2, 3))]
)
def test_channels_first_layers_compute_the_channels_last_map(implementation, shape, modes, x64):
    # FNO runs its Fourier layers channels-first on the parameters of the channels-last layers.
    from sciml.nn import MLP, ChannelsFirstDense

    x = jax.random.normal(jax.random.key(1), (2, *shape, 3))
    first = lambda y: jnp.moveaxis(y, -1, 1)  # noqa: E731
    conv = SpectralConv(4, modes, implementation=implementation)
    params = conv.init(jax.random.key(0), x)
    conv_first = SpectralConv(4, modes, implementation=implementation, channels_first=True)
    np.testing.assert_allclose(
        conv_first.apply(params, first(x)), first(conv.apply(params, x)), rtol=0, atol=1e-13
    )
    dense = flax.linen.Dense(5)
    params = dense.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, ChannelsFirstDense(5).init(jax.random.key(2), first(x))) == (
        jax.tree.map(jnp.shape, params)
    )
    np.testing.assert_allclose(
        ChannelsFirstDense(5).apply(params, first(x)), first(dense.apply(params, x)), atol=1e-13
    )
    mlp = MLP((6, 2))
    params = mlp.init(jax.random.key(3), x)
    np.testing.assert_allclose(
        MLP((6, 2), channels_first=True).apply(params, first(x)),
        first(mlp.apply(params, x)),
        atol=1e-13,
    )


def test_spectral_conv_rejects_an_unknown_implementation():
    layer = SpectralConv(2, (4,), implementation="cufft")
    with pytest.raises(ValueError, match="auto, fft or dft"):
        layer.init(jax.random.key(0), jnp.zeros((1, 16, 1)))
