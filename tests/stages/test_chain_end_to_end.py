"""The whole chain data → pretrain → finetune → evaluate → export on tiny generated shards."""

import json
import subprocess
from pathlib import Path

import pytest
import timm
import torch

from pipeline.errors import UpstreamMissing
from pipeline.export import load_timm_folder
from pipeline.run import RunDir
from stages.evaluate import run_evaluate
from stages.export import run_export
from stages.finetune import run_finetune
from stages.pretrain import run_pretrain


def test_chain_artifacts_and_report(tiny_cfg):
    cfg = tiny_cfg()
    run_pretrain(cfg)
    run_finetune(cfg)
    run_evaluate(cfg)
    run_export(cfg)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent
    ).stdout.strip()
    for stage in ("data", "pretrain", "finetune", "evaluate", "export"):
        d = RunDir.of(cfg.run).stage(stage)
        manifest = json.loads((d / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["stage"] == stage and manifest["run"] == "t"
        # the commit of the code that ran (-dirty when the working tree had changes), never a placeholder
        assert manifest["git_commit"].removesuffix("-dirty") == (head or "unknown")
        assert (d / "config.yaml").is_file()
    pre = RunDir.of(cfg.run).stage("pretrain")
    assert (pre / "backbone_adv" / "model.safetensors").is_file() and (pre / "backbone_clean").is_dir()
    rows = [json.loads(line) for line in (pre / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if r["kind"] == "step")
    assert {"loss_clean", "loss_adv", "attack_gain", "lr", "images_per_s", "forward_passes"} <= set(step)
    assert (pre / "loss_curve.png").is_file()
    report = json.loads((RunDir.of(cfg.run).stage("evaluate") / "report.json").read_text())
    assert report["n_examples"] == 16 and report["seed"] == 0
    assert report["threat_model"] == {"norm": "Linf", "eps": pytest.approx(8 / 255)}
    clean, ra = report["clean_accuracy"], report["robust_accuracy"]
    assert 0 <= ra["autoattack"] <= ra["pgd"] <= clean <= 1
    # the markdown report states the same numbers as report.json
    md = (RunDir.of(cfg.run).stage("evaluate") / "report.md").read_text()
    # (each number with its 95% Clopper–Pearson interval and n)
    assert f"| clean accuracy | {100 * clean:.2f}% [" in md
    assert f"| PGD-5 robust accuracy | {100 * ra['pgd']:.2f}% [" in md
    assert f"robust accuracy | {100 * ra['autoattack']:.2f}% [" in md and "(n=16)" in md
    # export: timm folders that give the fine-tuned model's logits and features
    exp = RunDir.of(cfg.run).stage("export")
    finetuned = load_timm_folder(RunDir.of(cfg.run).stage("finetune") / "best")
    classifier = timm.create_model(f"local-dir:{exp / 'classifier'}", pretrained=True).eval()
    backbone = timm.create_model(f"local-dir:{exp / 'backbone'}", pretrained=True).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(classifier(x), finetuned(x), atol=1e-6)
        feats = finetuned.forward_head(finetuned.forward_features(x), pre_logits=True)
        assert torch.allclose(backbone(x), feats, atol=1e-6)
    card = (exp / "README.md").read_text()
    assert "local-dir:backbone" in card and "AutoAttack" in card and "[0,1]" in card


def test_missing_upstream_names_the_make_target(tiny_cfg):
    cfg = tiny_cfg("run.name=fresh")
    with pytest.raises(UpstreamMissing, match="run `make finetune` first"):
        run_export(cfg)
    with pytest.raises(UpstreamMissing, match="run `make pretrain` first"):
        run_finetune(cfg)
