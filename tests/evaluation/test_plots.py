"""pipeline.plots: the curves of the training stages (the report's figures are covered by test_resume_report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.plots import curves_figure, plot_curves, smooth

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


# The data behind the figure: curves_figure returns the Figure plot_curves saves, its lines found by gid.
def _lines(fig) -> dict:
    (ax,) = fig.axes
    return {line.get_gid(): line for line in ax.get_lines()}


def _epoch_rows() -> list[dict]:
    robust = [0.10, 0.30, 0.25, 0.30]  # a tie at epochs 2 and 4: the first is the checkpoint kept
    return [
        {
            "kind": "epoch",
            "epoch": e + 1,
            "step": 8 * (e + 1),
            "val_clean_acc": 0.2 + 0.1 * e,
            "val_robust_acc": r,
        }
        for e, r in enumerate(robust)
    ]


def test_accuracy_curves_are_in_percent_with_the_best_epoch_starred():
    fig = curves_figure(
        _epoch_rows(),
        "epoch",
        ["val_clean_acc", "val_robust_acc"],
        "validation accuracy",
        run_name="quickstart",
        best_key="val_robust_acc",
    )
    lines = _lines(fig)
    assert list(lines["val_robust_acc"].get_ydata()) == pytest.approx([10, 30, 25, 30])
    assert list(lines["val_clean_acc"].get_ydata()) == pytest.approx([20, 30, 40, 50])
    assert lines["val_clean_acc"].get_marker() == "o"  # a marker on every epoch
    assert list(lines["best"].get_xdata()) == [2] and list(lines["best"].get_ydata()) == pytest.approx([30])
    assert list(lines["best:line"].get_xdata()) == [2, 2]
    ax = fig.axes[0]
    assert "best epoch 2 (30.0%)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_ylim() == (0, 100) and ax.get_ylabel() == "accuracy (%)" and ax.get_xlabel() == "epoch"
    assert ax.get_title() == "quickstart — validation accuracy"


def test_loss_curves_are_raw_and_faint_under_a_smoothed_line_of_the_same_colour():
    rows = [
        {
            "kind": "step",
            "step": i,
            "loss": 5 / (i + 1) + (0.5 if i % 2 else -0.5),
            "loss_adv": float("nan") if i == 50 else 6 / (i + 1),
        }
        for i in range(200)
    ]
    fig = curves_figure(rows, "step", ["loss", "loss_adv"], "pretrain loss", run_name="quickstart")
    lines = _lines(fig)
    raw, smoothed = lines["loss:raw"], lines["loss:smooth"]
    assert raw.get_alpha() == pytest.approx(0.3) and smoothed.get_color() == raw.get_color()
    assert len(smoothed.get_ydata()) == len(raw.get_ydata()) == 200
    assert np.std(np.diff(smoothed.get_ydata()[20:])) < np.std(np.diff(raw.get_ydata()[20:])) / 10
    assert np.isfinite(lines["loss_adv:smooth"].get_ydata()).all()  # a NaN step is not smeared around
    ax = fig.axes[0]
    assert ax.get_xlabel() == "optimiser step" and ax.get_ylabel() == "loss"
    assert "best" not in lines and "quickstart" in ax.get_title()


def test_smooth_is_a_centred_mean_over_about_five_percent_of_the_points():
    y = np.arange(100, dtype=float)
    ys, window = smooth(y)
    assert window == 5 and ys[50] == 50  # centred: a straight line is left where it is, no lag
    assert ys[0] == pytest.approx(1.0)  # the window shrinks at the ends: mean of 0, 1, 2
    assert smooth(np.array([3.0, 1.0]))[1] == 1  # too few points to smooth


def test_plot_curves_keeps_its_positional_form_and_takes_the_new_options(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in _epoch_rows()) + "\n")
    out = plot_curves(
        metrics,
        "epoch",
        "epoch",
        ["val_clean_acc", "val_robust_acc"],
        tmp_path / "acc.png",
        "validation accuracy",
        run_name="quickstart",
        best_key="val_robust_acc",
    )
    assert out == tmp_path / "acc.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
