"""The evaluation report: a dataclass, its JSON form, a markdown summary and the files on disk."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BANNER = "⚠ evaluation may be unreliable"


@dataclass
class EvalReport:
    """Results of :func:`pipeline.evaluation.evaluate_model`. Accuracies are fractions in [0, 1]."""

    n_examples: int  # examples evaluated (clean and PGD); AutoAttack/sweep/smoothing record their own
    num_classes: int  # number of logits
    clean_accuracy: float  # top-1 accuracy on clean inputs
    robust_accuracy: dict[str, float | None]  # {"pgd": ..., "autoattack": ...}; None when not run
    threat_model: dict[str, Any]  # {"norm": "Linf", "eps": 0.0314}
    seed: int  # the run seed every chunk seed derives from
    pgd: dict | None = None  # PGD-k settings and result
    autoattack: dict | None = None  # version, attacks, accuracy after each attack, first_broken_by counts
    sweep: dict | None = None  # eps list and robust accuracy at each
    calibration: dict | None = None  # ECE, mean confidence (of wrong predictions), reliability bins
    smoothing: dict | None = None  # certified accuracy at each radius
    warnings: list[str] = field(default_factory=list)  # failed checks: the report gets a banner
    notes: list[str] = field(default_factory=list)  # facts worth knowing that are not failures
    timings: dict = field(
        default_factory=dict
    )  # compute seconds per phase (summed over chunks) and wall time
    passes: dict = field(default_factory=dict)  # per phase: images forwarded / back-propagated to the input
    distributed: dict = field(default_factory=dict)  # world size, chunks, chunks reused from an earlier run
    versions: dict = field(default_factory=dict)  # torch / pyautoattack versions
    per_sample: dict[str, list] = field(default_factory=dict, repr=False)  # columns of per_sample.csv

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything except the per-sample columns (NaN becomes None)."""
        d = asdict(self)
        d.pop("per_sample")
        return _json_safe(d)

    def summary_table(self) -> str:
        """A short markdown table for the end of the stage's log."""
        tm = self.threat_model
        rows = [
            ("examples", str(self.n_examples)),
            ("threat model", f"{tm['norm']} eps={tm['eps']:.4g}"),
            ("clean accuracy", _pct(self.clean_accuracy)),
        ]
        if self.pgd:
            rows.append((f"PGD-{self.pgd['steps']} robust accuracy", _pct(self.robust_accuracy["pgd"])))
        if self.autoattack:
            aa = self.autoattack
            rows.append(
                (
                    f"AutoAttack ({aa['version']}, n={aa['n_examples']}) robust accuracy",
                    _pct(aa["robust_accuracy"]),
                )
            )
        if self.calibration and "clean" in self.calibration:
            c = self.calibration
            if "autoattack" in c:
                rows.append(
                    (
                        "ECE clean / under AutoAttack",
                        f"{_pct(c['clean']['ece'])} / {_pct(c['autoattack']['ece'])}",
                    )
                )
            else:
                rows.append(("ECE clean", _pct(c["clean"]["ece"])))
        if self.smoothing:
            s = self.smoothing
            rows.append(
                (
                    f"certified accuracy (sigma={s['sigma']}) at r={s['radii']}",
                    " / ".join(_pct(a) for a in s["certified_accuracy"]),
                )
            )
        out = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        if self.warnings:
            out = f"**{BANNER}**: {len(self.warnings)} check(s) failed, see report.md\n\n" + out
        return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def per_sample_csv(report: EvalReport) -> str:
    """The per-sample columns as CSV text (empty cells where a component did not run)."""
    cols = report.per_sample
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(cols))
    for row in zip(*cols.values(), strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def write_report(report: EvalReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.md, per_sample.csv and the PNG figures into ``out_dir``.

    Call it from the main process only. Every file is written to a temporary name and renamed.

    Returns:
        Name → path of every file written.
    """
    from .plots import write_figures  # matplotlib is imported only when figures are written

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = write_figures(report, out)
    _atomic_write(out / "report.json", json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    _atomic_write(out / "per_sample.csv", per_sample_csv(report))
    _atomic_write(out / "report.md", render_markdown(report, {k: p.name for k, p in files.items()}))
    files.update({"json": out / "report.json", "csv": out / "per_sample.csv", "markdown": out / "report.md"})
    return files


def render_markdown(report: EvalReport, figures: dict[str, str]) -> str:
    """The full markdown report; ``figures`` maps figure keys to file names next to it."""
    lines = []
    if report.warnings:
        lines += [f"> **{BANNER}** — {len(report.warnings)} check(s) failed:", ">"]
        lines += [f"> - {w}" for w in report.warnings] + [""]
    lines += ["# Evaluation report", "", report.summary_table(), ""]
    lines += (
        _section_autoattack(report) + _section_sweep(report, figures) + _section_calibration(report, figures)
    )
    lines += _section_smoothing(report, figures) + _section_costs(report)
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def _section_autoattack(r: EvalReport) -> list[str]:
    if not r.autoattack:
        return []
    aa = r.autoattack
    lines = [
        f"## AutoAttack ({aa['version']}, pyautoattack)",
        "",
        "| after attack | robust accuracy | first broken here |",
        "|---|---|---|",
        f"| clean | {_pct(aa['clean_accuracy'])} | {aa['first_broken_by']['clean']} |",
    ]
    lines += [
        f"| {a} | {_pct(aa['robust_accuracy_after'][a])} | {aa['first_broken_by'][a]} |"
        for a in aa["attacks"]
    ]
    return lines + ["", f"Per-sample predictions: `per_sample.csv` ({aa['n_examples']} attacked points).", ""]


def _section_sweep(r: EvalReport, figures: dict[str, str]) -> list[str]:
    if not r.sweep:
        return []
    s = r.sweep
    lines = [
        f"## Robust accuracy vs epsilon ({', '.join(s['attacks'])}, n={s['n_examples']})",
        "",
        "| eps | eps × 255 | robust accuracy |",
        "|---|---|---|",
    ]
    lines += [
        f"| {e:.4g} | {255 * e:.3g} | {_pct(a)} |"
        for e, a in zip(s["eps"], s["robust_accuracy"], strict=True)
    ]
    return (
        lines
        + ([""] + [f"![robust accuracy vs epsilon]({figures['sweep']})"] if "sweep" in figures else [])
        + [""]
    )


def _section_calibration(r: EvalReport, figures: dict[str, str]) -> list[str]:
    if not r.calibration:
        return []
    c = r.calibration
    lines = [
        f"## Calibration ({c['n_bins']} bins, l1)",
        "",
        "| inputs | n | ECE | mean confidence | mean confidence when wrong |",
        "|---|---|---|---|---|",
    ]
    for name in ("clean", "autoattack"):
        if name in c:
            m = c[name]
            lines.append(
                f"| {name} | {m['n_examples']} | {_pct(m['ece'])} | {_pct(m['mean_confidence'])} | "
                f"{_pct(m['mean_confidence_of_wrong'])} |"
            )
    lines.append("")
    lines += [
        f"![reliability diagram, {k}]({figures[k]})"
        for k in ("reliability_clean", "reliability_autoattack")
        if k in figures
    ]
    return lines + [""]


def _section_smoothing(r: EvalReport, figures: dict[str, str]) -> list[str]:
    if not r.smoothing:
        return []
    s = r.smoothing
    lines = [
        f"## Randomized smoothing (sigma={s['sigma']}, n0={s['n0']}, n={s['n']}, alpha={s['alpha']}, "
        f"n_examples={s['n_examples']})",
        "",
        "| L2 radius | certified accuracy |",
        "|---|---|",
    ]
    lines += [
        f"| {rad:.3g} | {_pct(a)} |" for rad, a in zip(s["radii"], s["certified_accuracy"], strict=True)
    ]
    lines += ["", f"Abstained on {_pct(s['abstain_rate'])} of the points.", ""]
    return lines + ([f"![certified accuracy]({figures['certified']})", ""] if "certified" in figures else [])


def _section_costs(r: EvalReport) -> list[str]:
    secs = r.timings.get("compute_seconds", {})
    lines = [
        "## Cost",
        "",
        "Passes are images forwarded / images back-propagated to the input (a counting wrapper around "
        "the model; see `pipeline/evaluation/counting.py`).",
        "",
        "| phase | compute seconds | forward | backward |",
        "|---|---|---|---|",
    ]
    for phase, p in r.passes.items():
        lines.append(f"| {phase} | {secs.get(phase, math.nan):.2f} | {p['forward']:,} | {p['backward']:,} |")
    d = r.distributed
    lines += [
        "",
        f"Wall time of this call: {r.timings.get('wall_seconds_this_call', math.nan):.1f} s on "
        f"{d.get('world_size', 1)} process(es); {d.get('n_chunks', '?')} chunks of {d.get('chunk_size', '?')}, "
        f"{d.get('chunks_reused', 0)} reused from an earlier run.",
        "",
    ]
    return lines
