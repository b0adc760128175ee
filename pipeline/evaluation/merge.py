"""Turn the finished chunks into one :class:`EvalReport`: each measurement merges its own records, in
registry order, then the checks run on the merged results."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from .config import EvaluateConfig
from .intervals import LEVEL, METHOD
from .masking import run_checks
from .measurements import Merged, in_order
from .report import EvalReport


def build_report(
    records: list[dict],
    tensors: list[dict[str, torch.Tensor]],
    cfg: EvaluateConfig,
    *,
    num_classes: int,
    extra: dict,
) -> EvalReport:
    """Merge chunk records (in chunk order) and compute every metric and check.

    Args:
        records: one JSON record per chunk, sorted by chunk index.
        tensors: the matching tensors (probabilities).
        cfg: the evaluation settings.
        num_classes: number of classes.
        extra: run facts to copy into the report (``distributed``, ``versions``, ``notes``, ``wall_seconds``).
    """
    y = torch.tensor([v for r in records for v in r["label"]])
    headlines = [m.headline for m in in_order() if m.headline is not None]
    report = EvalReport(
        n_examples=int(y.shape[0]),
        num_classes=num_classes,
        clean_accuracy=math.nan,  # the clean measurement fills it in, with its interval
        robust_accuracy=dict.fromkeys(headlines),
        threat_model={"norm": cfg.norm, "eps": cfg.eps},
        seed=cfg.seed,
        robust_accuracy_ci=dict.fromkeys(headlines),
        intervals={"method": METHOD, "level": LEVEL},
        per_sample={"index": list(range(y.shape[0])), "label": y.tolist()},
    )
    merged = Merged(cfg, num_classes, y)
    for m in in_order():
        if m.enabled(cfg):
            parts = [m.Record.read(r, t) for r, t in zip(records, tensors, strict=True)]
            merged.results[m.name] = m.merge([p for p in parts if p is not None], merged, report)
    report.timings, report.passes = _costs(records)
    report.notes = list(extra.get("notes", []))
    if cfg.masking_checks:
        warnings, notes = run_checks(merged, [r.get("warnings", []) for r in records])
        report.warnings, report.notes = warnings, report.notes + notes
    report.distributed = extra.get("distributed", {})
    report.versions = extra.get("versions", {})
    report.timings["wall_seconds_this_call"] = extra.get("wall_seconds", math.nan)
    return report


def _costs(records: list[dict]) -> tuple[dict, dict]:
    """Compute seconds and passes per phase, summed over the chunks."""
    seconds: dict[str, float] = defaultdict(float)
    passes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        for k, v in r["seconds"].items():
            seconds[k] += v
        for k, (f, b) in r["passes"].items():
            passes[k][0] += f
            passes[k][1] += b
    timings = {"compute_seconds": dict(seconds)}
    return timings, {k: {"forward": f, "backward": b} for k, (f, b) in passes.items()}
