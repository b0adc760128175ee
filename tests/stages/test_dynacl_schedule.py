"""DynACL: the annealed augmentation strength reaches the loader, and the loss weights follow it."""

import json

import pytest

import pipeline.pretrain as pretrain_mod
from pipeline.config import load_config
from pipeline.objectives import dynacl_strength, loss_weights
from pipeline.run import stage_dir


def test_strength_schedule_is_stepwise_and_floored():
    cfg = load_config(None, ["pretrain.dynacl.strength_period_epochs=2", "pretrain.dynacl.min_strength=0.2"]).pretrain
    assert [dynacl_strength(e, 6, cfg.dynacl) for e in range(6)] == pytest.approx([1, 1, 0.733333, 0.733333, 0.466667, 0.466667], abs=1e-5)
    # DynACL's weights: ½·(2 − w) clean, ½·w adversarial, w = 1 + progress·2/3; the sum stays 1
    assert loss_weights("dynacl", 1.0, cfg) == pytest.approx((0.5, 0.5))
    assert loss_weights("dynacl", 0.2, cfg) == pytest.approx((0.5 * (1 - 2 / 3), 0.5 * (1 + 2 / 3)))  # progress 1
    half = dynacl_strength(3, 6, cfg.dynacl)  # progress ⌊3/2⌋·2/6 = 1/3
    assert loss_weights("dynacl", half, cfg) == pytest.approx((0.5 * (1 - 2 / 9), 0.5 * (1 + 2 / 9)))
    assert loss_weights("acl", 0.3, cfg) == (cfg.clean_weight, cfg.adv_weight)


def test_strength_reaches_the_loader(tiny_cfg, monkeypatch):
    seen = []
    original = pretrain_mod.SimCLRViews

    def recording(size, strength, min_scale):
        seen.append(strength)
        return original(size, strength, min_scale)

    monkeypatch.setattr(pretrain_mod, "SimCLRViews", recording)
    cfg = tiny_cfg("pretrain.method=dynacl", "pretrain.epochs=2", "pretrain.dynacl.strength_period_epochs=1")
    out = pretrain_mod.run_pretrain(cfg)
    assert out["momentum_encoder"] is True  # DynACL's default: the EMA copy is the exported backbone
    assert seen == [1.0, 0.5]  # the loader of epoch 2 was rebuilt with the annealed strength
    rows = [json.loads(line) for line in (stage_dir(cfg, "pretrain") / "metrics.jsonl").read_text().splitlines()]
    by_epoch = {r["epoch"]: r["strength"] for r in rows if r["kind"] == "step"}
    assert by_epoch == {1: 1.0, 2: 0.5}
