"""Every PNG the project draws: training curves from ``metrics.jsonl`` and the evaluation report's figures.

Training curves (:func:`plot_curves`) show accuracies in % with a marker per epoch and the best epoch
starred, and losses as the faint raw per-step curve under a smoothed one. Every accuracy axis reads 0–100 %.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through ``pyplot``:
that needs no display and leaves the global backend of a caller who uses one alone. Every file is written
through :func:`pipeline.io.atomic_file`, so a crash never leaves half a PNG. The evaluation figures take
the plain dicts of an :class:`~pipeline.evaluation.EvalReport` (``report.sweep``, ...), so this module
depends on nothing in the evaluation package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


# Training curves: accuracies in %, losses smoothed over the raw per-step curve, the best epoch marked.
_X_LABELS = {"step": "optimiser step", "epoch": "epoch"}


def _is_acc(key: str) -> bool:
    return key.endswith("_acc")


def _series(rows: list[dict], x_key: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the rows that hold ``key``, y in % for an accuracy (the axis reads 0–100, not 0–1)."""
    pts = [(r[x_key], r[key]) for r in rows if r.get(key) is not None and r.get(x_key) is not None]
    x, y = (np.asarray(v, dtype=float) for v in zip(*pts, strict=True)) if pts else (np.empty(0), np.empty(0))
    return x, 100 * y if _is_acc(key) else y


def smooth(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Centred rolling mean over an odd window of ~5% of the points, and that window. Centred rather than an
    exponential moving average: an EMA lags the raw curve, which shifts a drop to later steps than it
    happened; here the window just shrinks at both ends, so the smoothed line has one point per raw point.
    NaN (a diverged step) is left out of the means, never spread over its neighbours."""
    half = len(y) // 40  # window 2*half+1 ≈ 5% of the points; 1 (no smoothing) under 40 points
    finite = np.isfinite(y)
    kernel = np.ones(2 * half + 1)
    sums = np.convolve(np.where(finite, y, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), 2 * half + 1


def _y_label(keys: list[str]) -> str:
    if all(_is_acc(k) for k in keys):
        return "accuracy (%)"
    if all("loss" in k for k in keys):
        return "loss"
    return "value (accuracies in %)" if any(_is_acc(k) for k in keys) else "value"


def _mark_best(ax, rows: list[dict], x_key: str, key: str, colour) -> None:
    """Dotted vertical line and a star at the best value of ``key``: the highest for an accuracy, the lowest
    otherwise; the first one on a tie, as the trainer keeps its first best checkpoint (a strict ``>``)."""
    x, y = _series(rows, x_key, key)
    if not np.isfinite(y).any():
        return
    i = int(np.nanargmax(y) if _is_acc(key) else np.nanargmin(y))
    value = f"{y[i]:.1f}%" if _is_acc(key) else f"{y[i]:.4g}"
    at = f"{x[i]:.0f}" if float(x[i]).is_integer() else f"{x[i]:g}"  # "step 120000", not "1.2e+05"
    ax.axvline(x[i], ls=":", c=colour, lw=1, gid="best:line")
    ax.plot(
        [x[i]],
        [y[i]],
        "*",
        c=colour,
        ms=14,
        mec="k",
        zorder=5,
        gid="best",
        label=f"best {x_key} {at} ({value})",
    )


def curves_figure(
    rows: list[dict],
    x_key: str,
    y_keys: list[str],
    title: str,
    *,
    run_name: str = "",
    best_key: str | None = None,
) -> Figure:
    """The figure :func:`plot_curves` saves, from rows already read. Each line carries a ``gid`` (the key;
    ``key:raw`` / ``key:smooth`` for a smoothed curve; ``best`` for the star) so a test can find its data."""
    fig = _figure((7, 4.5))
    ax = fig.add_subplot()
    colours, drawn = {}, []
    for key in y_keys:
        x, y = _series(rows, x_key, key)
        if not len(x):
            continue
        drawn.append(key)
        if _is_acc(key) or x_key != "step":  # epoch curves have a handful of points: show each one
            (line,) = ax.plot(x, y, "o-", ms=4, label=key, gid=key)
        else:  # per-step noise hides the trend: raw faint, the smoothed mean over it in the same colour
            (line,) = ax.plot(x, y, alpha=0.3, lw=0.8, gid=f"{key}:raw")
            ys, window = smooth(y)
            ax.plot(
                x,
                ys,
                c=line.get_color(),
                lw=1.6,
                gid=f"{key}:smooth",
                label=key if window == 1 else f"{key} (mean of {window} points)",
            )
        colours[key] = line.get_color()
    if best_key is not None:
        _mark_best(ax, rows, x_key, best_key, colours.get(best_key, "k"))
    if drawn and all(_is_acc(k) for k in drawn):
        ax.set_ylim(0, 100)
    ax.set_xlabel(_X_LABELS.get(x_key, x_key))
    ax.set_ylabel(_y_label(drawn or y_keys))
    ax.set_title(f"{run_name} — {title}" if run_name else title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def plot_curves(
    metrics_file: Path,
    kind: str,
    x_key: str,
    y_keys: list[str],
    out_png: Path,
    title: str,
    *,
    run_name: str = "",
    best_key: str | None = None,
) -> Path | None:
    """Draw the ``y_keys`` of the ``kind`` rows of ``metrics_file`` against ``x_key`` (see
    :func:`curves_figure`) into ``out_png``; returns its path, or None (and writes nothing) without rows."""
    rows = read_jsonl(metrics_file, kind)
    if not rows:
        return None
    return _save(
        curves_figure(rows, x_key, y_keys, title, run_name=run_name, best_key=best_key), out_png, dpi=100
    )


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
    (``stats``: ``EvalReport.calibration["clean"]`` or ``["autoattack"]``). Both axes in %, like every
    other accuracy the project draws."""
    bins = stats["bins"]
    centers = [50 * (lo + hi) for lo, hi in zip(bins["lower"], bins["upper"], strict=True)]
    width = 100 * (bins["upper"][0] - bins["lower"][0])
    fig = _figure((4, 5))
    ax, ax_count = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(
        centers,
        [100 * a if a == a else 0 for a in bins["accuracy"]],
        width=width,
        edgecolor="k",
        label="accuracy",  # an empty bin (NaN accuracy) draws no bar; its count below reads 0
    )
    ax.plot([0, 100], [0, 100], "--", c="grey", label="perfect calibration")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{title}: ECE {100 * stats['ece']:.2f}% (n={stats['n_examples']})")
    ax.legend(loc="upper left")
    ax_count.bar(centers, bins["count"], width=width, color="tab:grey")
    ax_count.set_xlabel("confidence (%)")
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


def corruption_figure(section: dict, path: Path) -> Path:
    """Accuracy per corruption (rows) and severity (columns), a heat map with each cell's value in %
    (``section``: report.json's ``corruptions``)."""
    names, severities = section["names"], section["severities"]
    values = np.array([[100 * a for a in section["accuracy"][n]] for n in names])
    fig = _figure((1.2 + 0.9 * len(severities), 0.8 + 0.35 * len(names)))
    ax = fig.add_subplot()
    image = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_xlabel("severity")
    ax.set_title(f"accuracy (%), mean {100 * section['mean_accuracy']:.1f}% (n={section['n_examples']})")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    return _save_report_figure(fig, path)
