"""PNG curves from ``metrics.jsonl`` (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: Path, kind: str) -> list[dict]:
    if not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: skip it
            continue
    return [r for r in rows if r.get("kind") == kind]


def plot_curves(metrics_file: Path, kind: str, x_key: str, y_keys: list[str], out_png: Path, title: str) -> Path | None:
    """One line per ``y_key`` present in the rows of ``kind``; returns the PNG path or None if no data."""
    rows = read_metrics(metrics_file, kind)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in y_keys:
        pts = [(r[x_key], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key)
    ax.set_xlabel(x_key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
