"""One pretrained backbone, three protocols: named fine-tunes in one run directory, AFF keeping dual BN
(both branches loaded from the pretrain stage, the adversarial one exported), and `make protocols`."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from pipeline.export import load_timm_folder
from pipeline.run import RunDir
from stages.pretrain import run_pretrain
from stages.protocols import run_protocols


def test_protocols_from_one_backbone_with_dual_bn_aff(tiny_cfg, capsys):
    cfg = tiny_cfg(
        "evaluate.autoattack.attacks=[apgd-ce]",
        "evaluate.pgd.steps=2",
        "finetune.head_init=zero",
        "protocols.aff=[finetune.optim.lr=0.05]",
    )
    run_pretrain(cfg)
    out = run_protocols(cfg)
    run_dir = RunDir.of(cfg.run)
    assert set(out["protocols"]) == {"slf", "alf", "aff"}
    table = capsys.readouterr().out
    assert "| SLF |" in table and "| ALF |" in table and "| AFF |" in table
    for p in ("slf", "alf", "aff"):
        ft = json.loads((run_dir.stage(f"finetune_{p}") / "manifest.json").read_text())
        assert ft["status"] == "complete" and ft["outputs"]["protocol"] == p
        assert ft["outputs"]["dual_bn"] == (
            p == "aff"
        )  # only AFF trains the backbone: it keeps both branches
        report = json.loads((run_dir.stage(f"evaluate_{p}") / "report.json").read_text())
        assert out["protocols"][p]["clean_accuracy"] == report["clean_accuracy"]
    # the AFF classifier is an ordinary timm model (the adversarial branch), loadable and of single BN
    model = load_timm_folder(run_dir.stage("finetune_aff") / "final")
    assert not any("clean" in k or ".adv." in k for k in model.state_dict())
    # AFF started from both pretrained branches: after training they differ from either pretrained one
    pre_clean = load_file(str(run_dir.stage("pretrain") / "backbone_clean" / "model.safetensors"))
    final = load_file(str(run_dir.stage("finetune_aff") / "final" / "model.safetensors"))
    bn = next(k for k in pre_clean if k.endswith("bn1.running_mean"))
    assert not torch.equal(pre_clean[bn], final[bn])
    # SLF kept the backbone bit-identical to the pretrained adversarial branch and started its head at 0
    pre_adv = load_file(str(run_dir.stage("pretrain") / "backbone_adv" / "model.safetensors"))
    slf = load_file(str(run_dir.stage("finetune_slf") / "final" / "model.safetensors"))
    assert all(torch.equal(pre_adv[k], slf[k]) for k in pre_adv if not k.startswith("fc."))
    # a second call reuses what is complete
    again = run_protocols(cfg)
    assert again["protocols"] == out["protocols"]
