"""NeurDE training from a config: the teacher (cached), stage 1, stage 2, evaluation, report.

`NeurDEConfig` is the schema of ``configs/neurde_*.yaml`` (``task: neurde``); `train_neurde` runs
an experiment end to end (``sciml train``) and `generate_neurde_teacher` only its teacher data
(``sciml generate``).
"""

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sciml.pde.lbm.neurde import (
    MACRO_FIELDS,
    NeurDE,
    PyTree,
    count_params,
    equilibrium_loss,
    rollout_loss,
)
from sciml.pde.lbm.neurde_eval import evaluate_rollout, plot_profiles
from sciml.pde.lbm.teacher import cached_teacher, load_teacher, teacher_path, teacher_spec

# ---------------------------------------------------------------------------- configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherConfig(_Strict):
    """The teacher: case, grid, horizon; cached as a Well file under `path`.

    ``case``: Sod case 1 or 2 (`sod_initial_state`; ``nx`` 3001, ``ny`` 1), or ``cylinder``, the
    Mach 1.8 flow past a cylinder of `radius` cells (`cylinder_initial_state`; 500 x 300, r 20).
    """

    path: str
    case: Literal[1, 2, "cylinder"] = 2
    nx: int = Field(3001, ge=8)
    ny: int = Field(1, ge=1)
    n_steps: int = Field(1000, ge=2)
    conserve_energy: bool = False
    radius: float | None = Field(None, gt=0)  # cylinder only (default 20)

    @model_validator(mode="after")
    def _radius_only_for_the_cylinder(self) -> "TeacherConfig":
        if self.radius is not None and self.case != "cylinder":
            raise ValueError("teacher.radius is a setting of the cylinder teacher (case: cylinder)")
        if self.case == "cylinder" and self.ny < 3:
            raise ValueError("the cylinder teacher needs ny >= 3 (its y walls are zero-gradient)")
        return self

    def spec(self) -> dict:
        """The `teacher_spec` that identifies this teacher's cached file."""
        return teacher_spec(
            self.case, self.nx, self.ny, self.n_steps, self.conserve_energy, radius=self.radius
        )


class NetworkConfig(_Strict):
    """The network, and how the solver uses it (`neural_step`'s `moment_iterations`)."""

    width: int = Field(64, ge=1)
    depth: int = Field(4, ge=1)
    moment_iterations: int = Field(0, ge=0)  # 0: the paper


class Stage1Config(_Strict):
    """Supervised ``g^eq`` regression: AdamW, clipping, cosine annealing with warm restarts."""

    n_snapshots: int = Field(500, ge=1)  # teacher steps 0 .. n_snapshots - 1
    steps: int = Field(48000, ge=1)
    batch_size: int = Field(32, ge=1)  # snapshots per update
    lr: float = Field(1e-4, gt=0)
    min_lr: float = Field(5e-6, ge=0)
    restart_period: int = Field(1500, ge=1)
    restart_mult: int = Field(2, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(1000, ge=1)


class Stage2Config(_Strict):
    """Rollout training: windows of `rollout` steps, one-cycle learning rate."""

    steps: int = Field(1000, ge=0)
    rollout: int = Field(25, ge=1)
    gradient: Literal["stop_gradient", "bptt"] = "stop_gradient"
    lr: float = Field(1e-4, gt=0)  # peak of the one-cycle schedule
    pct_start: float = Field(0.3, gt=0, lt=1)
    div_factor: float = Field(10.0, gt=0)
    final_div_factor: float = Field(100.0, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(100, ge=1)


class EvaluationConfig(_Strict):
    start: int = Field(500, ge=0)
    n_steps: int = Field(500, ge=1)
    plot_steps: list[int] = [600, 800, 1000]


class NeurDEConfig(_Strict):
    """A NeurDE experiment (``configs/neurde_sod2.yaml``)."""

    name: str
    seed: int = 0
    run_dir: str
    dtype: Literal["float32", "float64"] = "float32"
    teacher: TeacherConfig
    model: NetworkConfig = NetworkConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    evaluate: EvaluationConfig = EvaluationConfig()


def _check(cfg: NeurDEConfig) -> None:
    from sciml.errors import ConfigError

    n = cfg.teacher.n_steps
    problems = []
    if cfg.stage1.n_snapshots > n:
        problems.append(f"stage1.n_snapshots={cfg.stage1.n_snapshots} > teacher.n_steps={n}")
    if cfg.stage1.batch_size > cfg.stage1.n_snapshots:
        problems.append("stage1.batch_size exceeds stage1.n_snapshots")
    if cfg.stage2.steps and cfg.stage2.rollout > cfg.stage1.n_snapshots:
        problems.append("stage2.rollout exceeds stage1.n_snapshots (the training steps)")
    if cfg.evaluate.start + cfg.evaluate.n_steps > n:
        problems.append(f"evaluate.start + evaluate.n_steps exceeds teacher.n_steps={n}")
    end = cfg.evaluate.start + cfg.evaluate.n_steps
    if any(not cfg.evaluate.start <= t <= end for t in cfg.evaluate.plot_steps):
        problems.append(f"evaluate.plot_steps must lie in [{cfg.evaluate.start}, {end}]")
    if problems:
        raise ConfigError("; ".join(problems))


def generate_neurde_teacher(config: dict[str, Any]) -> tuple[Path, bool]:
    """Write the teacher of a NeurDE config (``sciml generate``) unless it is already cached.

    The file is the one `train_neurde` reads (`teacher_path` of ``teacher.path``): pre-collision
    populations, moments and Levermore multipliers of every step in the Well schema.

    Args:
        config: a mapping validated as `NeurDEConfig`.

    Returns:
        ``(path, generated)``: False when a file made with the same settings was there.

    Raises:
        DatasetError: a file made with other settings is in the way.
    """
    from sciml.config import validate

    cfg: NeurDEConfig = validate(NeurDEConfig, dict(config), where="neurde config")
    spec = cfg.teacher.spec()  # the training sections need not fit this teacher yet
    if cached_teacher(cfg.teacher.path, spec) is None:
        load_teacher(cfg.teacher.path, spec, progress=True)
        return teacher_path(cfg.teacher.path, spec), True
    return teacher_path(cfg.teacher.path, spec), False


# ---------------------------------------------------------------------------- training


def warm_restart_schedule(
    peak: float, minimum: float, period: int, mult: int, total_steps: int
) -> optax.Schedule:
    """Cosine annealing from `peak` to `minimum` restarted after `period`, `period` x `mult`, ...

    The schedule of PyTorch's ``CosineAnnealingWarmRestarts(T_0=period, T_mult=mult,
    eta_min=minimum)`` stepped once per update (as the release does).
    """
    schedules, boundaries, start = [], [], 0
    while start < total_steps:
        schedules.append(optax.cosine_decay_schedule(peak, period, alpha=minimum / peak))
        start += period
        boundaries.append(start)
        period *= mult
    return optax.join_schedules(schedules, boundaries[:-1])


def _adamw(
    schedule: optax.Schedule, weight_decay: float, clip: float
) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(clip), optax.adamw(schedule, weight_decay=weight_decay)
    )


def _fit_stage(
    stage_dir: Path,
    loss_fn: Callable,
    params: PyTree,
    optimizer: optax.GradientTransformation,
    batch_for_step: Callable[[int], Any],
    steps: int,
    seed: int,
    metadata: dict,
    log_every: int,
    checkpoint_every: int,
) -> tuple[PyTree, float]:
    """`sciml.train.fit` in `stage_dir` (resumes from its checkpoints); the params and seconds."""
    from sciml.train import Checkpointer, TrainState, fit, make_train_step

    stage_dir.mkdir(parents=True, exist_ok=True)
    state = TrainState.create(params, optimizer, jax.random.key(seed))
    checkpointer = Checkpointer(stage_dir / "checkpoints", keep=1)
    start = time.perf_counter()
    try:
        state = fit(
            state,
            make_train_step(loss_fn, optimizer),
            batch_for_step,
            steps=steps,
            run_dir=stage_dir,
            checkpointer=checkpointer,
            metadata=metadata,
            eval_every=steps + 1,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
        )
    finally:
        checkpointer.close()
    return state.params, time.perf_counter() - start


def _last_loss(stage_dir: Path) -> float | None:
    from sciml.train import read_metrics

    records = [r for r in read_metrics(stage_dir) if "loss" in r]
    return records[-1]["loss"] if records else None


def train_neurde(config: dict[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """Teacher (cached), stage 1, stage 2, evaluation, checkpoint, plots and ``report.json``.

    Each stage trains with `sciml.train.fit` in ``run_dir/stage{1,2}`` (JSON-lines metrics,
    checkpoints; a rerun resumes). The trained parameters are saved to ``run_dir/checkpoints``
    with metadata that `sciml.pretrained.load` reads (model ``sciml.pde.lbm.NeurDE``, inputs
    ``(1, nx, ny, 4)``).

    Args:
        config: a mapping validated as `NeurDEConfig` (see ``configs/neurde_sod2.yaml``).
        run_dir: overrides ``config["run_dir"]``.

    Returns:
        The report (also written to ``run_dir/report.json``).
    """
    import sciml
    from sciml.config import validate
    from sciml.plotting import plot_training_curves
    from sciml.train import Checkpointer, read_metrics, steps_in

    cfg: NeurDEConfig = validate(NeurDEConfig, dict(config), where="neurde config")
    _check(cfg)
    run_dir = Path(run_dir or cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    t = cfg.teacher
    spec = t.spec()
    start = time.perf_counter()
    teacher, generated = load_teacher(t.path, spec, progress=True)
    teacher_seconds = time.perf_counter() - start

    precision = jax.enable_x64(True) if cfg.dtype == "float64" else contextlib.nullcontext()
    with precision:
        dtype = jnp.dtype(cfg.dtype)
        problem = teacher.problem
        model = NeurDE(cfg.model.width, cfg.model.depth, float(problem.shift))
        model_spec = {"type": "sciml.pde.lbm.NeurDE", "width": model.width, "depth": model.depth}
        model_spec["shift"] = model.shift
        moments = cfg.model.moment_iterations
        metadata = {
            "checkpoint_format": 1,  # the format sciml.pretrained reads
            "sciml_version": sciml.__version__,
            "model": model_spec,
            "data": {
                "fields": list(MACRO_FIELDS),
                "spatial_shape": [t.nx, t.ny],
                "in_channels": 4,
                "out_channels": 9,
                "teacher": spec,
            },
            "equilibrium": {"moment_iterations": moments},  # how the solver uses the model
            "config": cfg.model_dump(mode="json"),
        }
        n_train = cfg.stage1.n_snapshots
        inputs = teacher.inputs(slice(0, n_train)).astype(dtype)
        targets = teacher.equilibrium(slice(0, n_train)).astype(dtype)
        params = model.init(jax.random.key(cfg.seed), jnp.asarray(inputs[:1]))

        # Stage 1: supervised regression of g^eq.
        s1 = cfg.stage1

        def stage1_loss(params, batch, key):
            x, y = batch
            return equilibrium_loss(jnp.moveaxis(model.apply(params, x), -1, 1), y), {}

        def stage1_batch(step: int):
            from sciml.data import batch_indices

            idx = batch_indices(n_train, s1.batch_size, cfg.seed, step)
            return jnp.asarray(inputs[idx]), jnp.asarray(targets[idx])

        schedule = warm_restart_schedule(
            s1.lr, s1.min_lr, s1.restart_period, s1.restart_mult, s1.steps
        )
        params, stage1_seconds = _fit_stage(
            run_dir / "stage1",
            stage1_loss,
            params,
            _adamw(schedule, s1.weight_decay, s1.grad_clip),
            stage1_batch,
            s1.steps,
            cfg.seed,
            metadata,
            s1.log_every,
            s1.checkpoint_every,
        )

        # Stage 2: rollouts with the network inside the solver.
        ev, s2 = cfg.evaluate, cfg.stage2
        stage2_seconds, stage1_metrics = 0.0, None
        if s2.steps:
            stage1_metrics, _ = evaluate_rollout(
                model.apply,
                params,
                teacher,
                ev.start,
                ev.n_steps,
                dtype=dtype,
                moment_iterations=moments,
            )
            n_windows = n_train - s2.rollout + 1

            def stage2_loss(params, batch, key):
                f, g, y = batch
                loss, per_step = rollout_loss(
                    model.apply,
                    params,
                    problem,
                    f,
                    g,
                    y,
                    bptt=s2.gradient == "bptt",
                    moment_iterations=moments,
                )
                return loss, {"first_step": per_step[0], "last_step": per_step[-1]}

            def stage2_batch(step: int):
                from sciml.data import batch_indices

                k = int(batch_indices(n_windows, 1, cfg.seed + 1, step)[0])
                window = targets[k : k + s2.rollout]
                return tuple(jnp.asarray(a, dtype) for a in (teacher.f[k], teacher.g[k], window))

            schedule = optax.cosine_onecycle_schedule(
                s2.steps, s2.lr, s2.pct_start, s2.div_factor, s2.final_div_factor
            )
            params, stage2_seconds = _fit_stage(
                run_dir / "stage2",
                stage2_loss,
                params,
                _adamw(schedule, s2.weight_decay, s2.grad_clip),
                stage2_batch,
                s2.steps,
                cfg.seed + 1,
                metadata,
                s2.log_every,
                s2.checkpoint_every,
            )

        # Evaluation: the long rollout against the teacher.
        start = time.perf_counter()
        metrics, pred = evaluate_rollout(
            model.apply,
            params,
            teacher,
            ev.start,
            ev.n_steps,
            dtype=dtype,
            moment_iterations=moments,
        )
        metrics["seconds"] = time.perf_counter() - start

    total = s1.steps + s2.steps
    if total not in steps_in(run_dir / "checkpoints"):  # else a rerun: the same parameters
        saver = Checkpointer(run_dir / "checkpoints", keep=1)
        try:
            scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
            saver.save(total, {"params": params}, metadata, scalars)
        finally:
            saver.close()
    plot_profiles(run_dir / "profiles.png", teacher, pred, ev.start, ev.plot_steps)
    plots = ["profiles.png"]
    for stage in ("stage1", "stage2"):
        records = read_metrics(run_dir / stage)
        if records:
            plot_training_curves(run_dir / f"{stage}_loss.png", records)
            plots.append(f"{stage}_loss.png")
    report = {
        "name": cfg.name,
        "n_params": count_params(params),
        "teacher": {**spec, "generated": generated, "seconds": teacher_seconds},
        "stage1": {
            "steps": s1.steps,
            "final_loss": _last_loss(run_dir / "stage1"),
            "seconds": stage1_seconds,
            "evaluation": stage1_metrics,
        },
        "stage2": {
            "steps": s2.steps,
            "gradient": s2.gradient,
            "rollout": s2.rollout,
            "final_loss": _last_loss(run_dir / "stage2"),
            "seconds": stage2_seconds,
        },
        "evaluation": metrics,
        "checkpoint": str(run_dir / "checkpoints" / str(total)),
        "plots": plots,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report
