"""FLEX residual super-resolution of 2D Kolmogorov-flow vorticity at CPU size.

The task of FLEX (Erichson et al. 2025) scaled down: vorticity snapshots of
`sciml.pde.NavierStokes2D` with Kolmogorov forcing at several viscosities (some for training, one
held out), on a 64^2 grid after a spin-up; the coarse field is the point subsampling ``x[::4, ::4]``
(16^2, no anti-alias filter; the paper subsamples by 8 from 256^2), the base its periodic
bicubic upsampling aligned with the subsampled points (`periodic_bicubic`), and a tiny `FLEX` learns the residual ``r = x - base`` with
v-prediction on `CosineVP` (L1 loss, as in the paper), conditioned on the coarse field and the
viscosity. Samples come from deterministic DDIM with 2 (FLEX's default) or more steps.

Fields are normalised by one scale (the training vorticity's standard deviation; the mean is ~0),
so variances below are in units of Var[x].
"""

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from sciml import config as config_lib
from sciml.diffusion.evaluation import deterministic_metrics, ensemble_metrics, pulls
from sciml.diffusion.flex import FLEX
from sciml.diffusion.losses import diffusion_loss
from sciml.diffusion.residual import Residual
from sciml.diffusion.samplers import ddim, ensemble
from sciml.diffusion.schedules import CosineVP
from sciml.fields import energy_spectrum
from sciml.plotting import plot_ensemble, plot_pull_histogram, plot_spectra
from sciml.train import TrainState, make_train_step

Field = Float[Array | np.ndarray, "b x y c"]


@dataclasses.dataclass(frozen=True)
class KolmogorovSR:
    """The data and the super-resolution set-up.

    Attributes:
        n: fine grid points per axis.
        factor: subsampling factor of the coarse grid (n / factor points per axis).
        train_viscosities, test_viscosities: viscosities seen in training / held out.
        drag: linear drag mu (keeps the forced flow statistically steady).
        dt: ETDRK4 time step; warmup: spin-up time discarded; spacing: time between snapshots.
        snapshots: snapshots kept per trajectory after the spin-up.
        forcing_wavenumber: n of the Kolmogorov forcing ``sin(n y) e_x``.
        reference_viscosity: the network's parameter input is ``reference_viscosity / nu`` (a
            Reynolds-number-like scale, as FLEX feeds Re / 40000).
    """

    n: int = 64
    factor: int = 4
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
    def coarse_n(self) -> int:
        return self.n // self.factor

    @property
    def k_cut(self) -> int:
        """The coarse grid's largest resolved wavenumber, n / (2 factor)."""
        return self.coarse_n // 2

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


def generate_vorticity(
    key: PRNGKeyArray, config: KolmogorovSR, viscosity: float, n_trajectories: int
) -> Float[np.ndarray, "s x y 1"]:
    """Vorticity snapshots (n_trajectories * snapshots, n, n, 1) at one viscosity after spin-up.

    All viscosities share one compiled solver (the viscosity is a traced leaf of the problem).
    """
    generator = config_lib.build(config.dataset(viscosity), "KolmogorovSR.dataset")
    traj = generator.generate(key, n_trajectories).fields["u"]
    return traj.reshape(-1, config.n, config.n, 1).astype(np.float32)


def coarsen(x: Field, factor: int) -> Float[Array, "b xc yc c"]:
    """Point subsampling ``x[:, ::factor, ::factor]`` (FLEX's coarse data: no anti-alias filter)."""
    return jnp.asarray(x)[:, ::factor, ::factor]


def conditioning(
    x: Field, viscosity: Float[Array | np.ndarray, " b"], config: KolmogorovSR
) -> dict[str, Array]:
    """The network's cond: the upsampled coarse field and the parameter ``reference_viscosity / nu``.

    The field is `periodic_bicubic` of ``x[::factor, ::factor]``: the base of the residual and
    the task encoder's input (FLEX's task encoder also reads the upsampled field).
    """
    nu = jnp.asarray(viscosity, jnp.float32)
    return {
        "field": periodic_bicubic(coarsen(x, config.factor), config.factor),
        "params": (config.reference_viscosity / nu)[:, None],
    }


def periodic_bicubic(coarse: Float[Array, "b xc yc c"], factor: int) -> Float[Array, "b x y c"]:
    """Bicubic (Keys, a = -0.5) upsampling aligned with point subsampling, periodic wrap.

    Coarse point i sits on fine point ``factor * i``, so the upsampled field passes through the
    coarse samples. (`jax.image.resize`, and so `upsample_base`, use half-pixel centres: coarse
    point i lands on ``factor * i + (factor - 1) / 2``, a 1.5-point shift for x4 subsampling,
    and clamp at the edges.)
    """
    pad = 2
    padded = jnp.pad(coarse, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="wrap")
    n = (coarse.shape[1] * factor, coarse.shape[2] * factor)
    # scale_and_translate samples input (out + 0.5 - t) / s - 0.5; want out = f i <-> pad + i.
    shift = 0.5 - factor * (pad + 0.5)
    return jax.image.scale_and_translate(
        padded,
        (coarse.shape[0], *n, coarse.shape[-1]),
        (1, 2),
        jnp.full((2,), factor, jnp.float32),
        jnp.full((2,), shift, jnp.float32),
        "cubic",
        antialias=False,
    )


def residual_model(config: KolmogorovSR) -> Residual:
    """Residual diffusion around ``cond["field"]``, the upsampled coarse field (`conditioning`)."""
    return Residual(lambda cond: cond["field"])


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


def make_loss(model: FLEX, residual: Residual, schedule: CosineVP, loss: str = "l1") -> Callable:
    """``loss_fn(params, (x, cond), key) -> (loss, {})`` for `make_train_step`."""

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


def train_superres(
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
    log: Callable[[int, float], None] | None = None,
) -> tuple[TrainState, list[float]]:
    """Train `model` on the residuals of (x, cond) with AdamW (warm-up + cosine), clip 1.

    Returns the final state (its `eval_params` are the EMA) and the loss of every step.
    """
    x = jnp.asarray(x)
    key_init, key_state, key_batches = jax.random.split(key, 3)
    n = x.shape[0]
    first = jax.tree.map(lambda a: a[:1], cond)
    params = jax.jit(model.init)(key_init, x[:1], jnp.zeros((1,), x.dtype), first)
    warmup = max(1, steps // 20)
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=1e-5))
    state = TrainState.create(params, optimizer, key_state, ema=ema_decay is not None)
    step = make_train_step(make_loss(model, residual, schedule), optimizer, ema_decay)
    losses = []
    for i in range(steps):
        idx = jax.random.choice(jax.random.fold_in(key_batches, i), n, (batch_size,), replace=False)
        batch = (x[idx], jax.tree.map(lambda a, idx=idx: a[idx], cond))
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        if log is not None:
            log(i, losses[-1])
    return state, losses


def sample_superres(
    model: FLEX,
    params: Any,
    cond: Mapping[str, Array],
    key: PRNGKeyArray,
    *,
    residual: Residual,
    n_steps: int,
    n_members: int = 1,
    schedule: CosineVP = CosineVP(),  # noqa: B008 (frozen)
) -> Float[Array, "m b x y c"]:
    """`n_members` DDIM (eta = 0) super-resolutions per condition, base + sampled residual."""
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
    )


def evaluate_superres(
    model: FLEX,
    params: Any,
    splits: Mapping[str, tuple[Field, Mapping[str, Array]]],
    key: PRNGKeyArray,
    config: KolmogorovSR,
    *,
    steps: Sequence[int] = (2, 16),
    n_members: int = 8,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of FLEX-<n>-step ensembles and of the bicubic base on every split.

    Args:
        splits: name (e.g. "nu=0.002", "heldout nu=0.003") -> (normalised x, cond).
        steps: DDIM step counts to evaluate.
        n_members: ensemble members per condition (metrics of one draw and of the mean, CRPS,
            spread/skill, pull; see `sciml.diffusion.evaluation.ensemble_metrics`).
    Returns:
        ``{split: {"bicubic": {...}, "flex_2": {...}, ...}}``, all in normalised units except
        the dimensionless ones. The data range for PSNR/SSIM is each target's own range.
    """
    residual = residual_model(config)
    # The band above the coarse cut-off, up to the solver's 2/3 de-aliasing limit: above n/3 the
    # data hold no energy and any ratio of spectra there is noise.
    band = {"k_min": config.k_cut, "k_max": config.n // 3}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, (name, (x, cond)) in enumerate(splits.items()):
        x = jnp.asarray(x)
        row = {"bicubic": deterministic_metrics(residual.base_fn(cond), x, **band)}
        for n_steps in steps:
            samples = sample_superres(
                model,
                params,
                cond,
                jax.random.fold_in(key, i),
                residual=residual,
                n_steps=n_steps,
                n_members=n_members,
            )
            row[f"flex_{n_steps}"] = ensemble_metrics(samples, x, **band)
        row["variance"] = residual_variance(x, cond, residual)
        out[name] = row
    return out


def checkpoint_metadata(model: FLEX, task: KolmogorovSR, scale: float) -> dict[str, Any]:
    """Checkpoint metadata of a FLEX trained on `task` with fields divided by `scale`: what
    `sciml.pretrained.load` rebuilds the model from and `sample_report` rebuilds the task from."""
    n = task.n
    return {
        "checkpoint_format": 1,
        "model": config_lib.component_spec(model),
        "data": {
            "fields": ["vorticity"],
            "n_spatial_dims": 2,
            "spatial_shape": [n, n],
            "in_channels": 1,
            "out_channels": 1,
            "mean": [0.0],
            "std": [scale],
            "coarse_shape": [task.coarse_n, task.coarse_n],
        },
        # the arguments of model.init(key, x_t, t, cond), as shapes
        "init_inputs": [[1, n, n, 1], [1], {"field": [1, n, n, 1], "params": [1, 1]}],
        "config": {"task": dataclasses.asdict(task)},
    }


def task_from_metadata(meta: Mapping[str, Any]) -> KolmogorovSR:
    """The `KolmogorovSR` a checkpoint was trained on (stored under metadata config.task)."""
    try:
        raw = meta["config"]["task"]
    except (KeyError, TypeError):
        raise ValueError(
            "this checkpoint's metadata has no config.task: it was not written by"
            " scripts/flex_superres.py, so there is no super-resolution task to sample"
        ) from None
    names = {f.name for f in dataclasses.fields(KolmogorovSR)}
    return KolmogorovSR(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
    )


def sample_report(
    model: FLEX,
    params: Any,
    meta: Mapping[str, Any],
    out_dir: str | Path,
    key: PRNGKeyArray,
    *,
    n_trajectories: int = 1,
    n_members: int = 8,
    n_steps: int = 2,
    viscosity: float | None = None,
) -> dict[str, Any]:
    """Draw super-resolution ensembles from a trained FLEX on fresh data, score and plot them.

    Generates `n_trajectories` trajectories (`snapshots` each) of the checkpoint's task at
    `viscosity` (default: the held-out one), samples `n_members` DDIM (`n_steps`) members per
    snapshot and writes to `out_dir`: samples.npz (truth, base, members (m, b, n, n, 1), in the
    data's physical units), ensemble_<i>.png for the first snapshots (truth, bicubic base,
    members, mean, std map), spectra.png, pull.png and report.json (metrics of the bicubic base
    and of the ensemble in normalised units, as `evaluate_superres`).
    """
    task = task_from_metadata(meta)
    nu = task.test_viscosities[0] if viscosity is None else float(viscosity)
    scale = float(meta["data"]["std"][0])
    k_data, k_sample = jax.random.split(key)
    truth = generate_vorticity(k_data, task, nu, n_trajectories) / scale
    cond = conditioning(truth, np.full((len(truth),), nu), task)
    residual = residual_model(task)
    samples = sample_superres(
        model, params, cond, k_sample, residual=residual, n_steps=n_steps, n_members=n_members
    )
    base = np.asarray(residual.base_fn(cond))
    samples = np.asarray(samples)
    band = {"k_min": task.k_cut, "k_max": task.n // 3}
    report = {
        "viscosity": nu,
        "held_out": nu not in task.train_viscosities,
        "n_conditions": len(truth),
        "n_members": n_members,
        "n_steps": n_steps,
        "metrics": {
            "bicubic": deterministic_metrics(base, truth, **band),
            f"flex_{n_steps}": ensemble_metrics(samples, truth, **band),
        },
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "samples.tmp.npz"
    np.savez(tmp, truth=truth * scale, base=base * scale, members=samples * scale, viscosity=nu)
    tmp.replace(out / "samples.npz")
    for i in range(min(3, len(truth))):
        plot_ensemble(
            out / f"ensemble_{i}.png",
            samples[:, i],
            truth[i],
            base[i],
            title=f"nu = {nu:g}, FLEX {n_steps} DDIM steps",
        )
    spectra = {
        "truth": energy_spectrum(truth, 2),
        "bicubic": energy_spectrum(base, 2),
        "FLEX member": energy_spectrum(samples[0], 2),
        "FLEX ensemble mean": energy_spectrum(samples.mean(0), 2),
    }
    plot_spectra(
        out / "spectra.png", spectra, title=f"nu = {nu:g}; coarse cut-off k = {task.k_cut}"
    )
    if n_members > 1:
        plot_pull_histogram(out / "pull.png", np.asarray(pulls(samples, truth)))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
