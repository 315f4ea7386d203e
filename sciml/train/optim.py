"""Optimisers and learning-rate schedules built from a `TrainConfig`."""

import optax

from sciml.config import TrainConfig


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Learning rate as a function of step: constant, cosine decay, or linear warm-up then cosine."""
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, cfg.steps)
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1)
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping (if `grad_clip`) followed by Adam, AdamW or Lion (Chen et al. 2023,
    the sign of interpolated momenta; FLEX trains with it) on `make_schedule(cfg)`."""
    schedule = make_schedule(cfg)
    betas = {} if cfg.betas is None else {"b1": cfg.betas[0], "b2": cfg.betas[1]}
    if cfg.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=cfg.weight_decay, **betas)
    elif cfg.optimizer == "lion":
        opt = optax.lion(schedule, weight_decay=cfg.weight_decay, **betas)
    else:
        opt = optax.adam(schedule, **betas)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt) if cfg.grad_clip else opt
