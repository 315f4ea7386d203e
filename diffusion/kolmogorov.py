"""Kolmogorov-flow vorticity tasks for FLEX at CPU size: the data, model, training and sampling
that super-resolution (`sciml.diffusion.superres`) and forecasting (`sciml.diffusion.forecast`)
share.

The data are vorticity trajectories of `sciml.pde.NavierStokes2D` with Kolmogorov forcing
``sin(n y) e_x`` and linear drag at several viscosities (some for training, one held out), after a
spin-up. A task turns them into (target, cond) pairs, ``cond = {"field": ..., "params": ...}`` for
`FLEX`; a `Residual` around a base (bicubic upsampling, the last snapshot) is what the network
learns, with v-prediction on `CosineVP` (L1, as FLEX), sampled by deterministic DDIM. A
deterministic regression of the same network (`train_regression`) is the non-generative
comparison (CorrDiff's mean model).
"""

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from sciml import config as config_lib
from sciml.diffusion.evaluation import deterministic_metrics, ensemble_metrics, pulls
from sciml.diffusion.flex import FLEX, FLEX_PRESETS
from sciml.diffusion.losses import diffusion_loss
from sciml.diffusion.residual import Residual
from sciml.diffusion.samplers import ddim, ensemble
from sciml.diffusion.schedules import CosineVP
from sciml.fields import energy_spectrum
from sciml.plotting import plot_ensemble, plot_pull_histogram, plot_spectra
from sciml.train import TrainState, make_optimizer, make_train_step

Field = Float[Array | np.ndarray, "b x y c"]
LossFn = Callable[[Any, tuple[Array, Any], PRNGKeyArray], tuple[Array, dict]]


@dataclasses.dataclass(frozen=True)
class KolmogorovFlow:
    """The data every Kolmogorov-flow task draws from.

    Attributes:
        n: grid points per axis.
        train_viscosities, test_viscosities: viscosities seen in training / held out.
        drag: linear drag mu (keeps the forced flow statistically steady).
        dt: ETDRK4 time step; warmup: spin-up time discarded; spacing: time between snapshots.
        snapshots: snapshots kept per trajectory after the spin-up.
        forcing_wavenumber: n of the Kolmogorov forcing ``sin(n y) e_x``.
        reference_viscosity: the network's parameter input is ``reference_viscosity / nu`` (a
            Reynolds-number-like scale, as FLEX feeds Re / 40000).
    """

    # The task's name in checkpoint metadata (config.task.kind); `sciml sample` dispatches on it.
    kind: ClassVar[str] = "kolmogorov"

    n: int = 64
    train_viscosities: tuple[float, ...] = (2e-3, 4e-3, 8e-3)
    test_viscosities: tuple[float, ...] = (3e-3,)
    drag: float = 0.1
    dt: float = 0.02
    warmup: float = 20.0
    spacing: float = 1.0
    snapshots: int = 8
    forcing_wavenumber: int = 4
    reference_viscosity: float = 2e-3

    @property
    def max_wavenumber(self) -> int:
        """The largest ``|k_i|`` the solver's 2/3-rule dealiasing keeps, ``(2 (n // 2)) // 3``
        (21 for n = 64). The dealiased nonlinearity feeds no mode above it, so all the data hold
        there is the initial condition's, decayed by ``exp(-(nu k^2 + drag) warmup)`` (below
        exp(-20) for the default task)."""
        return (2 * (self.n // 2)) // 3

    @property
    def viscosities(self) -> tuple[float, ...]:
        """Training viscosities, then the held-out ones."""
        return self.train_viscosities + self.test_viscosities

    def dataset(self, viscosity: float) -> dict:
        """The data generator as a component spec (built by `sciml.config.build`, like any
        config's `data.generator`; sciml.diffusion does not import sciml.pde)."""
        equation = {
            "type": "sciml.pde.NavierStokes2D",
            "shape": [self.n, self.n],
            "dt": self.dt,
            "viscosity": viscosity,
            "drag": self.drag,
            "forcing": "kolmogorov",
            "forcing_wavenumber": self.forcing_wavenumber,
        }
        return {
            "type": "sciml.pde.SpectralDataset",
            "equation": equation,
            "t_final": self.spacing * (self.snapshots - 1),
            "n_snapshots": self.snapshots,
            "warmup": self.warmup,
            "initial_condition": {"kind": "grf", "sigma": 5.0, "tau": 3.0, "alpha": 2.5},
        }

    def parameter(self, viscosity: Float[Array | np.ndarray, " b"]) -> Float[Array, "b 1"]:
        """The network's parameter input ``reference_viscosity / nu``, (batch, 1)."""
        return (self.reference_viscosity / jnp.asarray(viscosity, jnp.float32))[:, None]


Task = TypeVar("Task", bound=KolmogorovFlow)

# The GPU-sized runs (scripts/flex_superres.py and scripts/flex_forecast.py --preset gpu) at
# FLEX's 256^2 scale: lower viscosities, so that the grid holds small scales (3-9% of the energy
# above k = 16, the x8 coarse grid's cut-off; <1% above k = 64; one trajectory each, measured on
# CPU), and dt = 0.005 (stable at all four; advective CFL ~0.3). FLEX-small's widths, blocks,
# depth and heads with circular padding (`tiny_flex` overrides): ~50M parameters.
GPU_FLOW: dict[str, Any] = {
    "n": 256,
    "dt": 0.005,
    "train_viscosities": (2.5e-4, 5e-4, 1e-3, 2e-3),
    "test_viscosities": (7.5e-4,),
    "reference_viscosity": 2.5e-4,
}
GPU_MODEL: dict[str, Any] = {**FLEX_PRESETS["small"], "groups": 32}


def generate_trajectories(
    key: PRNGKeyArray, config: KolmogorovFlow, viscosity: float, n_trajectories: int
) -> Float[np.ndarray, "t s x y 1"]:
    """Vorticity trajectories (n_trajectories, snapshots, n, n, 1) at one viscosity after spin-up.

    All viscosities share one compiled solver (the viscosity is a traced leaf of the problem).
    """
    generator = config_lib.build(config.dataset(viscosity), f"{type(config).__name__}.dataset")
    traj = generator.generate(key, n_trajectories).fields["u"]
    return traj[..., None].astype(np.float32)


def generate_vorticity(
    key: PRNGKeyArray, config: KolmogorovFlow, viscosity: float, n_trajectories: int
) -> Float[np.ndarray, "s x y 1"]:
    """`generate_trajectories` with the snapshots of all trajectories in one batch axis."""
    traj = generate_trajectories(key, config, viscosity, n_trajectories)
    return traj.reshape(-1, config.n, config.n, 1)


def tiny_flex(**overrides: Any) -> FLEX:
    """A FLEX small enough to train a few hundred steps on 2 CPU cores in a few minutes.

    3 levels of widths (8, 16, 32) with one ResBlock each (64^2 -> 8^2, 64 tokens), a 2-block
    transformer of 2 heads, circular padding (the flow is periodic), strong conditioning.
    """
    kw = {
        "channels": (8, 16, 32),
        "blocks": (1, 1, 1),
        "depth": 2,
        "heads": 2,
        "groups": 8,
        "padding": "circular",
        **overrides,
    }
    return FLEX(out_channels=1, **kw)


def residual_variance(x: Field, cond: Mapping[str, Array], residual: Residual) -> dict[str, float]:
    """Var[x] and Var[r] with ``r = x - base(cond)`` over all elements, and their ratio."""
    var_x = float(jnp.var(jnp.asarray(x)))
    var_r = float(jnp.var(residual.residual(jnp.asarray(x), cond)))
    return {"var_x": var_x, "var_r": var_r, "ratio": var_r / var_x}


def make_loss(model: FLEX, residual: Residual, schedule: CosineVP, loss: str = "l1") -> LossFn:
    """``loss_fn(params, (x, cond), key) -> (loss, {})``: residual v-prediction diffusion loss."""

    def loss_fn(params: Any, batch: tuple[Array, Any], key: PRNGKeyArray) -> tuple[Array, dict]:
        x, cond = batch
        value = residual.loss(
            diffusion_loss,
            model.apply,
            params,
            x,
            cond,
            key,
            schedule=schedule,
            kind="v",
            loss=loss,
        )
        return value, {}

    return loss_fn


def regression_apply(model: FLEX) -> Callable[[Any, Any], Array]:
    """``apply(params, cond) -> residual``: the diffusion network used as a deterministic
    regression, its noisy input and time fixed at 0 (same architecture and parameter count)."""

    def apply(params: Any, cond: Mapping[str, Array]) -> Array:
        field = cond["field"]
        zeros = jnp.zeros((*field.shape[:-1], model.out_channels), field.dtype)
        return model.apply(params, zeros, jnp.zeros(field.shape[:1], field.dtype), cond)

    return apply


def make_regression_loss(model: FLEX, residual: Residual) -> LossFn:
    """``loss_fn(params, (x, cond), key) -> (loss, {})``: mean squared error of the residual."""
    apply = regression_apply(model)

    def loss_fn(params: Any, batch: tuple[Array, Any], key: PRNGKeyArray) -> tuple[Array, dict]:
        x, cond = batch
        return jnp.mean((apply(params, cond) - residual.residual(x, cond)) ** 2), {}

    return loss_fn


def fit(
    key: PRNGKeyArray,
    model: FLEX,
    x: Field,
    cond: Mapping[str, Array],
    loss_fn: LossFn,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 2e-3,
    ema_decay: float | None = 0.99,
    optimizer: Literal["adamw", "lion"] = "adamw",
    betas: tuple[float, float] | None = None,
    log: Callable[[int, float], None] | None = None,
) -> tuple[TrainState, list[float]]:
    """Train `model` on random batches of (x, cond) with AdamW or Lion (`betas`, default the
    optimizer's), warm-up over 5% of the steps then cosine decay, global-norm clip 1.

    Returns the final state (its `eval_params` are the EMA) and the loss of every step.
    """
    x = jnp.asarray(x)
    key_init, key_state, key_batches = jax.random.split(key, 3)
    n = x.shape[0]
    first = jax.tree.map(lambda a: a[:1], cond)
    params = jax.jit(model.init)(key_init, x[:1], jnp.zeros((1,), x.dtype), first)
    settings = config_lib.TrainConfig(
        steps=steps,
        batch_size=batch_size,
        optimizer=optimizer,
        betas=betas,
        lr=lr,
        schedule="warmup_cosine",
        warmup_steps=max(1, steps // 20),
        weight_decay=1e-5,
        grad_clip=1.0,
    )
    tx = make_optimizer(settings)
    state = TrainState.create(params, tx, key_state, ema=ema_decay is not None)
    step = make_train_step(loss_fn, tx, ema_decay)
    losses = []
    for i in range(steps):
        idx = jax.random.choice(jax.random.fold_in(key_batches, i), n, (batch_size,), replace=False)
        batch = (x[idx], jax.tree.map(lambda a, idx=idx: a[idx], cond))
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        if log is not None:
            log(i, losses[-1])
    return state, losses


def train_diffusion(
    key: PRNGKeyArray,
    model: FLEX,
    x: Field,
    cond: Mapping[str, Array],
    *,
    residual: Residual,
    steps: int,
    batch_size: int = 16,
    lr: float = 2e-3,
    ema_decay: float | None = 0.99,
    schedule: CosineVP = CosineVP(),  # noqa: B008 (frozen)
    **options: Any,
) -> tuple[TrainState, list[float]]:
    """`fit` `model` to the residual diffusion loss (`make_loss`, v-prediction, L1); `options`
    are further `fit` keywords (optimizer, betas, log)."""
    loss_fn = make_loss(model, residual, schedule)
    kw = {"steps": steps, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay}
    return fit(key, model, x, cond, loss_fn, **kw, **options)


def train_regression(
    key: PRNGKeyArray,
    model: FLEX,
    x: Field,
    cond: Mapping[str, Array],
    *,
    residual: Residual,
    steps: int,
    batch_size: int = 16,
    lr: float = 2e-3,
    ema_decay: float | None = 0.99,
    **options: Any,
) -> tuple[TrainState, list[float]]:
    """`fit` `model` as a deterministic regression of the residual (`make_regression_loss`);
    `options` are further `fit` keywords (optimizer, betas, log)."""
    loss_fn = make_regression_loss(model, residual)
    kw = {"steps": steps, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay}
    return fit(key, model, x, cond, loss_fn, **kw, **options)


def predict_regression(
    model: FLEX, params: Any, cond: Mapping[str, Array], *, residual: Residual
) -> Float[Array, "b x y c"]:
    """The regression's prediction ``base(cond) + apply(params, cond)``."""
    return residual.reconstruct(jax.jit(regression_apply(model))(params, cond), cond)


def sample_ensemble(
    model: FLEX,
    params: Any,
    cond: Mapping[str, Array],
    key: PRNGKeyArray,
    *,
    residual: Residual,
    n_steps: int,
    n_members: int = 1,
    schedule: CosineVP = CosineVP(),  # noqa: B008 (frozen)
    ddim_options: Mapping[str, Any] | None = None,
) -> Float[Array, "m b x y c"]:
    """`n_members` DDIM samples per condition, base + sampled residual.

    `ddim_options` are further `ddim` keywords (``eta``, ``t_min``, ``denoise_last``); none:
    FLEX's deterministic DDIM (eta = 0) ending on the last call's denoised estimate.
    """
    return ensemble(
        residual.sample,
        key,
        n_members,
        ddim,
        model.apply,
        params,
        cond,
        schedule=schedule,
        n_steps=n_steps,
        **(ddim_options or {}),
    )


def checkpoint_metadata(
    model: FLEX,
    task: KolmogorovFlow,
    scale: float,
    *,
    cond_channels: int = 1,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Checkpoint metadata of a FLEX trained on `task` with fields divided by `scale`: what
    `sciml.pretrained.load` rebuilds the model from and a task's `sample_report` the task from.

    Args:
        cond_channels: channels of ``cond["field"]`` (the model's init input).
        data: entries added to the metadata's "data" section.
    """
    n = task.n
    return {
        "checkpoint_format": 1,
        "model": config_lib.component_spec(model),
        "data": {
            "fields": ["vorticity"],
            "n_spatial_dims": 2,
            "spatial_shape": [n, n],
            "in_channels": cond_channels,
            "out_channels": 1,
            "mean": [0.0],
            "std": [scale],
            **(data or {}),
        },
        # the arguments of model.init(key, x_t, t, cond), as shapes
        "init_inputs": [[1, n, n, 1], [1], {"field": [1, n, n, cond_channels], "params": [1, 1]}],
        "config": {"task": {"kind": task.kind, **dataclasses.asdict(task)}},
    }


def task_kind(meta: Mapping[str, Any]) -> str:
    """The task a checkpoint was trained on (metadata config.task.kind; "superres" when absent,
    as in checkpoints written before forecasting existed)."""
    task = (meta.get("config") or {}).get("task")
    if not isinstance(task, Mapping):
        return "superres"
    return str(task.get("kind", "superres"))


def task_from_metadata(meta: Mapping[str, Any], cls: type[Task], script: str) -> Task:
    """The task of class `cls` a checkpoint was trained on (metadata config.task); `script`, the
    script that writes such checkpoints, is named in the error when there is none."""
    try:
        raw = meta["config"]["task"]
    except (KeyError, TypeError):
        raise ValueError(
            f"this checkpoint's metadata has no config.task: it was not written by {script},"
            f" so there is no {cls.kind} task to sample"
        ) from None
    if task_kind(meta) != cls.kind:
        raise ValueError(f"this checkpoint is a {task_kind(meta)} model, not a {cls.kind} one")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names})


def score_ensembles(
    model: FLEX,
    params: Any,
    cond: Mapping[str, Array],
    x: Field,
    key: PRNGKeyArray,
    residual: Residual,
    steps: Sequence[int],
    n_members: int,
    band: Mapping[str, int],
    ddim_options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """``{"flex_<n>": ensemble_metrics}`` of `n_members` DDIM ensembles per step count in `steps`
    (the same key for every count; `ddim_options` as `sample_ensemble`), against the targets `x`."""
    out = {}
    for n_steps in steps:
        samples = sample_ensemble(
            model,
            params,
            cond,
            key,
            residual=residual,
            n_steps=n_steps,
            n_members=n_members,
            ddim_options=ddim_options,
        )
        out[f"flex_{n_steps}"] = ensemble_metrics(samples, x, **band)
    return out


def write_sample_report(
    out_dir: str | Path,
    task: KolmogorovFlow,
    viscosity: float,
    truth: Float[np.ndarray, "b x y 1"],
    base: Float[np.ndarray, "b x y 1"],
    samples: Float[np.ndarray, "m b x y 1"],
    *,
    scale: float,
    n_steps: int,
    baseline: str,
    band: Mapping[str, int],
    title: str,
    spectra_title: str,
    ddim_options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a sampled ensemble against `truth` and its `baseline` (`base`) over the spectral
    `band` (normalised units), and write to `out_dir`: samples.npz (truth, base, members
    (m, b, n, n, 1) in physical units, viscosity), ensemble_<i>.png for the first 3 conditions,
    spectra.png, pull.png (with more than one member) and report.json, which it returns
    (`ddim_options`, the sampler's extra keywords, are recorded in it, and so are the entries
    of `extra`)."""
    report = {
        "task": task.kind,
        "baseline": baseline,
        "viscosity": viscosity,
        "held_out": viscosity not in task.train_viscosities,
        "n_conditions": len(truth),
        "n_members": len(samples),
        "n_steps": n_steps,
        "ddim_options": dict(ddim_options or {}),
        "metrics": {
            baseline: deterministic_metrics(base, truth, **band),
            f"flex_{n_steps}": ensemble_metrics(samples, truth, **band),
        },
        **(extra or {}),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "samples.tmp.npz"
    np.savez(
        tmp,
        truth=truth * scale,
        base=base * scale,
        members=samples * scale,
        viscosity=report["viscosity"],
    )
    tmp.replace(out / "samples.npz")
    for i in range(min(3, len(truth))):
        plot_ensemble(out / f"ensemble_{i}.png", samples[:, i], truth[i], base[i], title=title)
    spectra = {
        "truth": energy_spectrum(truth, 2),
        baseline: energy_spectrum(base, 2),
        "FLEX member": energy_spectrum(samples[0], 2),
        "FLEX ensemble mean": energy_spectrum(samples.mean(0), 2),
    }
    plot_spectra(out / "spectra.png", spectra, title=spectra_title)
    if samples.shape[0] > 1:
        plot_pull_histogram(out / "pull.png", np.asarray(pulls(samples, truth)))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
