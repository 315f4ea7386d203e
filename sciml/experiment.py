"""Run an `ExperimentConfig`: make the data, train, evaluate, write the report.

Domain components (generator, model) are built from their config's ``type`` import path, so this
module imports no domain statically.
"""

import json
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import sciml
from sciml import config as config_lib
from sciml import metrics as metrics_lib
from sciml import pretrained
from sciml.config import DataConfig, ExperimentConfig, TrainConfig
from sciml.data import (
    MultiResolutionSchedule,
    WindowDataset,
    assign_resolutions,
    batch_indices,
    eval_batches,
    generate_dataset,
    read_stats,
    read_well,
    shard_batch,
    split_path,
)
from sciml.errors import ConfigError, DatasetError, ShapeMismatchError
from sciml.fields import energy_spectrum, lowpass
from sciml.losses import LOSSES
from sciml.plotting import (
    plot_prediction,
    plot_predictive_interval,
    plot_resolution_sweep,
    plot_spectra,
    plot_spectral_error_ratio,
    plot_training_curves,
)
from sciml.probabilistic import (
    GaussianField,
    front_errors,
    front_threshold,
    gaussian_loss,
    predictive_marginals,
    probabilistic_metrics,
    projections_for,
)
from sciml.train import (
    Checkpointer,
    TrainState,
    fit,
    make_mesh,
    make_optimizer,
    make_train_step,
    read_metrics,
    replicate,
)


def dataset_name(data: DataConfig) -> str:
    return Path(data.path).name


def prepare_data(cfg: ExperimentConfig) -> Path:
    """The dataset directory of `cfg`, generated first if it has a generator and is not there yet."""
    root = Path(cfg.data.path)
    if cfg.data.generator is None:
        if not split_path(root, "train", dataset_name(cfg.data)).exists():
            raise DatasetError(
                f"no dataset at {root} and no data.generator to make one; set data.path to a dataset"
                " directory (data/<split>/<name>.hdf5 + stats.yaml) or add a data.generator section"
            )
        return root
    generator = config_lib.build(cfg.data.generator, where="data.generator")
    sizes = {"train": cfg.data.n_train, "valid": cfg.data.n_valid, "test": cfg.data.n_test}
    return generate_dataset(
        generator,
        cfg.data.generator,
        root,
        name=dataset_name(cfg.data),
        sizes=sizes,
        seed=cfg.seed,
        chunk=cfg.data.chunk,
        resolutions=cfg.data.resolutions,
    )


def load_split(
    data: DataConfig,
    split: str,
    root: str | Path | None = None,
    stats_root: str | Path | None = None,
) -> WindowDataset:
    """Windows of one split of the dataset described by `data`, normalised by its stats.

    `stats_root` (default `root`) names the dataset whose stats normalise: copies of one dataset at
    several resolutions share the primary's, so a model sees the same normalisation on each.
    """
    root = Path(root or data.path)
    wanted = None if data.fields is None else data.fields + (data.target_fields or [])
    traj, _ = read_well(split_path(root, split, dataset_name(data)), wanted)
    stats = read_stats(Path(stats_root or root) / "stats.yaml") if data.normalize else None
    return WindowDataset(
        traj,
        fields=data.fields,
        target_fields=data.target_fields,
        input_steps=data.input_steps,
        output_steps=data.output_steps,
        dt_stride=data.dt_stride,
        stats=stats,
    )


def available_resolutions(data: DataConfig, root: str | Path | None = None) -> dict[int, Path]:
    """Resolution (points along the first axis) -> dataset directory, for a dataset and its copies."""
    root = Path(root or data.path)
    name = dataset_name(data)
    found = {}
    for candidate in [root, *sorted(root.glob("res*"))]:
        path = split_path(candidate, "train", name)
        if path.exists():
            traj, _ = read_well(path, data.fields)
            found[int(next(iter(traj.fields.values())).shape[2])] = candidate
    return dict(sorted(found.items()))


def multiresolution_batches(cfg: ExperimentConfig, mesh) -> tuple[Any, int]:
    """``batch_for_step`` of the `data.train_mix` protocol, and the number of training samples."""
    roots = available_resolutions(cfg.data)
    missing = sorted(set(cfg.data.train_mix) - set(roots))
    if missing:
        raise DatasetError(
            f"data.train_mix asks for resolutions {missing}, the dataset has {sorted(roots)};"
            " add them to data.resolutions and generate again"
        )
    sets = {
        r: load_split(cfg.data, "train", roots[r], stats_root=cfg.data.path)
        for r in cfg.data.train_mix
    }
    n = len(next(iter(sets.values())))
    schedule = MultiResolutionSchedule(
        assign_resolutions(n, cfg.data.train_mix, cfg.seed), cfg.train.batch_size, cfg.seed
    )

    def batch_for_step(step: int):
        resolution, indices = schedule.batch(step)
        return shard_batch(sets[resolution].get_batch(indices), mesh)

    return batch_for_step, n


def data_spec(data: DataConfig, dataset: WindowDataset) -> dict[str, Any]:
    """What a checkpoint must remember about its data to be applied to new inputs."""
    x, y = dataset[0]
    return {
        "fields": dataset.fields,
        "target_fields": dataset.target_fields,
        "input_steps": data.input_steps,
        "output_steps": data.output_steps,
        "dt_stride": data.dt_stride,
        "n_spatial_dims": dataset.ndim,
        "spatial_shape": list(dataset.spatial_shape),
        "in_channels": int(x.shape[-1]),
        "out_channels": int(y.shape[-1]),
        "mean": dataset.mean.tolist(),
        "std": dataset.std.tolist(),
    }


def check_compatible(
    model: nn.Module, params: Any, x: np.ndarray, y: np.ndarray, where: str
) -> None:
    """Raise `ShapeMismatchError` unless ``model.apply(params, x)`` has the shape of `y`."""
    try:
        out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct(x.shape, jnp.float32))
    except Exception as err:  # flax/jax shape errors come in many types
        raise ShapeMismatchError(
            f"{where}: the model cannot take inputs of shape {x.shape[1:]} ({type(err).__name__});"
            " the checkpoint was trained on data with another number of channels or dimensions"
        ) from None
    out = out.mean if isinstance(out, GaussianField) else out
    if out.shape != y.shape:
        raise ShapeMismatchError(
            f"{where}: the model outputs {out.shape[1:]} per sample but the dataset targets are"
            f" {y.shape[1:]}; set model.out_channels={y.shape[-1]} (and check data.fields/"
            "data.output_steps)"
        )


def train(cfg: ExperimentConfig) -> Path:
    """Generate data if needed, train with resume, evaluate on the test split; return the run dir."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_lib.dump(cfg))
    prepare_data(cfg)
    train_set = load_split(cfg.data, "train")
    valid_set = load_split(cfg.data, "valid")

    model = config_lib.build(cfg.model, where="model")
    mesh = make_mesh()
    init_key, state_key = jax.random.split(jax.random.key(cfg.seed))
    x0, y0 = train_set.get_batch(np.arange(1))
    params = model.init(init_key, jnp.asarray(x0))
    check_compatible(model, params, x0, y0, where="model")
    optimizer = make_optimizer(cfg.train)
    state = replicate(
        TrainState.create(params, optimizer, state_key, ema=cfg.train.ema_decay is not None), mesh
    )

    loss_fn = training_loss(cfg, model, train_set)

    metadata = {
        "checkpoint_format": pretrained.FORMAT,
        "sciml_version": sciml.__version__,
        "model": cfg.model,
        "data": data_spec(cfg.data, train_set),
        "config": cfg.model_dump(mode="json"),
    }
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
    predict = jax.jit(point_predictor(model, cfg.train))
    if cfg.data.train_mix:
        batch_for_step, _ = multiresolution_batches(cfg, mesh)
    else:

        def batch_for_step(step: int):
            indices = batch_indices(len(train_set), cfg.train.batch_size, cfg.seed, step)
            return shard_batch(train_set.get_batch(indices), mesh)

    try:
        with jax.set_mesh(mesh):
            start = time.perf_counter()
            fit(
                state,
                make_train_step(loss_fn, optimizer, cfg.train.ema_decay),
                batch_for_step,
                steps=cfg.train.steps,
                run_dir=run_dir,
                checkpointer=checkpointer,
                metadata=metadata,
                evaluate=lambda s: evaluate_params(
                    predict, s.eval_params, valid_set, cfg.evaluate.batch_size, mesh
                ),
                eval_every=cfg.train.eval_every,
                checkpoint_every=cfg.train.checkpoint_every,
                log_every=cfg.train.log_every,
            )
            train_seconds = time.perf_counter() - start
    finally:
        checkpointer.close()
    write_report(
        run_dir, split=cfg.evaluate.split, extra={"train_seconds_this_session": train_seconds}
    )
    return run_dir


def training_loss(cfg: ExperimentConfig, model: nn.Module, dataset: WindowDataset):
    """``loss_fn(params, batch, key) -> (loss, aux)`` from `cfg.train`: data loss, optional
    band limit and optional physics (PINO) term computed in physical units."""
    loss_of, train = LOSSES.get(cfg.train.loss), cfg.train
    physics = None
    if train.physics_weight > 0:
        physics = config_lib.build(cfg.data.generator or {}, where="data.generator")
        if not hasattr(physics, "physics_residual"):
            raise ConfigError(
                f"train.physics_weight > 0 needs a generator with a physics residual;"
                f" {cfg.data.generator.get('type')} has none (set train.physics_weight=0)"
            )

    def loss_fn(params, batch, key):
        x, y = batch
        if train.band_limit is not None:
            x, y = (lowpass(v, train.band_limit, dataset.ndim) for v in (x, y))
        pred = model.apply(params, x)
        if isinstance(pred, GaussianField) != (train.loss in ("crps", "nll")):
            raise ConfigError(
                "train.loss crps / nll go with a Gaussian head (sciml.operators."
                "ProbabilisticOperator) and the other losses with point predictions;"
                f" got train.loss={train.loss} for {type(model).__name__}"
            )
        if isinstance(pred, GaussianField):
            loss = gaussian_loss(
                pred, y, loss=train.loss, projection=train.projection, constraint=train.constraint
            )
            pred = pred.mean
        else:
            loss = loss_of(pred, y)
        aux = {}
        if physics is not None:
            aux["physics"] = physics.physics_residual(
                dataset.denormalize_input(x), dataset.denormalize(pred)
            )
            aux["data_loss"], loss = loss, loss + train.physics_weight * aux["physics"]
        return loss, aux

    return loss_fn


def point_predictor(model: nn.Module, train: TrainConfig):
    """``(params, x, y) -> prediction``: the model's output, or for a Gaussian head its mean under
    the projection it trained with (`train.projection`; `y` supplies only the conserved totals).

    The projected mean, not the head's: a head trained through the projection is free along the
    constrained directions, and its raw mean drifts there.
    """

    def predict(params, x, y):
        out = model.apply(params, x)
        if not isinstance(out, GaussianField):
            return out
        mean, _ = predictive_marginals(out, y, train.projection, constraint=train.constraint)
        return mean

    return predict


def probabilistic_report(
    model: nn.Module,
    params: Any,
    dataset: WindowDataset,
    exp: ExperimentConfig,
    run_dir: Path,
    split: str,
    n_plots: int,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Report rows of a Gaussian-head model (`evaluate_probabilistic`) plus, for 1D outputs, the
    front-position error (porous-medium family) and 90%-interval plots of the first samples under
    the projection the model trained with. Returns (rows, figure names)."""
    interval_figures: list[str] = []
    probabilistic = evaluate_probabilistic(model, params, dataset, exp)
    # 1D outputs: the front position error (fronts of the porous-medium family) and the
    # predictive interval of the first samples, under the projection the model trained with.
    noise, size = exp.evaluate.probconserv_noise, exp.evaluate.batch_size
    constraint, projections = exp.train.constraint, projections_for(exp.train.constraint)
    reps = dataset.get_batch(np.arange(1))[1].shape[-1] // len(dataset.out_columns)
    scale = np.tile(dataset.std[dataset.out_columns], reps)
    offset = np.tile(dataset.mean[dataset.out_columns], reps)
    generator = exp.data.generator or {}
    threshold = None
    if dataset.ndim == 1 and str(generator.get("type", "")).endswith("PorousMediumDataset"):
        threshold = front_threshold(
            generator.get("kind", "porous_medium"), generator.get("parameter_range")
        )
    if threshold is not None:
        batch_fronts = jax.jit(
            lambda p, x, y: front_errors(
                model.apply(p, x),
                y,
                threshold,
                scale,
                offset,
                noise_variance=noise,
                constraint=constraint,
            )
        )
        sums = dict.fromkeys(projections, 0.0)
        for start in range(0, len(dataset), size):
            indices = np.arange(start, min(start + size, len(dataset)))
            xb, yb = dataset.get_batch(indices)
            rows = jax.device_get(batch_fronts(params, jnp.asarray(xb), jnp.asarray(yb)))
            for p, value in rows.items():
                sums[p] += float(value) * len(indices)
        for p in projections:
            probabilistic[p]["front_error_cells"] = sums[p] / len(dataset)
    if dataset.ndim == 1 and n_plots > 0:
        shown = "dppl" if exp.train.projection == "dppl" else "none"
        xb, yb = dataset.get_batch(np.arange(min(n_plots, len(dataset))))
        mean, std = jax.jit(
            lambda p, x, y: predictive_marginals(
                model.apply(p, x), y, shown, noise_variance=noise, constraint=constraint
            )
        )(params, jnp.asarray(xb), jnp.asarray(yb))
        mean, std = dataset.denormalize(np.asarray(mean)), np.asarray(std) * scale
        for i, truth_i in enumerate(dataset.denormalize(yb)):
            name = f"interval_{shown}_{split}_{i}.png"
            plot_predictive_interval(
                run_dir / name,
                mean[i],
                std[i],
                truth_i,
                dataset.denormalize_input(xb[i]),
                title=f"{exp.name}: {split} sample {i}, projection {shown}, 90% interval",
            )
            interval_figures.append(name)
    return probabilistic, interval_figures


def evaluate_probabilistic(
    model: nn.Module, params: Any, dataset: WindowDataset, exp: ExperimentConfig
) -> dict[str, dict[str, float]]:
    """Sample-weighted probabilistic metrics of a Gaussian-head model under every projection.

    Rows: "none" (the head as is), "dppl" (hard conservation projection; post hoc unless the
    model was trained with it) and, for the linear mass constraint, "probconserv" (soft update,
    `evaluate.probconserv_noise`). The constraint is `train.constraint`.
    """
    scale = dataset.std[dataset.out_columns]
    scale = np.tile(scale, dataset.get_batch(np.arange(1))[1].shape[-1] // len(scale))

    @jax.jit
    def batch_metrics(params, x, y):
        field = model.apply(params, x)
        return {
            p: probabilistic_metrics(
                field,
                y,
                p,
                scale,
                noise_variance=exp.evaluate.probconserv_noise,
                constraint=exp.train.constraint,
            )
            for p in projections_for(exp.train.constraint)
        }

    totals: dict[str, dict[str, float]] = {p: {} for p in projections_for(exp.train.constraint)}
    size = exp.evaluate.batch_size
    for start in range(0, len(dataset), size):
        indices = np.arange(start, min(start + size, len(dataset)))
        x, y = dataset.get_batch(indices)
        rows = jax.device_get(batch_metrics(params, jnp.asarray(x), jnp.asarray(y)))
        for p, metrics in rows.items():
            for name, value in metrics.items():
                if name == "constraint_error":
                    totals[p][name] = max(totals[p].get(name, 0.0), float(value))
                else:
                    totals[p][name] = totals[p].get(name, 0.0) + float(value) * len(indices)
    count = len(dataset)
    return {
        p: {k: (v if k == "constraint_error" else v / count) for k, v in m.items()}
        for p, m in totals.items()
    }


def evaluate_params(
    predict, params: Any, dataset: WindowDataset, batch_size: int, mesh
) -> dict[str, float]:
    """Sample-weighted means of every `sciml.metrics` metric over `dataset`, in physical units."""
    totals: dict[str, float] = {}
    count = 0
    for x, y, n_valid in eval_batches(dataset, batch_size, mesh):
        pred = dataset.denormalize(np.asarray(predict(params, x, y))[:n_valid])
        true = dataset.denormalize(np.asarray(y)[:n_valid])
        for name, value in metrics_lib.all_metrics(jnp.asarray(pred), jnp.asarray(true)).items():
            value = float(value)
            if name == "max_error":
                totals[name] = max(totals.get(name, 0.0), value)
            else:
                totals[name] = totals.get(name, 0.0) + value * n_valid
        count += n_valid
    return {k: (v if k == "max_error" else v / count) for k, v in totals.items()}


def write_report(
    run_dir: str | Path,
    *,
    split: str = "test",
    checkpoint: str | Path | None = None,
    data_root: str | Path | None = None,
    n_plots: int = 3,
    extra: dict | None = None,
) -> dict:
    """Evaluate a checkpoint (default: the run's best) on `split`; write report.json and PNGs."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model, params, meta = pretrained.load(checkpoint or run_dir)
    exp = ExperimentConfig.model_validate(meta["config"])
    dataset = load_split(exp.data, split, data_root)
    spec = meta["data"]
    if (
        dataset.channels * spec["input_steps"] != spec["in_channels"]
        or dataset.ndim != spec["n_spatial_dims"]
    ):
        raise ShapeMismatchError(
            f"checkpoint expects {spec['in_channels']} input channels on {spec['n_spatial_dims']}-D grids,"
            f" the dataset gives {dataset.channels * spec['input_steps']} on {dataset.ndim}-D grids;"
            " evaluate it on data with the fields it was trained on"
        )
    mesh = make_mesh()
    predict = jax.jit(point_predictor(model, exp.train))
    with jax.set_mesh(mesh):
        params = replicate(params, mesh)
        results = evaluate_params(predict, params, dataset, exp.evaluate.batch_size, mesh)
        probabilistic, interval_figures = None, []
        if isinstance(
            jax.eval_shape(model.apply, params, dataset.get_batch(np.arange(1))[0]), GaussianField
        ):
            probabilistic, interval_figures = probabilistic_report(
                model, params, dataset, exp, run_dir, split, n_plots
            )
        x, y = dataset.get_batch(np.arange(min(len(dataset), 64)))
        pred = dataset.denormalize(np.asarray(predict(params, jnp.asarray(x), jnp.asarray(y))))
        sweep, error_ratios = {}, {}
        roots = available_resolutions(exp.data, data_root)
        if len(roots) > 1:  # the same samples at several resolutions: how does the model hold up?
            for n, root in roots.items():
                at_n = load_split(exp.data, split, root, stats_root=data_root or exp.data.path)
                sweep[n] = evaluate_params(predict, params, at_n, exp.evaluate.batch_size, mesh)
                diagnostics, error_ratios[n] = _aliasing_diagnostics(predict, params, at_n, pred)
                sweep[n].update(diagnostics)
    true = dataset.denormalize(y)
    figures = [*interval_figures]
    for i in range(min(n_plots, len(x))):
        path = run_dir / f"prediction_{split}_{i}.png"
        plot_prediction(
            path,
            pred[i],
            true[i],
            dataset.denormalize_input(x[i]),
            title=f"{exp.name}: {split} sample {i}",
        )
        figures.append(path.name)
    spectra = {
        "truth": energy_spectrum(true, dataset.ndim),
        "prediction": energy_spectrum(pred, dataset.ndim),
    }
    spectra["error"] = energy_spectrum(pred - true, dataset.ndim)
    plot_spectra(
        run_dir / f"spectrum_{split}.png", spectra, title=f"{exp.name}: energy spectra ({split})"
    )
    figures.append(f"spectrum_{split}.png")
    if sweep:
        plot_resolution_sweep(
            run_dir / f"resolution_sweep_{split}.png",
            {n: m["rel_l2"] for n, m in sweep.items()},
            trained_at=meta["data"]["spatial_shape"][0],
            title=f"{exp.name}: relative L2 across resolutions ({split})",
        )
        figures.append(f"resolution_sweep_{split}.png")
        plot_spectral_error_ratio(
            run_dir / f"aliasing_{split}.png",
            error_ratios,
            train_nyquist=min(meta["data"]["spatial_shape"]) // 2,
            title=f"{exp.name}: error / truth energy per shell ({split})",
        )
        figures.append(f"aliasing_{split}.png")
    records = read_metrics(run_dir)
    if records:
        plot_training_curves(run_dir / "training_curves.png", records)
        figures.append("training_curves.png")
    report = {
        "name": exp.name,
        "split": split,
        "n_samples": len(dataset),
        "checkpoint_step": meta.get("step"),
        "metrics": results,
        "resolution_sweep": {str(n): m for n, m in sweep.items()},
        **({"probabilistic": probabilistic} if probabilistic else {}),
        "figures": figures,
        "sciml_version": sciml.__version__,
        **(extra or {}),
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _aliasing_diagnostics(
    predict, params: Any, dataset: WindowDataset, reference: np.ndarray
) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """Aliasing diagnostics of a model on `dataset`'s grid, for the report's resolution sweep.

    `reference` holds the predictions (physical units) for the same first samples on the grid the
    report is made at. Returns ``({error_ratio_top_octave, consistency_rel_l2}, (k, ratio))``:
    the mean error/truth energy ratio over the top octave of shells (k > k_max / 2), the relative
    L2 between both predictions on the coarser grid, and the whole ratio spectrum.
    """
    x, y = dataset.get_batch(np.arange(min(len(dataset), len(reference))))
    pred = dataset.denormalize(np.asarray(predict(params, jnp.asarray(x), jnp.asarray(y))))
    k, ratio = metrics_lib.spectral_error_ratio(pred, dataset.denormalize(y))
    summary = {
        "error_ratio_top_octave": float(np.mean(ratio[k > k[-1] // 2])),
        "consistency_rel_l2": metrics_lib.resolution_consistency(pred, reference[: len(pred)]),
    }
    return summary, (k, ratio)


def predict_split(
    checkpoint: str | Path, split: str, n: int, data_root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, model outputs and targets (physical units) of the first `n` windows of `split`."""
    model, params, meta = pretrained.load(checkpoint)
    exp = ExperimentConfig.model_validate(meta["config"])
    dataset = load_split(exp.data, split, data_root)
    x, y = dataset.get_batch(np.arange(min(n, len(dataset))))
    check_compatible(model, params, x, y, where=f"checkpoint {checkpoint}")
    predict = jax.jit(point_predictor(model, exp.train))
    out = np.asarray(predict(params, jnp.asarray(x), jnp.asarray(y)))
    return dataset.denormalize_input(x), dataset.denormalize(out), dataset.denormalize(y)
