"""The model card (``README.md``) written next to exported folders.

``timm.create_model("local-dir:<dir>", pretrained=True)`` rebuilds either folder once ``pipeline`` is
imported (our architectures register themselves with timm). Inputs are [0,1] images: normalisation is
the model's first layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import ModelConfig
from ..run import git_commit


@dataclass
class CardFacts:
    """What the card says; the export stage gathers it from the config and the upstream manifests."""

    run_name: str
    arch: str
    model: ModelConfig
    image_size: int
    num_classes: int
    training: list[str]  # one bullet per training step (pretrain, finetune, the exported checkpoint)
    dataset: str
    data_manifest: dict | None = None  # the data stage's manifest outputs, if there is one
    report: dict | None = None  # the evaluation's report.json, if evaluated
    extra: dict = field(default_factory=dict)


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "n/a"


def _data_lines(facts: CardFacts) -> list[str]:
    d = facts.data_manifest
    return [
        f"- dataset `{facts.dataset}`; classes: {d['classes'] if d else 'n/a'}",
        f"- splits: { {k: v.get('count') for k, v in d['splits'].items()} if d else 'n/a'}",
        f"- dataset manifest: `{d.get('dataset_json', 'user shards') if d else 'n/a'}`", "",
    ]


def _evaluation_lines(report: dict | None) -> list[str]:
    if not report:
        return ["Not evaluated yet: run `make evaluate`, then `make export` again.", ""]
    tm, ra = report.get("threat_model", {}), report.get("robust_accuracy", {})
    lines = ["| n | norm | ε | clean | PGD | AutoAttack |", "|---|---|---|---|---|---|",
             f"| {report.get('n_examples')} | {tm.get('norm')} | {tm.get('eps', 0):.4f} | "
             f"{_pct(report.get('clean_accuracy'))} | {_pct(ra.get('pgd'))} | {_pct(ra.get('autoattack'))} |", ""]
    if report.get("warnings"):
        lines += ["**Evaluation warnings:** " + "; ".join(map(str, report["warnings"])), ""]
    return lines


def model_card(facts: CardFacts) -> str:
    m = facts.model
    lines = [
        f"# {facts.arch} — robust backbone and classifier ({facts.run_name})", "",
        "## Load it", "",
        "```python",
        "import pipeline, timm  # importing pipeline registers the architecture with timm",
        'backbone = timm.create_model("local-dir:backbone", pretrained=True)  # (B,3,H,W) in [0,1] -> features',
        "```", "",
        "## Model", "",
        f"- architecture: `{facts.arch}` (timm), input {facts.image_size}×{facts.image_size} RGB in **[0,1]**; "
        f"normalisation (mean {list(m.mean)}, std {list(m.std)}) is inside the model",
        f"- `backbone/`: pooled features (`num_classes=0`); `classifier/`: {facts.num_classes}-class logits", "",
        "## Training chain", "", *facts.training, "",
        "## Data", "", *_data_lines(facts),
        "## Evaluation", "", *_evaluation_lines(facts.report),
        "## Provenance", "", f"- code commit: `{git_commit()}`", "",
    ]
    return "\n".join(lines)
