"""Two CPU processes (torchrun, gloo): NT-Xent gathers negatives across ranks, so the first-step loss
equals one process on the same global batch; and the real pretrain stage trains under torchrun.

Tolerance 1e-5: the gathered loss sums the same terms in another order. A LayerNorm backbone (ViT) is
used for the equality: BatchNorm statistics are per process (no SyncBN), which changes features.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _run(cmd, timeout=240):
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _loss(cmd):
    line = [ln for ln in _run(cmd).stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_two_processes_gather_negatives_same_first_loss():
    script = str(ROOT / "tests" / "stages" / "ddp_first_step.py")
    one = _loss([sys.executable, script])
    two = _loss([TORCHRUN, "--nproc_per_node", "2", "--master_port", "29517", script])
    assert (one["world"], two["world"]) == (1, 2)
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
    assert two["grad_norm"] == pytest.approx(
        one["grad_norm"], rel=1e-4
    )  # DDP-averaged = single-process gradient


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate CLI not found")
def test_accelerate_launch_runs_two_cpu_processes():
    # `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate wants mpirun for multi-CPU);
    # `--multi_gpu` starts two, and our Accelerator(cpu=True) puts them on gloo — the README says so
    script = str(ROOT / "tests" / "stages" / "ddp_first_step.py")
    one = _loss([sys.executable, script])
    two = _loss(
        [
            ACCELERATE,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "29521",
            script,
        ]
    )
    assert two["world"] == 2
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_pretrain_stage_runs_under_torchrun(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    args = [
        f"run.root={cfg.run.root}",
        "run.name=ddp",
        "run.progress=false",
        "run.num_threads=1",
        "data.dataset=shards",
        f"data.train_urls={cfg.data.train_urls}",
        f"data.test_urls={cfg.data.test_urls}",
        "data.num_classes=4",
        "pretrain.epochs=2",
        "pretrain.batch_size=24",
        "pretrain.attack.steps=1",
        "pretrain.proj_hidden_dim=32",
        "pretrain.proj_dim=16",
    ]
    _run(
        [
            TORCHRUN,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29518",
            "-m",
            "stages.pretrain",
            "--config",
            "configs/quickstart.yaml",
            *args,
        ]
    )
    manifest = json.loads((Path(cfg.run.root) / "ddp" / "pretrain" / "manifest.json").read_text())
    # exact epochs: 64 samples = 24 + 24 + 16 (the partial batch kept, 8 per process), every sample once
    assert manifest["status"] == "complete" and manifest["outputs"]["steps"] == 2 * 3
    assert manifest["outputs"]["sampling"] == "exact"
    epochs = read_jsonl(Path(cfg.run.root) / "ddp" / "pretrain" / "metrics.jsonl", kind="epoch")
    assert [(r["samples"], r["distinct_samples"]) for r in epochs] == [(64, 64), (64, 64)]
    # an odd global batch is refused before any compute, naming the fix
    proc = subprocess.run(
        [
            TORCHRUN,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29519",
            "-m",
            "stages.pretrain",
            "--config",
            "configs/quickstart.yaml",
            *args,
            "pretrain.batch_size=15",
            "run.name=odd",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert (
        proc.returncode != 0
        and "pretrain.batch_size=15 is not divisible by 2 processes; use 16" in proc.stderr
    )


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_finetune_stage_runs_under_torchrun(tiny_cfg):
    cfg = tiny_cfg()
    args = [
        f"run.root={cfg.run.root}",
        "run.name=ddpft",
        "run.progress=false",
        "run.num_threads=1",
        "data.dataset=shards",
        f"data.train_urls={cfg.data.train_urls}",
        f"data.val_urls={cfg.data.val_urls}",
        f"data.test_urls={cfg.data.test_urls}",
        "data.num_classes=4",
        "finetune.init=scratch",
        "finetune.epochs=1",
        "finetune.batch_size=16",
        "finetune.attack.steps=1",
        "finetune.val_attack_steps=1",
    ]
    _run(
        [
            TORCHRUN,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29520",
            "-m",
            "stages.finetune",
            "--config",
            "configs/quickstart.yaml",
            *args,
        ]
    )
    manifest = json.loads((Path(cfg.run.root) / "ddpft" / "finetune" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["outputs"]["steps"] == 4
    (epoch,) = read_jsonl(Path(cfg.run.root) / "ddpft" / "finetune" / "metrics.jsonl", kind="epoch")
    assert epoch["samples"] == epoch["distinct_samples"] == 64  # summed over both processes
    assert 0.0 <= manifest["outputs"]["best_val_robust_acc"] <= 1.0  # validation reduced over both ranks


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_rcs_selection_is_the_same_on_two_processes(tiny_cfg):
    """Candidates split over two ranks and gathered give the selection one process makes (per-candidate
    seeds; selecting at epoch 1, both start from the same initial weights)."""
    from stages.pretrain import run_pretrain

    rcs = [
        "pretrain.method=acl",
        "pretrain.epochs=1",
        "pretrain.batch_size=16",
        "pretrain.attack.steps=1",
        "pretrain.rcs.fraction=0.5",
        "pretrain.rcs.warmup_epochs=1",
        "pretrain.rcs.val_fraction=0.1",
        "pretrain.rcs.val_attack_steps=1",
        "run.num_threads=1",
    ]
    one = tiny_cfg("run.name=rcs1", *rcs)
    run_pretrain(one)
    args = [
        f"run.root={one.run.root}",
        "run.name=rcs2",
        "run.progress=false",
        "data.dataset=shards",
        f"data.train_urls={one.data.train_urls}",
        f"data.test_urls={one.data.test_urls}",
        "data.num_classes=4",
        "pretrain.proj_hidden_dim=64",
        "pretrain.proj_dim=32",
        *rcs,
    ]
    _run(
        [
            TORCHRUN,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29522",
            "-m",
            "stages.pretrain",
            "--config",
            "configs/quickstart.yaml",
            *args,
        ]
    )
    sel = [
        json.loads(
            (Path(one.run.root) / name / "pretrain" / "coreset" / "selection_epoch_0001.json").read_text()
        )
        for name in ("rcs1", "rcs2")
    ]
    assert sel[0]["candidates"] == sel[1]["candidates"] == 3  # 58 samples: 3 full batches of 16
    assert sel[0]["ids"] == sel[1]["ids"] and sel[0]["picked"] == sel[1]["picked"]
    assert sel[0]["gains"][0] == pytest.approx(
        sel[1]["gains"][0], rel=1e-4
    )  # every candidate scored the same
