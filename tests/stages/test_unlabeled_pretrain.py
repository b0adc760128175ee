"""Unlabeled shards end to end: `make index`, then pretraining with only data.train_urls (no labels, no
test shards, no samples_per_epoch), in one process and in two; fine-tuning on them is refused clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.shards import RawSample, write_split

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture
def unlabeled(tmp_path) -> list[str]:
    rng = np.random.default_rng(3)
    samples = [
        RawSample(label=None, array=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(64)
    ]
    info = write_split(iter(samples), tmp_path / "pile", "train", 32, shard_size=16)
    assert not info["labeled"]
    return [
        f"run.root={tmp_path / 'runs'}",
        "run.progress=false",
        "run.num_threads=1",
        "data.dataset=shards",
        f"data.train_urls={info['urls']}",
        "pretrain.epochs=1",
        "pretrain.batch_size=16",
        "pretrain.attack.steps=1",
        "pretrain.proj_hidden_dim=32",
        "pretrain.proj_dim=16",
    ]


def _stage(stage: str, args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + [
        "-m",
        f"stages.{stage}",
        "--config",
        "configs/quickstart.yaml",
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def test_index_then_pretrain_on_unlabeled_shards_then_finetune_is_refused(unlabeled, tmp_path):
    proc = _stage("index", unlabeled)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((tmp_path / "pile" / "shards.index.json").read_text())
    assert sorted(index["shards"]) == [f"train-00000{i}.tar" for i in range(4)]
    assert {e["count"] for e in index["shards"].values()} == {16} and {
        e["labeled"] for e in index["shards"].values()
    } == {0}

    proc = _stage("pretrain", [*unlabeled, "run.name=u"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "runs" / "u" / "data" / "manifest.json").read_text())["outputs"]["splits"]
    assert data == {
        "train": {"count": 64, "urls": data["train"]["urls"], "labeled": False, "count_source": {"index": 4}}
    }
    manifest = json.loads((tmp_path / "runs" / "u" / "pretrain" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["outputs"]["steps"] == 4  # 64 samples / 16

    proc = _stage("finetune", [*unlabeled, "run.name=u"])
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("error: the training split holds unlabeled samples")
        and proc.stderr.count("\n") == 1
    )
    assert "finetune.init=local-dir:" in proc.stderr


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_two_process_pretraining_on_unlabeled_shards(unlabeled, tmp_path):
    proc = _stage(
        "pretrain", [*unlabeled, "run.name=u2"], [TORCHRUN, "--nproc_per_node", "2", "--master_port", "29527"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "u2" / "pretrain" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["outputs"]["steps"] == 4
    count = json.loads((tmp_path / "runs" / "u2" / "data" / "manifest.json").read_text())["outputs"][
        "splits"
    ]["train"]
    assert count["count"] == 64 and count["count_source"] == {"scan": 4}  # no index: each shard streamed once
