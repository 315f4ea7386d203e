"""`sciml generate` killed with SIGKILL at a random moment and run again writes identical files."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from sciml.data import SPLITS, read_well, split_path
from tests.conftest import TINY_CONFIG


def _config(tmp_path, name):
    cfg = {**TINY_CONFIG, "run_dir": str(tmp_path / f"run_{name}")}
    gen = {
        **TINY_CONFIG["data"]["generator"],
        "equation": {**TINY_CONFIG["data"]["generator"]["equation"], "shape": [256], "dt": 0.001},
        "t_final": 0.5,
        "n_snapshots": 3,
    }
    cfg["data"] = {
        **TINY_CONFIG["data"],
        "path": str(tmp_path / name / "tiny"),
        "generator": gen,
        "n_train": 96,
        "chunk": 8,
        "resolutions": [16],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_killed_generation_completes_identically(tmp_path):
    cmd = [sys.executable, "-m", "sciml.cli", "generate"]
    subprocess.run([*cmd, _config(tmp_path, "ref")], check=True, capture_output=True)

    config = _config(tmp_path, "killed")
    rng = np.random.default_rng(int(time.time()))
    for _ in range(5):  # on a fast quiet machine a run can end before the random moment: retry
        shutil.rmtree(tmp_path / "killed", ignore_errors=True)
        proc = subprocess.Popen(
            [*cmd, config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while not list((tmp_path / "killed").rglob("*.partial")) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere mid-split
        # Between two splits no .partial exists: kill only while one does.
        while not list((tmp_path / "killed").rglob("*.partial")) and proc.poll() is None:
            time.sleep(0.001)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
    else:
        pytest.fail("generation finished before it could be killed, 5 times")
    assert list((tmp_path / "killed").rglob("*.partial"))  # it was interrupted mid-write
    subprocess.run([*cmd, config], check=True, capture_output=True)

    for root in ("", "res16"):
        for split in SPLITS:
            a, _ = read_well(split_path(tmp_path / "ref" / "tiny" / root, split, "tiny"))
            b, _ = read_well(split_path(tmp_path / "killed" / "tiny" / root, split, "tiny"))
            assert np.array_equal(a.fields["u"], b.fields["u"])
    assert not list((tmp_path / "killed").rglob("*.partial"))
