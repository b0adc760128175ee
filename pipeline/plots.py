"""Every PNG the project draws: training curves from ``metrics.jsonl`` and the evaluation report's figures.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through ``pyplot``:
that needs no display and leaves the global backend of a caller who uses one alone. Every file is written
through :func:`pipeline.io.atomic_file`, so a crash never leaves half a PNG. The evaluation figures take
the plain dicts of an :class:`~pipeline.evaluation.EvalReport` (``report.sweep``, ...), so this module
depends on nothing in the evaluation package.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_file, read_jsonl


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself to fig: rendering without pyplot or a global backend
    return fig


def _save(fig: Figure, path: Path, **savefig_kwargs) -> Path:
    with atomic_file(Path(path)) as tmp:  # tmp keeps the .png suffix, which picks the format
        fig.savefig(tmp, **savefig_kwargs)
    return path


def plot_curves(
    metrics_file: Path, kind: str, x_key: str, y_keys: list[str], out_png: Path, title: str
) -> Path | None:
    """One line per ``y_key`` present in the rows of ``kind``; returns the PNG path or None if no data."""
    rows = read_jsonl(metrics_file, kind)
    if not rows:
        return None
    fig = _figure((6, 4))
    ax = fig.add_subplot()
    for key in y_keys:
        pts = [(r[x_key], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key)
    ax.set_xlabel(x_key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, out_png, dpi=100)


def _save_report_figure(fig: Figure, path: Path) -> Path:
    return _save(fig, path, dpi=120, bbox_inches="tight")


def sweep_figure(sweep: dict, norm: str, path: Path) -> Path:
    """Robust accuracy against epsilon, with the chance level (``sweep``: ``EvalReport.sweep``)."""
    fig = _figure((5, 3.5))
    ax = fig.add_subplot()
    scale = 255 if norm == "Linf" else 1
    ax.plot(
        [e * scale for e in sweep["eps"]],
        [100 * (a if a is not None else float("nan")) for a in sweep["robust_accuracy"]],
        "o-",
    )
    ax.axhline(100 * sweep["chance"], ls="--", c="grey", label="chance")
    ax.set_xlabel("eps × 255" if scale == 255 else f"eps ({norm})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{', '.join(sweep['attacks'])} (n={sweep['n_examples']})")
    ax.legend()
    return _save_report_figure(fig, path)


def reliability_figure(stats: dict, title: str, path: Path) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below
    (``stats``: ``EvalReport.calibration["clean"]`` or ``["autoattack"]``)."""
    bins = stats["bins"]
    centers = [(lo + hi) / 2 for lo, hi in zip(bins["lower"], bins["upper"], strict=True)]
    width = bins["upper"][0] - bins["lower"][0]
    fig = _figure((4, 5))
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
    return _save_report_figure(fig, path)


def certified_figure(smoothing: dict, path: Path) -> Path:
    """Certified accuracy of the smoothed classifier against the L2 radius (``EvalReport.smoothing``)."""
    fig = _figure((5, 3.5))
    ax = fig.add_subplot()
    ax.step(smoothing["radii"], [100 * a for a in smoothing["certified_accuracy"]], where="post", marker="o")
    ax.set_xlabel("L2 radius (pixel units)")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"randomized smoothing, sigma={smoothing['sigma']}")
    return _save_report_figure(fig, path)
