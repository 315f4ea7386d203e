"""Every shipped config loads, and its generator and model build."""

import numpy as np
import pytest

from sciml import config
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# Solver-in-the-loop experiments with their own schema (`task:` names the trainer).
NEURDE = [p for p in CONFIGS if config.read_yaml(p).get("task") == "neurde"]
# `sciml sample` configs: constrained sampling from a trained prior.
SAMPLING = [p for p in CONFIGS if config.read_yaml(p).get("task") == "constrained_sampling"]
EXPERIMENTS = [p for p in CONFIGS if p not in NEURDE + SAMPLING]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_config_builds(path):
    cfg = config.load(path)
    generator = config.build(cfg.data.generator, "data.generator") if cfg.data.generator else None
    if hasattr(generator, "_steps"):  # SpectralDataset: the equation and the step counts are valid
        generator._steps(generator.problem())
    model = config.build(cfg.model, "model")
    assert model is not None and cfg.name == path.stem


@pytest.mark.parametrize("path", NEURDE, ids=lambda p: p.stem)
def test_neurde_config_validates(path):
    from sciml.pde.lbm import NeurDEConfig

    raw = {k: v for k, v in config.read_yaml(path).items() if k != "task"}
    cfg = config.validate(NeurDEConfig, raw, where=str(path))
    assert cfg.name == path.stem and cfg.teacher.case in (1, 2, "cylinder")


@pytest.mark.parametrize("path", SAMPLING, ids=lambda p: p.stem)
def test_sampling_config_validates_against_its_checkpoint_task(path):
    from sciml import pretrained
    from sciml.diffusion.constrained import ConstrainedSamplingConfig

    raw = {k: v for k, v in config.read_yaml(path).items() if k != "task"}
    cfg = config.validate(ConstrainedSamplingConfig, raw, where=str(path))
    task = config.build(pretrained.show(cfg.checkpoint)["config"]["task"], "task")
    for spec in cfg.constraints:
        assert getattr(task, spec.method)(**spec.args).n_unknowns == np.prod(task.shape)
    assert cfg.name == path.stem


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        (
            "darcy2d",
            ["data.generator.n_solve=33", "data.generator.resolution=17", "data.resolutions=[9]"],
        ),
        ("porous_medium1d", ["data.generator.n_cells=32", "data.generator.n_snapshots=5"]),
    ],
)
def test_non_periodic_configs_generate(name, overrides, tmp_path):
    from sciml.data import read_stats, read_well, split_path
    from sciml.experiment import prepare_data

    sizes = [
        "data.n_train=4",
        "data.n_valid=2",
        "data.n_test=2",
        "data.chunk=2",
        f"data.path={tmp_path}/{name}",
    ]
    cfg = config.load(REPO / "configs" / f"{name}.yaml", [*overrides, *sizes])
    root = prepare_data(cfg)
    traj, _ = read_well(split_path(root, "train", name))
    assert all(np.isfinite(v).all() for v in traj.fields.values())
    assert "mean" in read_stats(root / "stats.yaml")


def test_darcy_trains_a_to_u(tmp_path):
    import json

    from sciml.experiment import train

    overrides = [
        "data.generator.n_solve=17",
        "data.generator.resolution=17",
        "data.resolutions=[9]",
        "data.n_train=16",
        "data.n_valid=8",
        "data.n_test=8",
        "data.chunk=8",
        f"data.path={tmp_path}/darcy2d",
        f"run_dir={tmp_path}/run",
        "model.width=8",
        "model.modes=4",
        "train.steps=4",
        "train.batch_size=8",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "train.loss=relative_h1",
        "train.physics_weight=0.01",  # PINO-style term, logged next to the data loss
    ]
    run_dir = train(config.load(REPO / "configs/darcy2d.yaml", overrides))
    report = json.loads((run_dir / "report.json").read_text())
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("physics" in r and "data_loss" in r for r in logged)
    assert np.isfinite(report["metrics"]["rel_l2"]) and set(report["resolution_sweep"]) == {
        "9",
        "17",
    }
