import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import fields


def _band_limited(shape, max_mode, seed=0):
    """A random real field with modes |k| <= max_mode per axis, evaluated on `shape`, channels-last."""
    rng = np.random.default_rng(seed)
    coords = np.meshgrid(*[fields.grid(n) for n in shape], indexing="ij")
    out = np.zeros(shape)
    for _ in range(6):
        k = rng.integers(-max_mode, max_mode + 1, size=len(shape))
        phase = rng.uniform(0, 2 * np.pi)
        out += rng.normal() * np.cos(2 * np.pi * sum(ki * x for ki, x in zip(k, coords)) + phase)
    return out[None, ..., None]


def _on_grid(fn_shape, target_shape, seed=0):
    return _band_limited(fn_shape, 3, seed), _band_limited(target_shape, 3, seed)


@pytest.mark.parametrize(
    ("n_in", "n_out"),
    [((32,), (64,)), ((64,), (32,)), ((33,), (16,)), ((16, 24), (32, 12)), ((12, 12), (12, 40))],
)
def test_spectral_resample_is_exact_for_band_limited_fields(n_in, n_out, x64):
    # Modes |k| <= 3 fit below the Nyquist frequency of every grid here, so resampling must
    # reproduce the field up to float64 round-off (1e-12 allows the FFT's O(n log n eps)).
    u_in, u_out = _on_grid(n_in, n_out)
    assert np.abs(fields.spectral_resample(jnp.asarray(u_in), n_out) - u_out).max() < 1e-12


def test_upsampling_keeps_an_even_grid_nyquist_mode_real(x64):
    n = 8
    u = np.cos(np.pi * n * fields.grid(n))[None, :, None]  # the Nyquist mode: +1, -1, +1, ...
    up = np.asarray(fields.spectral_resample(jnp.asarray(u), 16))
    assert np.allclose(up[0, ::2, 0], u[0, :, 0], atol=1e-12)  # interpolates the original samples


@pytest.mark.parametrize("order", [1, 2, 3])
def test_spectral_derivative_of_a_sine(order, x64):
    x = fields.grid(64, 2.0)
    u = np.sin(3 * np.pi * x)[None, :, None]
    exact = (3 * np.pi) ** order * np.sin(3 * np.pi * x + order * np.pi / 2)
    du = fields.spectral_derivative(jnp.asarray(u), axis=0, ndim=1, order=order, length=2.0)
    assert np.abs(du[0, :, 0] - exact).max() < 1e-9 * (3 * np.pi) ** order


@pytest.mark.parametrize("shells", ["round", "square"])
def test_energy_spectrum_obeys_parseval_and_is_resolution_independent(shells, x64):
    u32 = _band_limited((32, 32), 4)
    u64 = _band_limited((64, 64), 4)
    k, e32 = fields.energy_spectrum(jnp.asarray(u32), ndim=2, shells=shells)
    _, e64 = fields.energy_spectrum(jnp.asarray(u64), ndim=2, shells=shells)
    assert np.isclose(e32.sum(), 0.5 * np.mean(u32**2), rtol=1e-12)
    assert np.allclose(e32, e64[: len(e32)], atol=1e-14) and np.allclose(
        e64[len(e32) :], 0, atol=1e-14
    )


def test_square_shells_hold_each_mode_at_its_largest_component():
    x = fields.grid(16)
    u = np.cos(2 * np.pi * (3 * x[:, None] + 5 * x[None, :]))[None, ..., None]  # mode (3, 5)
    _, square = fields.energy_spectrum(jnp.asarray(u), ndim=2, shells="square")
    _, round_ = fields.energy_spectrum(jnp.asarray(u), ndim=2)
    assert np.flatnonzero(square > 1e-8).tolist() == [5]
    assert np.flatnonzero(round_ > 1e-8).tolist() == [6]  # |(3, 5)| = 5.83


def _numpy_resample_axis(u: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Reference: full FFT of one axis, keep modes |k| < min(n)/2, split an even Nyquist mode."""
    n_in = u.shape[axis]
    if n_in == n_out:
        return u
    spec = np.moveaxis(np.fft.fft(u, axis=axis), axis, -1)
    out = np.zeros(spec.shape[:-1] + (n_out,), complex)
    half = (min(n_in, n_out) - 1) // 2
    out[..., : half + 1] = spec[..., : half + 1]
    if half:
        out[..., n_out - half :] = spec[..., n_in - half :]
    if n_out > n_in and n_in % 2 == 0:
        out[..., n_in // 2] = out[..., n_out - n_in // 2] = spec[..., n_in // 2] / 2
    return np.moveaxis(np.fft.ifft(out, axis=-1).real * n_out / n_in, -1, axis)


@pytest.mark.parametrize(
    ("shape", "new"),
    [((12, 10), (24, 7)), ((9, 8), (6, 18)), ((9, 9), (16, 4)), ((8, 8), (8, 8))],
)
def test_spectral_resample_matches_a_numpy_reference_and_keeps_sharding(shape, new):
    from sciml.data import shard_batch
    from sciml.train import make_mesh

    u = np.random.default_rng(0).normal(size=(8, *shape, 3)).astype(np.float32)
    expected = _numpy_resample_axis(_numpy_resample_axis(u, 1, new[0]), 2, new[1])
    np.testing.assert_allclose(fields.spectral_resample(u, new), expected, atol=1e-5)
    mesh = make_mesh()
    with jax.set_mesh(mesh):  # a batch sharded over 8 devices stays sharded: no scatter into zeros
        sharded = shard_batch((u,), mesh)[0]
        out = jax.jit(fields.spectral_resample, static_argnums=1)(sharded, new)
        np.testing.assert_allclose(out, expected, atol=1e-5)
