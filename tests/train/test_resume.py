"""A run killed with SIGKILL at a random step and restarted ends with the uninterrupted run's params."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sciml.train import read_metrics, restore_raw_state, tree_equal


def _train_cmd(config, *overrides):
    return [sys.executable, "-m", "sciml.cli", "train", str(config), *overrides]


@pytest.mark.slow
def test_killed_run_resumes_to_identical_parameters(tiny_config, tmp_path):
    steps = 40
    common = [
        f"train.steps={steps}",
        "train.checkpoint_every=4",
        "train.log_every=1",
        "train.eval_every=8",
    ]
    reference = tmp_path / "reference"
    subprocess.run(
        _train_cmd(tiny_config, f"run_dir={reference}", *common), check=True, capture_output=True
    )

    resumed = tmp_path / "resumed"
    kill_at = int(np.random.default_rng(int(time.time())).integers(6, steps - 4))
    proc = subprocess.Popen(
        _train_cmd(tiny_config, f"run_dir={resumed}", *common), stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        records = read_metrics(resumed) if (resumed / "metrics.jsonl").exists() else []
        if records and records[-1]["step"] >= kill_at:
            break
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"run ended before the kill at step {kill_at}: {proc.stderr.read()[-2000:]}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    done = subprocess.run(
        _train_cmd(tiny_config, f"run_dir={resumed}", *common), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    a = restore_raw_state(reference / "checkpoints", steps)
    b = restore_raw_state(resumed / "checkpoints", steps)
    assert tree_equal(a, b), f"killed at step {kill_at}: final states differ"
    assert jax.tree.leaves(a["params"])  # something was compared
    # The metrics log is continuous: every step logged exactly once.
    assert [r["step"] for r in read_metrics(resumed)] == list(range(1, steps + 1))
