"""The export stage: the fine-tuned classifier and its backbone as timm folders, plus a model card.

``runs/<run>/export/{classifier,backbone}/`` load with ``timm.create_model("local-dir:<dir>",
pretrained=True)`` after ``import pipeline``. The stage reloads both and records the round-trip
difference in its manifest.
"""

from __future__ import annotations

import copy
import json

import torch

from pipeline.config import ExperimentConfig, to_yaml
from pipeline.export import (
    CardFacts,
    folder_facts,
    load_timm_folder,
    max_logit_diff,
    model_card,
    save_timm_folder,
)
from pipeline.io import atomic_write_text
from pipeline.records import FinetuneOutputs, PretrainOutputs
from pipeline.run import RunDir, StageRun, upstream_summary

from ._cli import main

ROUNDTRIP_TOLERANCE = 1e-6


def training_chain(cfg: ExperimentConfig, pretrain: PretrainOutputs | None, ft: FinetuneOutputs) -> list[str]:
    """The model card's bullets: how the exported weights were made."""
    p, f = cfg.pretrain, cfg.finetune
    pre = f"- pretrain: {p.method if pretrain else 'none'}"
    if pretrain:
        pre += (
            f" ({p.epochs} epochs, PGD-{p.attack.steps} ε={p.attack.eps:.4f} {p.attack.norm}, "
            f"dual BN {pretrain.dual_bn})"
        )
    return [
        pre,
        f"- finetune: init `{f.init}`, protocol `{f.protocol}`, objective `{f.objective_name()}`"
        f" (β={f.beta}), PGD-{f.attack.steps} ε={f.attack.eps:.4f} {f.attack.norm}, {f.epochs} epochs",
        f"- exported checkpoint: `{cfg.export.checkpoint}` (selection: {ft.selection}, "
        f"best epoch {ft.best_epoch if ft.best_epoch is not None else 'n/a'})",
    ]


def run_export(cfg: ExperimentConfig) -> dict:
    run_dir = RunDir.of(cfg.run)
    ft, finetune = FinetuneOutputs.read(run_dir, cfg.finetune.stage(), "finetune")
    source = run_dir.stage(cfg.finetune.stage()) / ft.folder(cfg.export.checkpoint)
    classifier = load_timm_folder(source)
    registered = json.loads((source / "config.json").read_text())["architecture"]
    arch = folder_facts(source)["architecture"]  # resnet18, not the timm_any wrapper it is registered as
    evaluate = cfg.finetune.stage("evaluate")
    report_file = run_dir.stage(evaluate) / "report.json"
    report = (
        json.loads(report_file.read_text())
        if run_dir.optional_manifest(evaluate) and report_file.is_file()
        else None
    )
    data = run_dir.optional_manifest("data")
    pretrain = run_dir.optional_manifest("pretrain")
    facts = CardFacts(
        run_name=cfg.run.name,
        arch=arch,
        model=cfg.model,
        image_size=data["outputs"]["image_size"] if data else cfg.data.image_size,
        num_classes=ft.num_classes,
        training=training_chain(
            cfg, PretrainOutputs.from_json(pretrain["outputs"]) if pretrain else None, ft
        ),
        dataset=cfg.data.dataset,
        data_manifest=data["outputs"] if data else None,
        report=report,
        registered_as=registered if registered != arch else "",
        # the fine-tune's account of its normalisation (manifests before it: the config's rule again)
        normalization=(ft.model["mean"], ft.model["std"], ft.model["normalization_source"])
        if ft.model
        else None,
    )
    with StageRun(run_dir, cfg.finetune.stage("export"), to_yaml(cfg), upstream_summary(finetune)) as run:
        save_timm_folder(classifier, run.dir / "classifier")
        backbone = copy.deepcopy(classifier)
        backbone.reset_classifier(0)
        save_timm_folder(backbone, run.dir / "backbone")
        atomic_write_text(run.dir / "README.md", model_card(facts))
        # round trip: what a user reloads must be what we trained
        x = torch.rand(
            8, 3, cfg.data.image_size, cfg.data.image_size, generator=torch.Generator().manual_seed(0)
        )
        run.outputs.update(
            classifier="classifier",
            backbone="backbone",
            model_card="README.md",
            architecture=arch,
            source=str(source),
            evaluated=report is not None,
            roundtrip_max_logit_diff=max_logit_diff(classifier, load_timm_folder(run.dir / "classifier"), x),
            roundtrip_max_feature_diff=max_logit_diff(backbone, load_timm_folder(run.dir / "backbone"), x),
        )
        # what a user reloads must be what we trained: a difference is a bug, never a rounding matter
        worst = max(run.outputs["roundtrip_max_logit_diff"], run.outputs["roundtrip_max_feature_diff"])
        if not worst <= ROUNDTRIP_TOLERANCE:
            raise RuntimeError(
                f"exported folders do not reproduce the model (max difference {worst:.3g} > "
                f"{ROUNDTRIP_TOLERANCE}); please report this"
            )
    print(
        f"export: {run.dir}/classifier and {run.dir}/backbone (timm local-dir folders), model card README.md"
    )
    return run.outputs


if __name__ == "__main__":
    main("export", run_export)
