"""What a report becomes on disk and in a log: report.json, report.md, per_sample.csv, the PNG figures
(drawn by :mod:`pipeline.plots`) and the short summary table the stage prints."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from pipeline.io import atomic_write_json, atomic_write_text

from .intervals import format_accuracy
from .measurements import in_order
from .measurements.base import table
from .report import EvalReport

__all__ = [
    "BANNER",
    "format_accuracy",
    "per_sample_csv",
    "render_markdown",
    "summary_table",
    "write_figures",
    "write_report",
]

BANNER = "⚠ evaluation may be unreliable"


def write_report(report: EvalReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.md, per_sample.csv and the PNG figures into ``out_dir``.

    Call it from the main process only. Every file is written to a temporary name and renamed.

    Returns:
        Name → path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = write_figures(report, out)
    atomic_write_json(out / "report.json", report.to_dict(), allow_nan=False)
    atomic_write_text(out / "per_sample.csv", per_sample_csv(report))
    atomic_write_text(out / "report.md", render_markdown(report, {k: p.name for k, p in files.items()}))
    files.update({"json": out / "report.json", "csv": out / "per_sample.csv", "markdown": out / "report.md"})
    return files


def write_figures(report: EvalReport, out: Path) -> dict[str, Path]:
    """Every figure the report has data for (each measurement draws its own); returns key → path."""
    return {key: path for m in in_order() for key, path in m.figures(report, out).items()}


def per_sample_csv(report: EvalReport) -> str:
    """The per-sample columns as CSV text (empty cells where a component did not run)."""
    cols = report.per_sample
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(cols))
    for row in zip(*cols.values(), strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def summary_table(report: EvalReport) -> str:
    """A short markdown table for the end of the stage's log (with the banner when a check failed)."""
    rows = [row for m in in_order() for row in m.summary_rows(report)]
    out = "\n".join(table(["metric", "value"], rows))
    out += f"\n\nIntervals: {_interval_words(report)}."
    if report.warnings:
        out = f"**{BANNER}**: {len(report.warnings)} check(s) failed, see report.md\n\n" + out
    return out


def _interval_words(r: EvalReport) -> str:
    level = (r.intervals or {}).get("level", 0.95)
    return f"[lo, hi] is the two-sided {level:.0%} Clopper–Pearson (exact binomial) interval over n points"


def render_markdown(report: EvalReport, figures: dict[str, str]) -> str:
    """The full markdown report; ``figures`` maps figure keys to file names next to it."""
    lines = []
    if report.warnings:
        lines += [f"> **{BANNER}** — {len(report.warnings)} check(s) failed:", ">"]
        lines += [f"> - {w}" for w in report.warnings] + [""]
    lines += ["# Evaluation report", "", *_model_lines(report.model), summary_table(report), ""]
    for m in in_order():
        lines += m.markdown(report, figures)
    lines += _section_costs(report)
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def _model_lines(model: dict) -> list[str]:
    """``Model: `resnet18`; normalisation mean […] std […] (from …), inside the model.``"""
    if not model:
        return []
    line = f"Model: `{model.get('architecture', '?')}`"
    if model.get("mean"):
        line += f"; normalisation mean {model['mean']} std {model['std']}"
        line += f" (from {model['normalization_source']})" if model.get("normalization_source") else ""
        line += ", inside the model"
    return [line + ".", ""]


def _section_costs(r: EvalReport) -> list[str]:
    secs = r.timings.get("compute_seconds", {})
    rows = [
        [phase, f"{secs.get(phase, math.nan):.2f}", f"{p['forward']:,}", f"{p['backward']:,}"]
        for phase, p in r.passes.items()
    ]
    d = r.distributed
    return [
        "## Cost",
        "",
        "Passes are images forwarded / images back-propagated to the input (a counting wrapper around "
        "the model; see `pipeline/evaluation/counting.py`).",
        "",
        *table(["phase", "compute seconds", "forward", "backward"], rows),
        "",
        f"Wall time of this call: {r.timings.get('wall_seconds_this_call', math.nan):.1f} s on "
        f"{d.get('world_size', 1)} process(es); {d.get('n_chunks', '?')} chunks of {d.get('chunk_size', '?')}, "
        f"{d.get('chunks_reused', 0)} reused from an earlier run.",
        "",
    ]
