"""pipeline.plots: the curves of the training stages (the report's figures are covered by test_resume_report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.plots import plot_curves

ROOT = Path(__file__).resolve().parents[2]


def _metrics(path: Path) -> Path:
    rows = [{"kind": "step", "step": i, "loss": 1 / (i + 1), "loss_adv": None} for i in range(5)]
    rows.append({"kind": "epoch", "epoch": 1, "val_clean_acc": 0.5})
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"kind": "step", "st')  # a line cut by a kill
    return path


def test_plot_curves_writes_a_png_of_the_rows_of_one_kind(tmp_path):
    metrics = _metrics(tmp_path / "metrics.jsonl")
    out = tmp_path / "curves" / "loss.png"
    assert plot_curves(metrics, "step", "step", ["loss", "loss_adv", "absent"], out, "loss") == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # no temporary file left


def test_plot_curves_without_rows_draws_nothing(tmp_path):
    metrics = _metrics(tmp_path / "metrics.jsonl")
    assert plot_curves(metrics, "other", "step", ["loss"], tmp_path / "a.png", "t") is None
    assert plot_curves(tmp_path / "absent.jsonl", "step", "step", ["loss"], tmp_path / "b.png", "t") is None
    assert not list(tmp_path.glob("*.png"))


def test_plotting_never_touches_pyplot_or_the_global_backend(tmp_path):
    metrics = _metrics(tmp_path / "metrics.jsonl")
    code = (
        "import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none()\n"
        "from pipeline.plots import plot_curves\n"
        f"plot_curves({str(metrics)!r}, 'step', 'step', ['loss'], {str(tmp_path / 'c.png')!r}, 't')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert matplotlib.rcParams._get_backend_or_none() == before, before\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
