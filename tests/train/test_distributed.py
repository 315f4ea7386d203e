"""Two processes on loopback train data-parallel and match a single-process run."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from tests.conftest import REPO
from tests.train._dp_worker import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path: Path):
    out = tmp_path / "params.npz"
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(rank),
            "PYTHONPATH": str(REPO),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.train._dp_worker", str(out)],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)

    params, loss = run(
        devices=jax.devices()[:4]
    )  # one process, the same 4-device global batch split
    got = np.load(out)
    assert np.isclose(got["loss"], loss, rtol=1e-5)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert set(flat) == set(got.files) - {"loss"}
    for key, value in flat.items():  # reduction order differs across processes: float32 round-off
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-6)
