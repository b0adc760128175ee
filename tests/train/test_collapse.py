"""Catastrophic overfitting is caught by the per-epoch validation: a warning line, a metrics flag, the
manifest keys, and ``best`` left at the last good epoch; sampling noise on a small split is not a collapse."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from pipeline.attacks import AttackConfig
from pipeline.models import build_model
from pipeline.train import TrainState, selection
from pipeline.train.selection import is_collapse, select_epoch


def test_collapse_needs_the_ratio_and_more_than_noise():
    assert is_collapse(best=0.40, now=0.05, n=1000, ratio=0.5)
    assert not is_collapse(best=0.40, now=0.25, n=1000, ratio=0.5)  # a drop, but not below half
    assert not is_collapse(best=0.10, now=0.04, n=50, ratio=0.5)  # below half, but 5 vs 2 of 50 is noise
    assert is_collapse(best=0.10, now=0.01, n=1000, ratio=0.5)
    assert not is_collapse(best=0.40, now=0.0, n=1000, ratio=0.0)  # off


def test_select_epoch_warns_and_keeps_the_last_good_best(monkeypatch, tmp_path, capsys):
    torch.manual_seed(0)
    raw = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3)
    # robust accuracy per epoch: rising, then the single-step collapse, then a partial recovery below the best
    robust = iter([0.30, 0.42, 0.03, 0.30])
    monkeypatch.setattr(
        selection,
        "validation_accuracy",
        lambda *a, **k: {"val_clean_acc": 0.6, "val_robust_acc": next(robust), "val_n": 1000},
    )
    saved = []
    monkeypatch.setattr(selection, "save_timm_folder", lambda model, folder: saved.append(folder))
    acc, state = Accelerator(cpu=True), TrainState()
    val = (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, dtype=torch.long))
    rows = [
        select_epoch(raw, val, AttackConfig(steps=10), acc, 8, 0, e, state, tmp_path / "best", 0.5)
        for e in range(4)
    ]
    assert [r.get("collapse", False) for r in rows] == [False, False, True, False]
    assert len(saved) == 2 and state.extra["best_epoch"] == 2  # best/ written at epochs 1 and 2 only
    assert state.extra["collapse_epoch"] == 3
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "catastrophic overfitting" in ln]
    assert lines == [state.extra["collapse_warning"]]
    assert "epoch 3" in lines[0] and "3.0%" in lines[0] and "best/ keeps epoch 2" in lines[0]


def test_finetune_stage_reports_a_collapse_in_log_metrics_and_manifest(tiny_cfg, monkeypatch, capsys):
    """The stage wiring: nfgsm as the objective, and a (scripted) collapse in its epoch rows and manifest."""
    import json

    from pipeline.run import RunDir
    from stages.finetune import run_finetune

    robust = iter([0.40, 0.02, 0.05])
    monkeypatch.setattr(
        selection,
        "validation_accuracy",
        lambda *a, **k: {"val_clean_acc": 0.5, "val_robust_acc": next(robust), "val_n": 1000},
    )
    cfg = tiny_cfg("finetune.init=scratch", "finetune.epochs=3", "finetune.objective=nfgsm")
    outputs = run_finetune(cfg)
    assert (outputs["objective"], outputs["attack"]) == ("nfgsm", "nfgsm")
    assert outputs["best_epoch"] == 1 and outputs["collapse_epoch"] == 2
    manifest = json.loads((RunDir.of(cfg.run).stage("finetune") / "manifest.json").read_text())
    assert manifest["outputs"]["collapse_warning"] == outputs["collapse_warning"]
    rows = [
        json.loads(ln)
        for ln in (RunDir.of(cfg.run).stage("finetune") / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r.get("collapse", False) for r in rows if r["kind"] == "epoch"] == [False, True, True]
    assert capsys.readouterr().out.count("WARNING robustness collapse at epoch") == 2


def test_collapse_ratio_is_not_part_of_the_resume_fingerprint():
    from pipeline.config import checkpoint_fingerprint, load_config

    base = checkpoint_fingerprint(load_config(None, []), "finetune")[0]
    assert checkpoint_fingerprint(load_config(None, ["finetune.collapse_ratio=0.3"]), "finetune")[0] == base
    assert checkpoint_fingerprint(load_config(None, ["finetune.objective=nfgsm"]), "finetune")[0] != base
