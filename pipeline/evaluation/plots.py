"""PNG figures of a report.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly instead of through
``pyplot``: that needs no display and does not switch the global backend of a caller who uses one.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .report import EvalReport


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def sweep_figure(report: EvalReport, path: Path) -> Path:
    """Robust accuracy against epsilon, with the chance level."""
    s = report.sweep
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    scale = 255 if report.threat_model["norm"] == "Linf" else 1
    ax.plot(
        [e * scale for e in s["eps"]],
        [100 * (a if a is not None else float("nan")) for a in s["robust_accuracy"]],
        "o-",
    )
    ax.axhline(100 * s["chance"], ls="--", c="grey", label="chance")
    ax.set_xlabel("eps × 255" if scale == 255 else f"eps ({report.threat_model['norm']})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{', '.join(s['attacks'])} (n={s['n_examples']})")
    ax.legend()
    return _save(fig, path)


def reliability_figure(stats: dict, title: str, path: Path) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below."""
    bins = stats["bins"]
    centers = [(lo + hi) / 2 for lo, hi in zip(bins["lower"], bins["upper"], strict=True)]
    width = bins["upper"][0] - bins["lower"][0]
    fig = Figure(figsize=(4, 5))
    ax, ax_count = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(
        centers, [a if a == a else 0 for a in bins["accuracy"]], width=width, edgecolor="k", label="accuracy"
    )
    ax.plot([0, 1], [0, 1], "--", c="grey", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: ECE {100 * stats['ece']:.2f}% (n={stats['n_examples']})")
    ax.legend(loc="upper left")
    ax_count.bar(centers, bins["count"], width=width, color="tab:grey")
    ax_count.set_xlabel("confidence")
    ax_count.set_ylabel("count")
    return _save(fig, path)


def certified_figure(report: EvalReport, path: Path) -> Path:
    """Certified accuracy of the smoothed classifier against the L2 radius."""
    s = report.smoothing
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.step(s["radii"], [100 * a for a in s["certified_accuracy"]], where="post", marker="o")
    ax.set_xlabel("L2 radius (pixel units)")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"randomized smoothing, sigma={s['sigma']}")
    return _save(fig, path)


def write_figures(report: EvalReport, out: Path) -> dict[str, Path]:
    """Every figure the report has data for; returns key → path."""
    files = {}
    if report.sweep and report.sweep["n_examples"]:
        files["sweep"] = sweep_figure(report, out / "robust_accuracy_vs_eps.png")
    for name in ("clean", "autoattack"):
        stats = (report.calibration or {}).get(name)
        if stats and stats["n_examples"]:
            files[f"reliability_{name}"] = reliability_figure(stats, name, out / f"reliability_{name}.png")
    if report.smoothing and report.smoothing["n_examples"]:
        files["certified"] = certified_figure(report, out / "certified_accuracy.png")
    return files
