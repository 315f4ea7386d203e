"""The train state pytree and the compiled train step."""

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any
LossFn = Callable[[PyTree, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
    """Everything a training run needs to continue bit for bit.

    Attributes:
        params: model parameters.
        opt_state: optax optimiser state.
        step: number of updates applied, int32 scalar.
        ema_params: exponential moving average of `params`, or None when EMA is off.
        rng: raw uint32 key data (plain arrays checkpoint everywhere; typed keys do not).
    """

    # Leaves are typed loosely: pytree utilities rebuild the class with placeholder leaves.
    params: PyTree
    opt_state: PyTree
    step: PyTree
    ema_params: PyTree
    rng: PyTree

    @classmethod
    def create(
        cls,
        params: PyTree,
        optimizer: optax.GradientTransformation,
        key: jax.Array,
        ema: bool = False,
    ) -> "TrainState":
        return cls(
            params=params,
            opt_state=optimizer.init(params),
            step=jnp.zeros((), jnp.int32),
            ema_params=jax.tree.map(jnp.copy, params) if ema else None,
            rng=jax.random.key_data(key),
        )

    @property
    def eval_params(self) -> PyTree:
        """The parameters to evaluate and ship: the EMA when there is one."""
        return self.params if self.ema_params is None else self.ema_params


def make_train_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation, ema_decay: float | None = None
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """A jitted ``step(state, batch) -> (state, metrics)`` doing one optimiser update.

    `loss_fn(params, batch, key) -> (loss, aux)`; the key is ``fold_in(state.rng, state.step)``, so
    randomness depends only on the seed and the step. Metrics: loss, grad_norm and `aux`. The step
    compiles once per batch shape.
    """

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if ema is not None:
            ema = optax.incremental_update(params, ema, step_size=1.0 - ema_decay)
        new_state = state.replace(
            params=params, opt_state=opt_state, step=state.step + 1, ema_params=ema
        )
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    return jax.jit(step)
