import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import fields
from sciml.diffusion import (
    EDM,
    CosineVP,
    Residual,
    ddim,
    diffusion_loss,
    edm_heun,
    last_snapshot_base,
    regression_base,
    upsample_base,
)


def _zero_x0_model(params, x, t, cond):
    return jnp.zeros_like(x)


def _coarse(batch=2, n=8, c=2):
    return jax.random.normal(jax.random.key(0), (batch, n, n, c))


@pytest.mark.parametrize(
    ("base_fn", "cond", "sampler", "schedule"),
    [
        (upsample_base((16, 16)), _coarse(), ddim, CosineVP()),
        (
            upsample_base((16, 12), "spectral", field="lr"),
            {"lr": _coarse(), "re": jnp.ones(2)},
            edm_heun,
            EDM(),
        ),
        (last_snapshot_base(2), _coarse(c=4), ddim, CosineVP()),
    ],
    ids=["bicubic-ddim", "spectral-dict-heun", "last-snapshot-ddim"],
)
def test_zero_residual_model_samples_the_base_exactly(base_fn, cond, sampler, schedule):
    # Both samplers end on the model's x0 estimate, here exactly 0.
    residual = Residual(base_fn)
    x = residual.sample(
        sampler,
        _zero_x0_model,
        None,
        cond,
        key=jax.random.key(1),
        schedule=schedule,
        n_steps=3,
        kind="x0",
    )
    np.testing.assert_array_equal(x, base_fn(cond))


def test_projection_applies_to_samples_and_not_to_training_targets():
    """A spectral base of 8^2 data holds modes |k| <= 4, so `project` (keep |k_i| <= 5) leaves
    it alone and removes only the part of the sampled residual above |k| = 5."""
    cond = _coarse()
    base_fn = upsample_base((16, 16), "spectral")
    project = lambda x: fields.lowpass(x, 5, 2)  # noqa: E731
    residual, raw_residual = Residual(base_fn, project=project), Residual(base_fn)
    noise_model = lambda p, x, t, c: x  # noqa: E731 (x0_hat = x_t: the draw keeps its noise)
    kw = {"key": jax.random.key(1), "schedule": CosineVP(), "n_steps": 2, "kind": "x0"}
    x = residual.sample(ddim, noise_model, None, cond, **kw)
    raw = raw_residual.sample(ddim, noise_model, None, cond, **kw)
    base = base_fn(cond)
    np.testing.assert_allclose(project(base), base, atol=1e-5)
    np.testing.assert_allclose(x, project(raw), atol=1e-6)
    assert float(jnp.abs(raw - x).max()) > 0.1  # the residual's noise above |k| = 5 is gone
    # Training is untouched: the same loss as without the projection.
    target = base + jax.random.normal(jax.random.key(2), base.shape)
    model = lambda p, x, t, c: p * x  # noqa: E731
    loss = [
        r.loss(diffusion_loss, model, 0.5, target, cond, jax.random.key(3), schedule=CosineVP())
        for r in (residual, raw_residual)
    ]
    assert float(loss[0]) == float(loss[1])


def test_residual_loss_is_the_loss_of_the_residual():
    cond = _coarse()
    base_fn = upsample_base((16, 16))
    target = base_fn(cond) + 0.1 * jax.random.normal(jax.random.key(2), (2, 16, 16, 2))
    model = lambda p, x, t, c: p * x  # noqa: E731
    key = jax.random.key(3)
    residual = Residual(base_fn)
    np.testing.assert_allclose(residual.residual(target, cond), target - base_fn(cond))
    np.testing.assert_allclose(
        residual.reconstruct(residual.residual(target, cond), cond), target, atol=1e-6
    )
    a = residual.loss(diffusion_loss, model, 0.5, target, cond, key, schedule=CosineVP(), kind="x0")
    b = diffusion_loss(model, 0.5, target - base_fn(cond), cond, key, CosineVP(), kind="x0")
    assert float(a) == float(b)


def test_spectral_base_reproduces_a_band_limited_field(x64):
    x = fields.grid(32)
    u = np.cos(2 * np.pi * x)[None, :, None] * np.sin(4 * np.pi * x)[None, None, :]
    fine = jnp.asarray(np.stack([u[0], 2 * u[0]], -1)[None])
    coarse = fine[:, ::4, ::4]  # 8 points per axis hold wavenumbers up to 3
    np.testing.assert_allclose(upsample_base((32, 32), "spectral")(coarse), fine, atol=1e-12)


def test_regression_base_is_frozen():
    def reg(p, cond):
        return p["w"] * cond

    cond = _coarse()
    grad = jax.grad(lambda p: jnp.sum(regression_base(reg, p)(cond)))({"w": jnp.float32(2.0)})
    assert float(grad["w"]) == 0.0
