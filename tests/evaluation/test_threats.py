"""evaluate.threats: several threat models in one evaluation, each with AutoAttack, intervals, per-sample
columns and its own masking checks; the first keeps every existing key; fingerprints of old chunks hold."""

from __future__ import annotations

import pytest
from eval_helpers import MaskedNet

from pipeline.attacks.threat import ThreatModel
from pipeline.errors import UsageError
from pipeline.evaluation import EvaluateConfig, evaluate_model, summary_table
from pipeline.evaluation.chunks import _cfg_without_sizes
from pipeline.evaluation.writers import render_markdown


def _cfg(threats=(), **kw) -> EvaluateConfig:
    cfg = EvaluateConfig(seed=3, chunk_size=10, batch_size=64, **kw)
    cfg.autoattack.version, cfg.autoattack.attacks = "custom", ["apgd-ce"]
    cfg.sweep.enabled, cfg.pgd.steps = False, 5
    cfg.threats = [ThreatModel(n, e) for n, e in threats]
    return cfg


@pytest.fixture(scope="module")
def two_threats(tiny_model, tiny_data):
    x, y = tiny_data
    cfg = _cfg([("Linf", 8 / 255), ("L2", 0.5)])
    return evaluate_model(tiny_model, x[:20], y[:20], cfg, num_classes=10, progress=False)


def test_each_threat_gets_a_row_with_autoattack_and_intervals(two_threats):
    rows = two_threats.to_dict()["threats"]
    assert [(r["norm"], r["eps"]) for r in rows] == [("Linf", 8 / 255), ("L2", 0.5)]
    for r in rows:
        assert r["robust_accuracy"]["autoattack"] is not None and r["robust_accuracy_ci"]["autoattack"]
        assert r["robust_accuracy"]["pgd"] is not None and r["clean_accuracy_ci"]
    # the existing keys mean the first threat model
    assert two_threats.robust_accuracy["autoattack"] == rows[0]["robust_accuracy"]["autoattack"]
    assert two_threats.threat_model == {"norm": "Linf", "eps": 8 / 255}
    assert "L2@0.5:aa_final_pred" in two_threats.per_sample
    summary = summary_table(two_threats)
    assert "threat 1: Linf" in summary and "threat 2: L2 eps=0.5" in summary
    md = render_markdown(two_threats, {})
    assert "## Threat models" in md and "### L2 eps=0.5: AutoAttack" in md


def test_a_second_threat_equals_a_one_threat_evaluation_at_its_radius(two_threats, tiny_model, tiny_data):
    x, y = tiny_data
    alone = evaluate_model(
        tiny_model, x[:20], y[:20], _cfg(norm="L2", eps=0.5), num_classes=10, progress=False
    )
    row = two_threats.to_dict()["threats"][1]
    assert row["robust_accuracy"] == alone.robust_accuracy
    assert two_threats.per_sample["L2@0.5:aa_final_pred"] == alone.per_sample["aa_final_pred"]


def test_the_masking_checks_run_for_every_threat(tiny_model, tiny_data):
    """Linf 0.5 puts the grey image within reach; behind zero gradients points survive: its check fires."""
    x, y = tiny_data
    cfg = _cfg([("Linf", 8 / 255), ("Linf", 0.5)])
    report = evaluate_model(MaskedNet(tiny_model), x[:10], y[:10], cfg, num_classes=10, progress=False)
    assert any(w.startswith("[Linf eps=0.5] [check]") and "grey image" in w for w in report.warnings)


def test_one_listed_threat_is_the_shorthand_and_new_sections_stay_out_of_old_fingerprints():
    listed, shorthand = _cfg([("L2", 0.5)]), _cfg(norm="L2", eps=0.5)
    listed.validate()  # what evaluate_model does first: threats[0] becomes norm/eps
    assert _cfg_without_sizes(listed) == _cfg_without_sizes(shorthand)
    keys = _cfg_without_sizes(shorthand)
    assert not {"threats", "corruptions", "transfer"} & set(
        keys
    )  # off: chunks written before them stay valid
    two = _cfg_without_sizes(_cfg([("L2", 0.5), ("Linf", 0.01)]))
    assert two["threats"] == [{"norm": "Linf", "eps": 0.01}]


@pytest.mark.parametrize(
    ("threats", "message"),
    [
        ([("Linf", 8 / 255), ("Linf", 2.0)], "evaluate.threats[1].eps=2.0 is invalid"),
        ([("Linf", 8 / 255), ("L3", 1.0)], "evaluate.threats[1].norm='L3' is invalid"),
        ([("L2", 0.5), ("L2", 0.5)], "list each threat model once"),
    ],
)
def test_bad_threats_are_one_line_errors(threats, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _cfg(threats).validate()


def test_fast_autoattack_refuses_an_l1_threat():
    cfg = _cfg([("Linf", 8 / 255), ("L1", 12.0)])
    cfg.autoattack.version, cfg.autoattack.attacks = "fast", []
    with pytest.raises(UsageError, match="fast.*L1"):
        cfg.validate()
