"""Where fine-tuning starts: a classifier built from scratch, from an exported folder, or from this run's
pretrained backbone — keeping both BN branches of a dual-BN backbone when asked (RobustSSL's AFF)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from ..errors import UsageError
from ..export import load_backbone_weights
from ..models import ModelConfig, ModelFacts, convert_to_dual_bn
from ..models.pretrained import fresh_head
from ..records import PretrainOutputs
from ..run import RunDir, upstream_summary


def initial_classifier(
    model_cfg: ModelConfig,
    num_classes: int,
    *,
    init: str,
    head_init: str,
    keep_dual_bn: bool,
    bn_branch: str,
    run_dir: RunDir,
) -> tuple[nn.Module, dict | None, bool, ModelFacts]:
    """The network to fine-tune, the upstream it came from (None for scratch), whether it has dual BN, and
    what it is (architecture, weights, normalisation and its source, head: the stage's start line).

    ``init``: ``model`` (as ``model.*`` builds it, ``model.pretrained`` included) | ``scratch`` (random) |
    ``local-dir:<folder>`` | ``pretrain`` (this run's pretrain stage, itself started from ``model.pretrained``).
    ``keep_dual_bn``: with a dual-BN pretrained backbone, load both branches (clean and adversarial) into a
    dual-BN classifier instead of one branch (``bn_branch``) into a plain one."""
    if init == "scratch" and model_cfg.pretrained:
        raise UsageError(
            f"finetune.init=scratch but model.pretrained={model_cfg.pretrained}: use finetune.init=model "
            "to start from those weights, or clear model.pretrained"
        )
    model, facts = model_cfg.build_with_facts(num_classes)
    if head_init == "zero":  # RobustSSL starts every protocol's classifier at 0
        for p in model.get_classifier().parameters():
            nn.init.zeros_(p)
    if init in ("scratch", "model"):
        return (
            model,
            ({"init": f"model.pretrained={model_cfg.pretrained}"} if model_cfg.pretrained else None),
            False,
            facts,
        )
    # a backbone folder has no classifier: the one built above stays fresh
    backbone = replace(facts, head=f"{fresh_head(num_classes)} (a backbone folder has none)")
    if init.startswith("local-dir:"):
        load_backbone_weights(model, Path(init.split(":", 1)[1]), model_cfg.name, "finetune.init")
        return model, {"init": init}, False, replace(backbone, weights=f"finetune.init={init}")
    pretrained, manifest = PretrainOutputs.read(run_dir, "pretrain")
    folders = {b: run_dir.stage("pretrain") / name for b, name in pretrained.backbones.items()}
    if keep_dual_bn and set(folders) == {"clean", "adv"}:
        convert_to_dual_bn(
            model, branch="adv"
        )  # un-routed forwards (validation, export) use the adversarial branch
        load_backbone_weights(model, folders, model_cfg.name, "finetune.init")
        weights = f"this run's pretrained backbone ({', '.join(map(str, folders.values()))}, dual BN)"
        return (
            model,
            {**upstream_summary(manifest), "bn_branch": "dual (clean + adv)"},
            True,
            replace(backbone, weights=weights),
        )
    branch = bn_branch if bn_branch in folders else next(iter(folders))
    load_backbone_weights(model, folders[branch], model_cfg.name, "finetune.init")
    weights = f"this run's pretrained backbone ({folders[branch]})"
    return (
        model,
        {**upstream_summary(manifest), "bn_branch": branch},
        False,
        replace(backbone, weights=weights),
    )
