"""Kill -9 anywhere: start a stage, SIGKILL it at a random moment, re-run the same command, and check
that it resumes, finishes, loses at most one checkpoint interval, never leaves a half-written artifact,
and (where the stage is deterministic) ends with the same result as an uninterrupted run.

The default suite runs one kill per stage; `make test-slow` runs ≥ 10 random trials.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
STAGES = ("data", "pretrain", "finetune", "evaluate", "export")


def _args(tiny_cfg, name):
    cfg = tiny_cfg()
    return [
        f"run.root={cfg.run.root}",
        f"run.name={name}",
        "run.progress=false",
        "run.num_threads=1",
        "data.dataset=shards",
        f"data.train_urls={cfg.data.train_urls}",
        f"data.val_urls={cfg.data.val_urls}",
        f"data.test_urls={cfg.data.test_urls}",
        "data.num_classes=4",
        "data.shuffle_buffer=64",
        "pretrain.epochs=2",
        "pretrain.batch_size=16",
        "pretrain.attack.steps=1",
        "pretrain.checkpoint_every_steps=2",
        "pretrain.proj_hidden_dim=32",
        "pretrain.proj_dim=16",
        "finetune.epochs=2",
        "finetune.batch_size=16",
        "finetune.attack.steps=1",
        "finetune.val_attack_steps=1",
        "finetune.checkpoint_every_steps=2",
        "evaluate.n_examples=16",
        "evaluate.batch_size=8",
        "evaluate.chunk_size=4",
        "evaluate.pgd.steps=2",
        "evaluate.sweep.enabled=false",
        "evaluate.calibration.enabled=false",
        "evaluate.autoattack.version=custom",
        "evaluate.autoattack.attacks=[apgd-ce]",
    ], Path(cfg.run.root) / name


def _cmd(stage, args):
    return [sys.executable, "-m", f"stages.{stage}", "--config", "configs/quickstart.yaml", *args]


def _finish(stage, args):
    proc = subprocess.run(_cmd(stage, args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{stage}: {proc.stderr[-2000:]}"
    return proc


def _kill_at(stage, args, delay):
    proc = subprocess.Popen(
        _cmd(stage, args), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def assert_no_half_written_artifacts(run_dir: Path) -> None:
    """Every manifest/report parses; every complete checkpoint and model folder loads."""
    for path in run_dir.rglob("*.json"):
        if path.name.startswith("."):
            continue  # temp files of an interrupted write; never read
        json.loads(path.read_text())
    for folder in run_dir.rglob("model.safetensors"):
        if not any(p.startswith(".") for p in folder.relative_to(run_dir).parts):
            load_file(str(folder))
            if "checkpoints" not in folder.parts:  # timm folders carry their config beside the weights
                json.loads((folder.parent / "config.json").read_text())


def _weights(run_dir: Path, stage: str) -> dict:
    sub = {"pretrain": "backbone_adv", "finetune": "final", "export": "classifier"}[stage]
    return load_file(str(run_dir / stage / sub / "model.safetensors"))


def _result(run_dir: Path, stage: str):
    if stage in ("pretrain", "finetune", "export"):
        return _weights(run_dir, stage)
    if stage == "evaluate":
        r = json.loads((run_dir / "evaluate" / "report.json").read_text())
        return (
            r["clean_accuracy"],
            r["robust_accuracy"],
            (run_dir / "evaluate" / "per_sample.csv").read_text(),
        )
    return json.loads((run_dir / "data" / "manifest.json").read_text())["outputs"]["splits"]


def _same(a, b) -> bool:
    if isinstance(a, dict) and a and hasattr(next(iter(a.values())), "shape"):
        return a.keys() == b.keys() and all((a[k].float() - b[k].float()).abs().max() <= 1e-6 for k in a)
    return a == b


def _trial(tiny_cfg, stage: str, delay: float, reference_dir: Path, name: str) -> None:
    args, run_dir = _args(tiny_cfg, name)
    for upstream in STAGES[: STAGES.index(stage)]:
        _finish(upstream, args)
    _kill_at(stage, args, delay)
    assert_no_half_written_artifacts(run_dir)
    logged = _logged_steps(run_dir / stage / "metrics.jsonl")
    out = _finish(stage, args)
    assert json.loads((run_dir / stage / "manifest.json").read_text())["status"] == "complete"
    assert_no_half_written_artifacts(run_dir)
    resumed = [
        int(w.split("_")[-1]) for w in out.stdout.split() if w.rstrip(",").split("/")[-1].startswith("step_")
    ]
    if resumed and logged:
        assert logged - resumed[0] <= 2, "lost more than one checkpoint interval"
    assert _same(_result(run_dir, stage), _result(reference_dir, stage)), (
        f"{stage} differs after kill at {delay:.1f}s"
    )


def _logged_steps(path: Path) -> int:
    if not path.is_file():
        return 0
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line).get("step", 0))
        except json.JSONDecodeError:
            pass
    return max(steps, default=0)


def _reference(tiny_cfg, last: str) -> Path:
    """An uninterrupted run of every stage up to ``last``."""
    args, run_dir = _args(tiny_cfg, "reference")
    for stage in STAGES[: STAGES.index(last) + 1]:
        _finish(stage, args)
    return run_dir


def test_kill9_pretrain_mid_run(tiny_cfg):
    _trial(tiny_cfg, "pretrain", 8.0, _reference(tiny_cfg, "pretrain"), "kill_pretrain")


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, delay", [("finetune", 8.0), ("evaluate", 7.0), ("data", 4.5), ("export", 5.0)]
)
def test_kill9_once_per_stage(tiny_cfg, stage, delay):
    _trial(tiny_cfg, stage, delay, _reference(tiny_cfg, stage), f"kill_{stage}")


@pytest.mark.slow
def test_kill9_random_trials(tiny_cfg):
    reference = _reference(tiny_cfg, "export")
    rng = random.Random(1234)
    trials = [(s, rng.uniform(1.0, 12.0)) for s in STAGES for _ in range(2)]  # 10 trials
    for i, (stage, delay) in enumerate(trials):
        _trial(tiny_cfg, stage, delay, reference, f"kill_{i}_{stage}")
