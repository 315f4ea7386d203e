import jax.numpy as jnp
import numpy as np
import pydantic
import pytest

from sciml.config import TrainConfig
from sciml.train import make_optimizer


def _updates(cfg: TrainConfig, grads: list[float], param: float = 2.0) -> list[float]:
    """The updates of a scalar parameter for a sequence of gradients."""
    tx = make_optimizer(cfg)
    params = jnp.asarray(param)
    state = tx.init(params)
    out = []
    for g in grads:
        update, state = tx.update(jnp.asarray(g), state, params)
        out.append(float(update))
    return out


@pytest.mark.parametrize(
    ("betas", "second"),
    # Lion's second update is -lr sign(b1 (1 - b2) g1 + (1 - b1) g2): for g1 = 1, g2 = -0.1 the
    # sign is + for FLEX's b2 = 0.98 (0.018 - 0.010) and - for optax's default 0.99 (0.009 - 0.010).
    [((0.9, 0.98), -0.1), (None, 0.1)],
)
def test_lion_steps_by_the_sign_of_interpolated_momenta(betas, second):
    cfg = TrainConfig(
        optimizer="lion", lr=0.1, schedule="constant", weight_decay=0.0, grad_clip=None, betas=betas
    )
    np.testing.assert_allclose(_updates(cfg, [1.0, -0.1]), [-0.1, second], rtol=1e-6)


def test_lion_decays_weights():
    cfg = TrainConfig(optimizer="lion", lr=0.1, schedule="constant", weight_decay=0.5)
    # -lr (sign(g) + wd * param), whatever the gradient's size (clipping keeps its sign).
    np.testing.assert_allclose(_updates(cfg, [-30.0], param=1.0), [-0.1 * (-1 + 0.5 * 1.0)])


def test_betas_outside_the_unit_interval_are_rejected():
    with pytest.raises(pydantic.ValidationError, match="betas"):
        TrainConfig(optimizer="lion", betas=(0.9, 1.0))
