"""The model card (``README.md``) written next to exported folders.

``timm.create_model("local-dir:<dir>", pretrained=True)`` rebuilds either folder once ``pipeline`` is
imported (our architectures register themselves with timm). Inputs are [0,1] images: normalisation is
the model's first layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..evaluation.intervals import format_accuracy, interval_of
from ..evaluation.measurements.corruptions import corruption_table
from ..evaluation.measurements.threats import threat_table
from ..evaluation.measurements.transfer import only_text as _only_text
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
    registered_as: str = ""  # the timm name the folder loads as, when not the architecture (timm_any)
    normalization: tuple | None = None  # (mean, std, source) as the fine-tune recorded it; None: model's rule


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "n/a"


def _data_lines(facts: CardFacts) -> list[str]:
    d = facts.data_manifest
    return [
        f"- dataset `{facts.dataset}`; classes: {d['classes'] if d else 'n/a'}",
        f"- splits: { {k: v.get('count') for k, v in d['splits'].items()} if d else 'n/a' }",
        f"- dataset manifest: `{d.get('dataset_json', 'user shards') if d else 'n/a'}`",
        "",
    ]


def _with_interval(acc, ci, n) -> str:
    """``51.00% [40.8, 61.1] (n=100)``; a report.json written before intervals existed gets its interval
    computed here (its accuracy is exactly correct/n)."""
    if not isinstance(acc, (int, float)) or not isinstance(n, int) or n <= 0:
        return _pct(acc)
    return format_accuracy(acc, ci or interval_of(acc, n), n)


def _evaluation_lines(report: dict | None) -> list[str]:
    if not report:
        return ["Not evaluated yet: run `make evaluate`, then `make export` again.", ""]
    tm, ra = report.get("threat_model", {}), report.get("robust_accuracy", {})
    ci, n = report.get("robust_accuracy_ci") or {}, report.get("n_examples")
    n_aa = (report.get("autoattack") or {}).get("n_examples", n)
    cells = [
        _with_interval(report.get("clean_accuracy"), report.get("clean_accuracy_ci"), n),
        _with_interval(ra.get("pgd"), ci.get("pgd"), n),
        _with_interval(ra.get("autoattack"), ci.get("autoattack"), n_aa),
    ]
    if ra.get("autoattack") is None and isinstance(ra.get("autoattack_fast"), (int, float)):
        # evaluate.autoattack.version=fast: its number, labelled, never passed off as AutoAttack's
        fast = _with_interval(ra["autoattack_fast"], ci.get("autoattack_fast"), n_aa)
        cells[2] = f"not run; **fast (not standard AutoAttack)**: {fast}"
    if len(report.get("threats") or []) > 1:  # evaluate.threats: one row per threat model
        rows = threat_table(report["threats"])
    else:
        rows = [
            "| norm | ε | clean | PGD | AutoAttack |",
            "|---|---|---|---|---|",
            f"| {tm.get('norm')} | {tm.get('eps', 0):.4f} | {' | '.join(cells)} |",
        ]
    lines = [
        *rows,
        "",
        "Accuracy [95% Clopper–Pearson interval] (n = points evaluated).",
        "",
        *_extra_lines(report),
    ]
    for note in (n for n in report.get("notes", []) if "bf16" in n):  # evaluate.precision=bf16
        lines += [f"Note: {note}", ""]
    if report.get("warnings"):
        lines += ["**Evaluation warnings:** " + "; ".join(map(str, report["warnings"])), ""]
    return lines


def _extra_lines(report: dict) -> list[str]:
    """The common-corruption mean and the transfer check, when the evaluation measured them."""
    lines = []
    c, t = report.get("corruptions"), report.get("transfer")
    if c:
        mean = format_accuracy(c["mean_accuracy"], c.get("mean_accuracy_ci"), c["n_examples"])
        lines += [
            f"Common corruptions ({len(c['names'])} × {len(c['severities'])} severities, {c['source']}): "
            f"mean accuracy {mean} (its interval: {c.get('mean_interval_method', 'n/a')}). Accuracy in % [95% "
            "Clopper–Pearson interval]:",
            "",
            *corruption_table(c),
            "",
        ]
    if t:
        robust = format_accuracy(t["robust_accuracy"], t.get("robust_accuracy_ci"), t["n_examples"])
        only = f"; broken only by it: {_only_text(t)}" if "n_compared" in t else ""
        same = (
            " The surrogate has the evaluated model's weights (the best epoch was the last): this is a white-box "
            "rerun, not a transfer check."
            if t.get("same_weights_as_model")
            else ""
        )
        lines += [f"Transfer attack from `{t['surrogate']}`: robust accuracy {robust}{only}.{same}", ""]
    return lines


def model_card(facts: CardFacts) -> str:
    mean, std, source = facts.normalization or facts.model.normalization()
    wrapper = (
        f", inside this project's normalising wrapper `{facts.registered_as}`" if facts.registered_as else ""
    )
    lines = [
        f"# {facts.arch} — robust backbone and classifier ({facts.run_name})",
        "",
        "## Load it",
        "",
        "```python",
        "import pipeline, timm  # importing pipeline registers the architecture with timm",
        'backbone = timm.create_model("local-dir:backbone", pretrained=True)  # (B,3,H,W) in [0,1] -> features',
        "```",
        "",
        "## Model",
        "",
        f"- architecture: `{facts.arch}` (timm{wrapper}), input {facts.image_size}×{facts.image_size} RGB in **[0,1]**; "
        f"normalisation (mean {list(mean)}, std {list(std)}, from {source}) is inside the model",
        f"- `backbone/`: pooled features (`num_classes=0`); `classifier/`: {facts.num_classes}-class logits",
        "",
        "## Training chain",
        "",
        *facts.training,
        "",
        "## Data",
        "",
        *_data_lines(facts),
        "## Evaluation",
        "",
        *_evaluation_lines(facts.report),
        "## Provenance",
        "",
        f"- code commit: `{git_commit()}`",
        "",
    ]
    return "\n".join(lines)
