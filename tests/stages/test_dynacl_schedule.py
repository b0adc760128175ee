"""DynACL: the annealed augmentation strength reaches the loader, and the loss weights follow it."""

import json

import pytest

import stages.pretrain as pretrain_mod
from pipeline.config import load_config
from pipeline.objectives import DynACLSchedule, pretrain_method
from pipeline.run import RunDir


def test_strength_schedule_is_stepwise_and_floored():
    cfg = load_config(
        None, ["pretrain.dynacl.strength_period_epochs=2", "pretrain.dynacl.min_strength=0.2"]
    ).pretrain
    schedule = DynACLSchedule(cfg.dynacl, 6)
    assert [schedule.strength(e) for e in range(6)] == pytest.approx(
        [1, 1, 0.733333, 0.733333, 0.466667, 0.466667], abs=1e-5
    )
    # DynACL's weights: ½·(2 − w) clean, ½·w adversarial, w = 1 + progress·2/3; the sum stays 1
    w = 2 / 3
    assert schedule.loss_weights(0, 0.5, 0.5) == pytest.approx((0.5, 0.5))
    assert schedule.loss_weights(3, 0.5, 0.5) == pytest.approx(
        (0.5 * (1 - w / 3), 0.5 * (1 + w / 3))
    )  # progress 1/3
    assert DynACLSchedule(cfg.dynacl, 2).loss_weights(2, 0.5, 0.5) == pytest.approx(
        (0.5 * (1 - w), 0.5 * (1 + w))
    )


def test_methods_read_the_same_schedule_by_epoch():
    cfg = load_config(None, ["pretrain.method=dynacl", "pretrain.dynacl.strength_period_epochs=2"]).pretrain
    dynacl, schedule = pretrain_method(cfg, 6), DynACLSchedule(cfg.dynacl, 6)
    for epoch in range(6):  # the loader's strength and the loss weights come from one progress value
        assert dynacl.strength(epoch) == schedule.strength(epoch)
        assert dynacl.loss_weights(epoch) == schedule.loss_weights(epoch, cfg.clean_weight, cfg.adv_weight)
    cfg.method = "acl"
    acl = pretrain_method(cfg, 6)
    assert acl.strength(5) == 1.0 and acl.loss_weights(5) == (cfg.clean_weight, cfg.adv_weight)
    cfg.method = "simclr"
    assert pretrain_method(cfg, 6).loss_weights(3) == (1.0, 0.0) and not pretrain_method(cfg, 6).adversarial


def test_strength_reaches_the_loader(tiny_cfg, monkeypatch):
    seen = []
    original = pretrain_mod.SimCLRViews

    def recording(size, strength, min_scale, interpolation):
        seen.append(strength)
        return original(size, strength, min_scale, interpolation)

    monkeypatch.setattr(pretrain_mod, "SimCLRViews", recording)
    cfg = tiny_cfg("pretrain.method=dynacl", "pretrain.epochs=2", "pretrain.dynacl.strength_period_epochs=1")
    out = pretrain_mod.run_pretrain(cfg)
    assert out["momentum_encoder"] is True  # DynACL's default: the EMA copy is the exported backbone
    assert seen == [1.0, 0.5]  # the loader of epoch 2 was rebuilt with the annealed strength
    rows = [
        json.loads(line)
        for line in (RunDir.of(cfg.run).stage("pretrain") / "metrics.jsonl").read_text().splitlines()
    ]
    by_epoch = {r["epoch"]: r["strength"] for r in rows if r["kind"] == "step"}
    assert by_epoch == {1: 1.0, 2: 0.5}
