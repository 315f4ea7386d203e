"""End to end through the `sciml` command: train, evaluate, sample, pretrained, and user errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from sciml import pretrained
from sciml.errors import CheckpointError
from sciml.operators import GaussianField


def _sciml(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sciml.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained once through the CLI, shared by the tests below (read-only)."""
    from tests.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("cli")
    cfg = {**TINY_CONFIG, "run_dir": str(root / "run")}
    cfg["data"] = {**cfg["data"], "path": str(root / "data" / "tiny")}
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    result = _sciml("train", root / "tiny.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _one_line_error(result, *needles):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sciml "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_train_writes_report_figures_and_checkpoints(trained_run):
    run = trained_run / "run"
    report = json.loads((run / "report.json").read_text())
    assert report["split"] == "test" and report["n_samples"] == 8
    assert np.isfinite(report["metrics"]["rel_l2"]) and report["checkpoint_step"] in (10, 20)
    for fig in report["figures"]:
        assert (run / fig).stat().st_size > 1000
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 20
    assert (trained_run / "data/tiny/stats.yaml").exists()


def test_pretrained_load_reproduces_the_report(trained_run):
    model, params, meta = pretrained.load(trained_run / "run")
    assert meta["model"]["type"] == "sciml.operators.FNO" and meta["data"]["in_channels"] == 1
    out = model.apply(params, jnp.zeros((2, 32, 1)))
    assert out.shape == (2, 32, 1)
    result = _sciml("evaluate", trained_run / "run", "--out", trained_run / "eval")
    assert result.returncode == 0, result.stderr
    a = json.loads((trained_run / "run/report.json").read_text())["metrics"]
    b = json.loads((trained_run / "eval/report.json").read_text())["metrics"]
    assert a == pytest.approx(b, rel=1e-6)


def test_sample_writes_outputs(trained_run):
    out = trained_run / "samples.npz"
    result = _sciml("sample", trained_run / "run", "--n", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert data["outputs"].shape == data["targets"].shape == (3, 32, 1)


# name: the largest validation relative L2 (of the mean, for Gaussian heads) the checkpoint may have
SHIPPED = {
    "burgers1d_fno_quickstart": 0.05,
    "burgers1d_fno_multires": 0.05,
    "darcy2d_fno_multires": 0.05,
    # Trained through the conservation projection: the head's raw mean is not the prediction,
    # the projected one is (its error is in the report's "probabilistic" rows).
    "pme_dppl_fno": 0.2,
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoints_load_by_name(name):
    assert name in pretrained.available()
    model, params, meta = pretrained.load(name)
    spec = meta["data"]
    out = model.apply(params, jnp.zeros((1, *spec["spatial_shape"], spec["in_channels"])))
    out = out.mean if isinstance(out, GaussianField) else out
    assert out.shape[-1] == spec["out_channels"]
    assert meta["metrics"]["valid_rel_l2"] < SHIPPED[name]


def test_shipped_neurde_loads_and_its_rollout_held_the_shock():
    model, params, meta = pretrained.load("neurde_sod2")
    state = jnp.broadcast_to(jnp.asarray([1.0, 0.1, 0.0, 0.2]), (1, 8, 1, 4))  # rho, ux, uy, T
    g_eq = model.apply(params, state)
    assert g_eq.shape == (1, 8, 1, 9) and bool(jnp.all(g_eq > 0))
    # Its 500-step rollout (stored when it was made) kept the shock within a cell of the teacher.
    assert meta["metrics"]["shock_error_cells"] < 1.0
    assert meta["metrics"]["rho_rel_l2_max"] < 1e-3


def test_shipped_ffm_prior_loads_and_samples_under_eci():
    # The Stokes prior: rebuilt from its metadata's init_inputs (model(x_t, t)), and ECI with
    # its task's boundary condition is exact with it.
    from sciml import config
    from sciml.diffusion import EuclideanProjection, eci_sample

    model, params, meta = pretrained.load("ffm_stokes")
    task = config.build(meta["config"]["task"], "task")
    prior = config.build(meta["config"]["prior"], "prior")
    constraint = task.bc_constraint(6.0)
    x = eci_sample(
        model.apply,
        params,
        None,
        EuclideanProjection(constraint),
        key=jax.random.key(0),
        shape=(2, *task.shape, 1),
        prior=prior,
        n_steps=4,
    )
    assert float(jnp.max(jnp.abs(jax.vmap(constraint.residual)(x)))) < 1e-5


def test_shipped_flex_loads_by_name_with_its_task():
    # model(x_t, t, cond) is rebuilt from init_inputs (load checks every array's shape against
    # it); its metadata carries the task `sciml sample` draws from. (Sampling itself is tested
    # on a tiny checkpoint in tests/diffusion/test_superres.py: compiling this one is slow.)
    from sciml.diffusion.flex import FLEX
    from sciml.diffusion.superres import task_from_metadata

    model, params, meta = pretrained.load("flex_superres_kolmogorov")
    task = task_from_metadata(meta)
    assert isinstance(model, FLEX) and task.n == meta["data"]["spatial_shape"][0]
    assert task.test_viscosities and meta["metrics"]["heldout_rfne_flex_2"] < 0.37  # < bicubic


def test_pretrained_list_names_the_shipped_checkpoints():
    result = _sciml("pretrained", "list")
    assert all(
        name in result.stdout
        for name in [*SHIPPED, "neurde_sod2", "ffm_stokes", "flex_superres_kolmogorov"]
    )


def _copy_checkpoint(trained_run, tmp_path) -> Path:
    step = pretrained.resolve(trained_run / "run")[1]
    dst = tmp_path / "ckpt" / str(step)
    shutil.copytree(trained_run / "run/checkpoints" / str(step), dst)
    return dst


def test_corrupt_checkpoint_is_a_clear_error(trained_run, tmp_path):
    step_dir = _copy_checkpoint(trained_run, tmp_path)
    for f in (step_dir / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:10])  # truncate the array data
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        pretrained.load(step_dir)
    _one_line_error(_sciml("evaluate", step_dir, "--out", tmp_path / "e"), "corrupt or truncated")


def test_checkpoint_of_another_model_is_a_clear_error(trained_run, tmp_path):
    step_dir = _copy_checkpoint(trained_run, tmp_path)
    meta_path = step_dir / "metadata" / "metadata"
    meta = json.loads(meta_path.read_text())
    meta["model"]["width"] = 16  # the arrays were trained at width 8
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="belongs to another model"):
        pretrained.load(step_dir)
    meta["model"]["type"] = "os.system"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="import path inside sciml"):
        pretrained.load(step_dir)


def _sciml_in_process(capsys, *args):
    """`sciml.cli.main` in this process (no interpreter start-up): its exit code and output."""
    from sciml.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_user_errors_are_one_line(trained_run, tmp_path, capsys):
    cfg = trained_run / "tiny.yaml"
    # Two through a real process (nothing else reaches stderr, the exit status), the rest by
    # calling the entry point (the same code path, without 3-7 s of start-up each).
    _one_line_error(
        _sciml("train", cfg, "train.stepz=3"), "unknown key 'train.stepz'", "valid keys here"
    )
    _one_line_error(
        _sciml("evaluate", tmp_path / "nothing", "--out", tmp_path / "o"), "no checkpoint"
    )
    _one_line_error(
        _sciml_in_process(capsys, "train", cfg, "train.steps=many"),
        "train.steps: Input should be a valid integer",
    )
    _one_line_error(_sciml_in_process(capsys, "train", tmp_path / "missing.yaml"), "not found")
    _one_line_error(
        _sciml_in_process(capsys, "train", cfg, "data.fields=[pressure]", f"run_dir={tmp_path}/r"),
        "field 'pressure' is missing",
    )
    _one_line_error(
        _sciml_in_process(capsys, "train", cfg, "model.out_channels=3", f"run_dir={tmp_path}/r2"),
        "set model.out_channels=1",
    )
    _one_line_error(_sciml_in_process(capsys, "pretrained", "show", "nope"), "shipped names")


def test_evaluating_on_data_with_other_channels_is_a_clear_error(trained_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained_run / "data/tiny", data)
    for split in ("train", "valid", "test"):  # add a second scalar field: two input channels
        with h5py.File(data / "data" / split / "tiny.hdf5", "a") as f:
            f["t0_fields"].create_dataset("v", data=f["t0_fields/u"][()])
            f["t0_fields"].attrs["field_names"] = ["u", "v"]
    stats = yaml.safe_load((data / "stats.yaml").read_text())
    for values in stats.values():
        values["v"] = values["u"]
    (data / "stats.yaml").write_text(yaml.safe_dump(stats))
    result = _sciml("evaluate", trained_run / "run", "--data", data, "--out", tmp_path / "o")
    _one_line_error(result, "checkpoint expects 1 input channels", "the dataset gives 2")
