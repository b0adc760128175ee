"""`pretrain.tensorboard=true` / `finetune.tensorboard=true`: accelerate's TensorBoard tracker receives the
same per-step scalars as metrics.jsonl, under <run>/<stage>/tensorboard."""

import json

import pytest

from pipeline.run import RunDir
from stages.finetune import run_finetune
from stages.pretrain import run_pretrain

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(log_dir):
    files = list(log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {log_dir}"
    acc = event_accumulator.EventAccumulator(str(files[0].parent))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_tracker_logs_the_step_metrics(tiny_cfg):
    cfg = tiny_cfg("pretrain.method=acl", "pretrain.tensorboard=true", "finetune.tensorboard=true")
    run_pretrain(cfg)
    run_finetune(cfg)
    for stage in ("pretrain", "finetune"):
        d = RunDir.of(cfg.run).stage(stage)
        logged = _scalars(d / "tensorboard")
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in rows if r["kind"] == "step"]
        assert len(losses) == 2
        assert logged["loss"] == pytest.approx(losses, rel=1e-6)
        assert "lr" in logged
    assert "attack_gain" in _scalars(RunDir.of(cfg.run).stage("pretrain") / "tensorboard")
