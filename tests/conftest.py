"""Test set-up: 8 simulated CPU devices and strict JAX flags, fixed before JAX is imported."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session and the CLI processes its tests start
# (they inherit the environment): the same programs (a tiny model trained by several tests and
# processes, closures rebuilt per call) compile once. A fresh directory per session.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="sciml-test-jax-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402
from jaxtyping import install_import_hook  # noqa: E402

# Array annotations (jaxtyping shapes) are checked at run time in tests only.
install_import_hook(["sciml"], "beartype.beartype")
import yaml  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "run_dir": "runs/tiny",
    "data": {
        "path": "data/tiny_burgers",
        "generator": {
            "type": "sciml.pde.SpectralDataset",
            "equation": {
                "type": "sciml.pde.Burgers",
                "shape": [64],
                "length": 1.0,
                "dt": 0.01,
                "viscosity": 0.1,
            },
            "initial_condition": {"kind": "grf", "sigma": 25.0, "tau": 5.0, "alpha": 2.0},
            "t_final": 0.2,
            "n_snapshots": 3,
            "resolution": 32,
        },
        "n_train": 32,
        "n_valid": 8,
        "n_test": 8,
        "dt_stride": 2,
    },
    "model": {
        "type": "sciml.operators.FNO",
        "out_channels": 1,
        "modes": 4,
        "width": 8,
        "n_layers": 2,
        "projection_width": 16,
    },
    "train": {
        "steps": 20,
        "batch_size": 8,
        "lr": 0.003,
        "log_every": 5,
        "eval_every": 10,
        "checkpoint_every": 5,
    },
    "evaluate": {"batch_size": 8, "n_plots": 1},
}


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A seconds-sized experiment config written into a temporary directory (paths inside it)."""
    cfg = {**TINY_CONFIG}
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["data"] = {**cfg["data"], "path": str(tmp_path / "data" / "tiny_burgers")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def x64():
    """Run a test in float64."""
    with jax.enable_x64(True):
        yield
