"""The export stage: the fine-tuned classifier and its backbone as timm folders, plus a model card.

``timm.create_model("local-dir:<dir>", pretrained=True)`` rebuilds either folder once ``pipeline`` is
imported (our architectures register themselves with timm). Inputs are [0,1] images: normalisation is
the model's first layer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .checkpoint_io import load_timm_folder, max_logit_diff, save_timm_folder
from .config import finetune_objective
from .errors import UsageError
from .run import StageRun, atomic_write_text, git_commit, read_manifest, stage_dir, upstream_summary


def _optional_manifest(cfg, stage: str) -> dict | None:
    try:
        return read_manifest(cfg, stage)
    except UsageError:
        return None


def _fmt(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "n/a"


def model_card(cfg, arch: str, finetune: dict, pretrain: dict | None, data: dict | None, report: dict | None) -> str:
    f, p = cfg.finetune, cfg.pretrain
    ft = finetune["outputs"]
    size = data["outputs"]["image_size"] if data else cfg.data.image_size
    lines = [
        f"# {arch} — robust backbone and classifier ({cfg.run.name})", "",
        "## Load it", "",
        "```python",
        "import pipeline, timm  # importing pipeline registers the architecture with timm",
        'backbone = timm.create_model("local-dir:backbone", pretrained=True)  # (B,3,H,W) in [0,1] -> features',
        "```", "",
        "## Model", "",
        f"- architecture: `{arch}` (timm), input {size}×{size} RGB in **[0,1]**; normalisation "
        f"(mean {list(cfg.model.mean)}, std {list(cfg.model.std)}) is inside the model",
        "- `backbone/`: pooled features (`num_classes=0`); `classifier/`: "
        f"{ft.get('num_classes', cfg.data.num_classes)}-class logits", "",
        "## Training chain", "",
        f"- pretrain: {p.method if pretrain else 'none'}"
        + (f" ({p.epochs} epochs, PGD-{p.attack.steps} ε={p.attack.eps:.4f} {p.attack.norm}, dual BN {pretrain['outputs'].get('dual_bn')})" if pretrain else ""),
        f"- finetune: init `{f.init}`, protocol `{f.protocol}`, objective `{finetune_objective(f)}`"
        f" (β={f.beta}), PGD-{f.attack.steps} ε={f.attack.eps:.4f} {f.attack.norm}, {f.epochs} epochs",
        f"- exported checkpoint: `{cfg.export.checkpoint}` (selection: {ft.get('selection')}, "
        f"best epoch {ft.get('best_epoch', 'n/a')})", "",
        "## Data", "",
        f"- dataset `{cfg.data.dataset}`; classes: {data['outputs']['classes'] if data else 'n/a'}",
        f"- splits: { {k: v.get('count') for k, v in data['outputs']['splits'].items()} if data else 'n/a'}",
        f"- dataset manifest: `{data['outputs'].get('dataset_json', 'user shards') if data else 'n/a'}`", "",
        "## Evaluation", "",
    ]
    if report:
        tm = report.get("threat_model", {})
        ra = report.get("robust_accuracy", {})
        lines += ["| n | norm | ε | clean | PGD | AutoAttack |", "|---|---|---|---|---|---|",
                  f"| {report.get('n_examples')} | {tm.get('norm')} | {tm.get('eps', 0):.4f} | "
                  f"{_fmt(report.get('clean_accuracy'))} | {_fmt(ra.get('pgd'))} | {_fmt(ra.get('autoattack'))} |", ""]
        if report.get("warnings"):
            lines += ["**Evaluation warnings:** " + "; ".join(map(str, report["warnings"])), ""]
    else:
        lines += ["Not evaluated yet: run `make evaluate`, then `make export` again.", ""]
    lines += ["## Provenance", "", f"- code commit: `{git_commit()}`", ""]
    return "\n".join(lines)


def run_export(cfg) -> dict:
    from .config import to_yaml

    finetune = read_manifest(cfg, "finetune")
    source = stage_dir(cfg, "finetune") / finetune["outputs"][cfg.export.checkpoint]
    classifier = load_timm_folder(source)
    arch = json.loads((source / "config.json").read_text())["architecture"]
    evaluate = _optional_manifest(cfg, "evaluate")
    report = None
    if evaluate and (stage_dir(cfg, "evaluate") / "report.json").is_file():
        report = json.loads((stage_dir(cfg, "evaluate") / "report.json").read_text())
    with StageRun(cfg, "export", to_yaml(cfg), upstream_summary(finetune)) as run:
        save_timm_folder(classifier, run.dir / "classifier")
        backbone = copy.deepcopy(classifier)
        backbone.reset_classifier(0)
        save_timm_folder(backbone, run.dir / "backbone")
        atomic_write_text(run.dir / "README.md", model_card(cfg, arch, finetune, _optional_manifest(cfg, "pretrain"),
                                                           _optional_manifest(cfg, "data"), report))
        # round trip: what a user reloads must be what we trained
        x = torch.rand(8, 3, cfg.data.image_size, cfg.data.image_size, generator=torch.Generator().manual_seed(0))
        run.outputs.update(
            classifier="classifier", backbone="backbone", model_card="README.md", architecture=arch,
            source=str(Path(source)), evaluated=report is not None,
            roundtrip_max_logit_diff=max_logit_diff(classifier, load_timm_folder(run.dir / "classifier"), x),
            roundtrip_max_feature_diff=max_logit_diff(backbone, load_timm_folder(run.dir / "backbone"), x),
        )
    print(f"export: {run.dir}/classifier and {run.dir}/backbone (timm local-dir folders), model card README.md")
    return run.outputs
