"""An interrupted and resumed run ends with the same weights as an uninterrupted one (CPU, 1 process)."""

import pytest
import torch
from safetensors.torch import load_file

from pipeline.run import RunDir
from pipeline.train import loop as train_mod
from stages.finetune import run_finetune
from stages.pretrain import run_pretrain


def _interrupt_at(monkeypatch, step: int):
    original = train_mod.Trainer._one_step

    def one_step(self, batch, bar):
        if self.state.global_step == step:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill between checkpoints) leaves behind
        return original(self, batch, bar)

    monkeypatch.setattr(train_mod.Trainer, "_one_step", one_step)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("method", ["acl", "dynacl"])
def test_pretrain_resume_gives_identical_weights(tiny_cfg, monkeypatch, method):
    common = [
        f"pretrain.method={method}",
        "pretrain.epochs=2",
        "pretrain.checkpoint_every_steps=1",
        "pretrain.dynacl.strength_period_epochs=1",
    ]
    straight = tiny_cfg("run.name=straight", *common)
    run_pretrain(straight)
    resumed = tiny_cfg("run.name=resumed", *common)
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)  # mid-epoch 2, one step after a checkpoint
        with pytest.raises(KeyboardInterrupt):
            run_pretrain(resumed)
    run_pretrain(resumed)
    a = _weights(RunDir.of(straight.run).stage("pretrain") / "backbone_adv")
    b = _weights(RunDir.of(resumed.run).stage("pretrain") / "backbone_adv")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_finetune_resume_gives_identical_weights(tiny_cfg, monkeypatch):
    common = ["finetune.init=scratch", "finetune.epochs=2", "finetune.checkpoint_every_steps=1"]
    straight = tiny_cfg("run.name=straight", *common)
    run_finetune(straight)
    resumed = tiny_cfg("run.name=resumed", *common)
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(resumed)
    run_finetune(resumed)
    a = _weights(RunDir.of(straight.run).stage("finetune") / "final")
    b = _weights(RunDir.of(resumed.run).stage("finetune") / "final")
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_bf16_autocast_and_gradient_accumulation_run(tiny_cfg):
    # a subprocess: accelerate's state is a per-process singleton and cannot switch to bf16 in place
    import json
    import subprocess
    import sys
    from pathlib import Path

    cfg = tiny_cfg()
    args = [
        f"run.root={cfg.run.root}",
        "run.name=bf16",
        "run.progress=false",
        "run.mixed_precision=bf16",
        "data.dataset=shards",
        f"data.train_urls={cfg.data.train_urls}",
        f"data.test_urls={cfg.data.test_urls}",
        "data.num_classes=4",
        "pretrain.grad_accum_steps=2",
        "pretrain.batch_size=16",
        "pretrain.epochs=1",
        "pretrain.attack.steps=1",
    ]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "stages.pretrain", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(cfg.run.root) / "bf16" / "pretrain"
    assert (
        json.loads((run_dir / "manifest.json").read_text())["outputs"]["steps"] == 4
    )  # 64 / 16 micro-batches
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if r["kind"] == "step"]
    # 2 optimiser steps (warm-up 1, cosine to 0), logged after each of the 4 micro-batches; a schedule that
    # stepped per micro-batch would read [0.3, 0.0, 0.0, 0.0]
    assert lrs == pytest.approx([0.3, 0.3, 0.3, 0.0])
    w = _weights(run_dir / "backbone_adv")
    assert all(torch.isfinite(v.float()).all() for v in w.values())


def test_resume_tolerates_logging_and_tracker_changes(tiny_cfg, monkeypatch):
    common = ["finetune.init=scratch", "finetune.epochs=2", "finetune.checkpoint_every_steps=1"]
    straight = tiny_cfg("run.name=straight", *common)
    run_finetune(straight)
    resumed = tiny_cfg("run.name=resumed", *common, "finetune.log_every_steps=1")
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(resumed)
    # logging, trackers and checkpoint retention changed between the kill and the resume: harmless
    run_finetune(
        tiny_cfg(
            "run.name=resumed",
            *common,
            "finetune.log_every_steps=2",
            "finetune.tensorboard=true",
            "finetune.keep_checkpoints=3",
        )
    )
    a = _weights(RunDir.of(straight.run).stage("finetune") / "final")
    b = _weights(RunDir.of(resumed.run).stage("finetune") / "final")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_refusal_to_resume_names_the_changed_keys(tiny_cfg, monkeypatch):
    from pipeline.errors import UsageError

    common = ["finetune.init=scratch", "finetune.epochs=2", "finetune.checkpoint_every_steps=1"]
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(tiny_cfg(*common))
    with pytest.raises(
        UsageError,
        match=r"different finetune configuration \(changed: finetune\.beta, "
        r"finetune\.optim\.lr\); resume with the same settings",
    ):
        run_finetune(tiny_cfg(*common, "finetune.optim.lr=0.05", "finetune.beta=3.0"))


def test_resume_with_other_speed_switches_and_refusal_before_loading(tiny_cfg, monkeypatch):
    """run.channels_last / run.compile are not part of what a checkpoint depends on; a changed method is
    refused by name before its (differently shaped) weights are loaded."""
    from pipeline.errors import UsageError

    common = ["pretrain.epochs=2", "pretrain.checkpoint_every_steps=1"]
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            run_pretrain(tiny_cfg(*common, "run.channels_last=true"))
    with pytest.raises(UsageError, match=r"different pretrain configuration \(changed: .*pretrain\.method"):
        run_pretrain(tiny_cfg(*common, "run.channels_last=false", "pretrain.method=dynacl"))
    outputs = run_pretrain(tiny_cfg(*common, "run.channels_last=false"))
    assert outputs["steps"] == 4
