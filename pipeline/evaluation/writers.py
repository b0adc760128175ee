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
from .report import EvalReport

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
    """Every figure the report has data for; returns key → path."""
    from pipeline import plots  # matplotlib is imported only when figures are written

    files = {}
    if report.sweep and report.sweep["n_examples"]:
        path = out / "robust_accuracy_vs_eps.png"
        files["sweep"] = plots.sweep_figure(report.sweep, report.threat_model["norm"], path)
    for name in ("clean", "autoattack"):
        stats = (report.calibration or {}).get(name)
        if stats and stats["n_examples"]:
            files[f"reliability_{name}"] = plots.reliability_figure(
                stats, name, out / f"reliability_{name}.png"
            )
    if report.smoothing and report.smoothing["n_examples"]:
        files["certified"] = plots.certified_figure(report.smoothing, out / "certified_accuracy.png")
    return files


def per_sample_csv(report: EvalReport) -> str:
    """The per-sample columns as CSV text (empty cells where a component did not run)."""
    cols = report.per_sample
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(cols))
    for row in zip(*cols.values(), strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _ci_list(values: list, cis: list | None) -> list:
    """The intervals matching ``values`` (a report read from an older file may have none)."""
    return list(cis) if cis else [None] * len(values)


def _table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table, one line per row."""
    return [
        f"| {' | '.join(header)} |",
        "|" + "---|" * len(header),
        *(f"| {' | '.join(str(c) for c in row)} |" for row in rows),
    ]


def summary_table(report: EvalReport) -> str:
    """A short markdown table for the end of the stage's log (with the banner when a check failed)."""
    r, tm = report, report.threat_model
    rows = [
        ["examples", r.n_examples],
        ["threat model", f"{tm['norm']} eps={tm['eps']:.4g}"],
        ["clean accuracy", format_accuracy(r.clean_accuracy, r.clean_accuracy_ci, r.n_examples)],
    ]
    ci = r.robust_accuracy_ci or {}
    if r.pgd:
        rows.append(
            [
                f"PGD-{r.pgd['steps']} robust accuracy",
                format_accuracy(r.robust_accuracy["pgd"], ci.get("pgd"), r.pgd["n_examples"]),
            ]
        )
    if r.autoattack:
        aa = r.autoattack
        rows.append(
            [
                f"{aa['label']} robust accuracy" if aa.get("label") else f"AutoAttack ({aa['version']}) robust accuracy",
                format_accuracy(aa["robust_accuracy"], aa.get("robust_accuracy_ci"), aa["n_examples"]),
            ]
        )
        if aa.get("cross_check"):
            rows.append(["cross-check: standard AutoAttack broke", _cross_check_text(aa["cross_check"])])
    c = r.calibration
    if c and "clean" in c and "autoattack" in c:
        rows.append(
            [f"ECE clean / under {'the fast attacks' if r.autoattack and r.autoattack.get('label') else 'AutoAttack'}",
             f"{format_accuracy(c['clean']['ece'])} / {format_accuracy(c['autoattack']['ece'])}"]
        )
    elif c and "clean" in c:
        rows.append(["ECE clean", format_accuracy(c["clean"]["ece"])])
    if r.smoothing:
        s = r.smoothing
        cis = _ci_list(s["certified_accuracy"], s.get("certified_accuracy_ci"))
        rows.append(
            [
                f"certified accuracy (sigma={s['sigma']}, n={s['n_examples']}) at r={s['radii']}",
                " / ".join(format_accuracy(a, c) for a, c in zip(s["certified_accuracy"], cis, strict=True)),
            ]
        )
    out = "\n".join(_table(["metric", "value"], rows))
    out += f"\n\nIntervals: {_interval_words(r)}."
    if r.warnings:
        out = f"**{BANNER}**: {len(r.warnings)} check(s) failed, see report.md\n\n" + out
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
    lines += ["# Evaluation report", "", summary_table(report), ""]
    lines += _section_autoattack(report) + _section_sweep(report, figures)
    lines += _section_calibration(report, figures) + _section_smoothing(report, figures)
    lines += _section_costs(report)
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def _figure_line(figures: dict[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({figures[key]})"] if key in figures else []


def _cross_check_text(cc: dict) -> str:
    """``2 of 14 checked (14.3% [1.8, 42.8]) of 140 left robust``: the fast version's cross-check."""
    rate = format_accuracy(cc["miss_rate"], cc.get("miss_rate_ci")) if cc["checked"] else "none checked"
    return f"{cc['broken']} of {cc['checked']} checked ({rate}) of {cc['robust_before']} left robust"


def _section_autoattack(r: EvalReport) -> list[str]:
    if not r.autoattack:
        return []
    aa, n = r.autoattack, r.autoattack["n_examples"]
    after_ci = aa.get("robust_accuracy_after_ci") or {}
    rows = [["clean", format_accuracy(aa["clean_accuracy"], aa.get("clean_accuracy_ci"), n), aa["first_broken_by"]["clean"]]]
    rows += [
        [a, format_accuracy(aa["robust_accuracy_after"][a], after_ci.get(a), n), aa["first_broken_by"][a]]
        for a in aa["attacks"]
    ]
    caveat = [f"**Caveat:** {aa['attribution_caveat']}.", ""] if aa.get("attribution_caveat") else []
    if aa.get("cross_check"):
        caveat += [f"**This is not standard AutoAttack.** Cross-check: standard AutoAttack re-attacked a random "
                   f"subset of the points the fast attacks left robust and broke {_cross_check_text(aa['cross_check'])}; "
                   "those points count as broken above.", ""]
    return [
        f"## {aa['label']}" if aa.get("label") else f"## AutoAttack ({aa['version']}, pyautoattack)",
        "",
        *_table(["after attack", "robust accuracy", "first broken here"], rows),
        "",
        *caveat,
        f"Per-sample predictions: `per_sample.csv` ({n} attacked points).",
        "",
    ]


def _section_sweep(r: EvalReport, figures: dict[str, str]) -> list[str]:
    if not r.sweep:
        return []
    s = r.sweep
    cis = _ci_list(s["robust_accuracy"], s.get("robust_accuracy_ci"))
    rows = [
        [f"{e:.4g}", f"{255 * e:.3g}", format_accuracy(a, c, s["n_examples"])]
        for e, a, c in zip(s["eps"], s["robust_accuracy"], cis, strict=True)
    ]
    lines = [
        f"## Robust accuracy vs epsilon ({', '.join(s['attacks'])}, n={s['n_examples']})",
        "",
        *_table(["eps", "eps × 255", "robust accuracy"], rows),
    ]
    figure = _figure_line(figures, "sweep", "robust accuracy vs epsilon")
    return lines + ([""] + figure if figure else []) + [""]


def _section_calibration(r: EvalReport, figures: dict[str, str]) -> list[str]:
    if not r.calibration:
        return []
    c = r.calibration
    rows = [
        [
            name,
            c[name]["n_examples"],
            format_accuracy(c[name]["ece"]),
            format_accuracy(c[name]["mean_confidence"]),
            format_accuracy(c[name]["mean_confidence_of_wrong"]),
        ]
        for name in ("clean", "autoattack")
        if name in c
    ]
    header = ["inputs", "n", "ECE", "mean confidence", "mean confidence when wrong"]
    lines = [f"## Calibration ({c['n_bins']} bins, l1)", "", *_table(header, rows), ""]
    for key in ("reliability_clean", "reliability_autoattack"):
        lines += _figure_line(figures, key, f"reliability diagram, {key}")
    return lines + [""]


def _section_smoothing(r: EvalReport, figures: dict[str, str]) -> list[str]:
    if not r.smoothing:
        return []
    s = r.smoothing
    cis = _ci_list(s["certified_accuracy"], s.get("certified_accuracy_ci"))
    rows = [
        [f"{rad:.3g}", format_accuracy(a, c, s["n_examples"])]
        for rad, a, c in zip(s["radii"], s["certified_accuracy"], cis, strict=True)
    ]
    lines = [
        f"## Randomized smoothing (sigma={s['sigma']}, n0={s['n0']}, n={s['n']}, alpha={s['alpha']}, "
        f"n_examples={s['n_examples']})",
        "",
        *_table(["L2 radius", "certified accuracy"], rows),
        "",
        f"Abstained on {format_accuracy(s['abstain_rate'])} of the points.",
        "",
    ]
    figure = _figure_line(figures, "certified", "certified accuracy")
    return lines + (figure + [""] if figure else [])


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
        *_table(["phase", "compute seconds", "forward", "backward"], rows),
        "",
        f"Wall time of this call: {r.timings.get('wall_seconds_this_call', math.nan):.1f} s on "
        f"{d.get('world_size', 1)} process(es); {d.get('n_chunks', '?')} chunks of {d.get('chunk_size', '?')}, "
        f"{d.get('chunks_reused', 0)} reused from an earlier run.",
        "",
    ]
