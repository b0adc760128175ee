"""The transfer-attack check: a model behind zero gradients fires its warning, a healthy one does not."""

from __future__ import annotations

import pytest
from eval_helpers import MaskedNet, train_tiny

from pipeline.errors import UsageError
from pipeline.evaluation import EvaluateConfig, evaluate_model
from pipeline.evaluation.writers import render_markdown


def _cfg() -> EvaluateConfig:
    cfg = EvaluateConfig(eps=16 / 255, seed=3, chunk_size=20, batch_size=64)
    cfg.autoattack.version, cfg.autoattack.attacks = "custom", ["apgd-ce"]
    cfg.sweep.enabled, cfg.pgd.steps, cfg.calibration.enabled = False, 0, False
    cfg.transfer.enabled = True
    cfg.transfer.attacks = ["apgd-ce"]
    return cfg


def _transfer_warnings(report) -> list[str]:
    return [w for w in report.warnings if "transfer attack broke" in w]


def test_masked_gradients_fire_the_transfer_warning(tiny_model, tiny_data):
    """White-box APGD sees zero gradients on MaskedNet; the same examples crafted on the network inside it
    break the points: they count as broken only by transfer, far above the tolerance."""
    x, y = tiny_data
    report = evaluate_model(
        MaskedNet(tiny_model), x[:20], y[:20], _cfg(), num_classes=10, progress=False, surrogate=tiny_model
    )
    t = report.to_dict()["transfer"]
    assert t["broken_only_by_transfer"] > 5 and t["broken_only_by_transfer_ci"][0] > t["tolerance"]
    assert len(_transfer_warnings(report)) == 1
    assert "## Transfer attack (masking check)" in render_markdown(report, {})
    assert report.per_sample["transfer_pred"][0] is not None


def test_a_healthy_model_does_not(tiny_model, tiny_data):
    x, y = tiny_data
    other = train_tiny(steps=60, seed=1)  # an independently trained surrogate
    report = evaluate_model(
        tiny_model, x[:20], y[:20], _cfg(), num_classes=10, progress=False, surrogate=other
    )
    assert report.to_dict()["transfer"]["n_compared"] == 20
    assert _transfer_warnings(report) == []


def test_transfer_without_a_surrogate_is_a_one_line_error(tiny_model, tiny_data):
    x, y = tiny_data
    with pytest.raises(UsageError, match="needs a surrogate model"):
        evaluate_model(tiny_model, x[:4], y[:4], _cfg(), num_classes=10, progress=False)


def test_a_bad_surrogate_name_is_refused():
    cfg = _cfg()
    cfg.transfer.surrogate = "runs/x"
    with pytest.raises(UsageError, match="evaluate.transfer.surrogate='runs/x' is invalid"):
        cfg.validate()


def test_the_stage_can_check_before_it_writes_anything(tiny_data):
    from pipeline.evaluation.runner import check_inputs

    x, y = tiny_data
    with pytest.raises(UsageError, match="needs a surrogate model"):
        check_inputs(_cfg(), x[:4], y[:4], num_classes=10)
    check_inputs(_cfg(), x[:4], y[:4], num_classes=10, surrogate=train_tiny(steps=1))  # passes
