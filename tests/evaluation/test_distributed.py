"""One process and two processes (torchrun, gloo, accelerate) give the same per-sample results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    # CPU workers: with a GPU visible, accelerate's barrier targets cuda:<local_rank> (fails with 1 GPU)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    env.pop("WORLD_SIZE", None)
    return env


def test_one_and_two_processes_agree(tmp_path):
    two = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(WORKER),
            str(tmp_path / "w2"),
            str(tmp_path / "o2"),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # the single-process run goes at the same time: the machine has two cores for three workers
    one = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "w1"), str(tmp_path / "o1")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    out, _ = two.communicate(timeout=240)
    assert one.returncode == 0, one.stdout + one.stderr
    assert two.returncode == 0, out

    csv1, csv2 = (
        (tmp_path / "o1" / "per_sample.csv").read_text(),
        (tmp_path / "o2" / "per_sample.csv").read_text(),
    )
    assert csv1 == csv2 and len(csv1.splitlines()) == 33
    r1, r2 = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("o1", "o2"))
    assert r2["distributed"]["world_size"] == 2 and r1["distributed"]["world_size"] == 1
    for key in (
        "clean_accuracy",
        "robust_accuracy",
        "autoattack",
        "sweep",
        "calibration",
        "smoothing",
        "passes",
    ):
        assert r1[key] == r2[key], key
    # both ranks wrote their chunks (4 chunks: rank 0 has 0 and 2, rank 1 has 1 and 3)
    assert sorted(p.name for p in (tmp_path / "w2" / "chunks").glob("*.json")) == [
        f"chunk_{i:06d}.json" for i in range(4)
    ]
