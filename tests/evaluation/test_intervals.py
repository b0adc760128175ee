"""Every accuracy carries a 95% Clopper–Pearson interval and its n: values, report.json, report.md, summary."""

from __future__ import annotations

import json

import pytest
from scipy.stats import binomtest

from pipeline.evaluation import EvaluateConfig, evaluate_model, summary_table, write_report
from pipeline.evaluation.intervals import accuracy_interval, format_accuracy, interval_of


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (51, 100), (3, 7), (0, 1), (1, 1)])
def test_interval_matches_scipy_exact(k, n):
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert accuracy_interval(k, n) == pytest.approx([ci.low, ci.high], abs=1e-12)
    assert interval_of(k / n, n) == accuracy_interval(k, n)


def test_interval_edges_and_format():
    assert accuracy_interval(0, 0) is None and interval_of(float("nan"), 5) is None
    assert accuracy_interval(0, 20)[0] == 0.0 and accuracy_interval(20, 20)[1] == 1.0
    with pytest.raises(ValueError):
        accuracy_interval(3, 2)
    assert format_accuracy(0.51, accuracy_interval(51, 100), 100) == "51.00% [40.8, 61.1] (n=100)"
    assert format_accuracy(0.5) == "50.00%" and format_accuracy(None) == "n/a"


@pytest.fixture(scope="module")
def written(tiny_model, tiny_data, tmp_path_factory):
    x, y = tiny_data
    cfg = EvaluateConfig(eps=16 / 255, seed=1, chunk_size=40, batch_size=64)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce", "apgd-t"]
    cfg.autoattack.n_examples = 20
    cfg.sweep.eps = [0.0, 16 / 255]
    cfg.sweep.attacks = ["apgd-ce"]
    cfg.calibration.enabled = False
    cfg.smoothing.enabled = True
    cfg.smoothing.n0, cfg.smoothing.n, cfg.smoothing.n_examples = 10, 100, 5
    report = evaluate_model(tiny_model, x[:30], y[:30], cfg, num_classes=10, progress=False)
    out = tmp_path_factory.mktemp("report")
    write_report(report, out)
    return report, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_report_json_has_intervals_next_to_the_numbers(written):
    report, d, _ = written
    n, k = d["n_examples"], d["autoattack"]["n_examples"]
    assert (n, k) == (30, 20) and isinstance(d["clean_accuracy"], float)
    assert d["clean_accuracy_ci"] == accuracy_interval(round(d["clean_accuracy"] * n), n)
    for name, m in (("pgd", n), ("autoattack", k)):
        assert isinstance(d["robust_accuracy"][name], float)
        assert d["robust_accuracy_ci"][name] == accuracy_interval(round(d["robust_accuracy"][name] * m), m)
    aa = d["autoattack"]
    assert (
        aa["robust_accuracy_ci"] == d["robust_accuracy_ci"]["autoattack"] and aa["attribution_caveat"] is None
    )
    assert set(aa["robust_accuracy_after_ci"]) == {"apgd-ce", "apgd-t"}
    assert d["pgd"]["robust_accuracy_ci"] == d["robust_accuracy_ci"]["pgd"]
    assert len(d["sweep"]["robust_accuracy_ci"]) == 2 and len(d["smoothing"]["certified_accuracy_ci"]) == 5
    assert d["intervals"] == {"method": "clopper-pearson", "level": 0.95}


def test_markdown_and_summary_show_interval_and_n(written):
    report, d, md = written
    clean = format_accuracy(d["clean_accuracy"], d["clean_accuracy_ci"], 30)
    aa = format_accuracy(d["robust_accuracy"]["autoattack"], d["robust_accuracy_ci"]["autoattack"], 20)
    summary = summary_table(report)
    for text in (summary, md):
        assert clean in text and aa in text and "Clopper–Pearson" in text
    sweep0 = format_accuracy(d["sweep"]["robust_accuracy"][0], d["sweep"]["robust_accuracy_ci"][0], 30)
    assert sweep0 in md and "(n=20)" in md.split("## AutoAttack")[1].split("##")[0]


def test_rand_attribution_caveat_is_printed(written):
    import copy

    from pipeline.evaluation.measurements.autoattack import RAND_CAVEAT
    from pipeline.evaluation.writers import render_markdown

    report = copy.deepcopy(written[0])
    report.autoattack["attribution_caveat"] = RAND_CAVEAT
    assert f"**Caveat:** {RAND_CAVEAT}." in render_markdown(report, {})
    assert "Caveat" not in render_markdown(written[0], {})
