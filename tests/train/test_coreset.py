"""The RCS schedule's sets: what full epochs train on, what a selection picks from and its budget, under
ACL_RCS.py's held-out validation and DynACL_RCS.py's trained-on one (``pretrain.rcs.train_on_validation``)."""

import json

import pytest
from accelerate import Accelerator

from data.spec import ShardSpec
from pipeline.objectives.rcs import RCSConfig
from pipeline.train.coreset import Coreset

IDS = [f"s{i:03d}" for i in range(200)]


def _coreset(tmp_path, train_on_validation: bool) -> Coreset:
    cfg = RCSConfig(fraction=0.2, warmup_epochs=2, period=1, val_fraction=0.05)
    cfg.train_on_validation = train_on_validation
    spec = ShardSpec(split="train", urls=(), count=len(IDS), labeled=False, image_size=8)
    return Coreset(cfg, spec, IDS, seed=3, world_batch=16, folder=tmp_path, acc=Accelerator(cpu=True))


@pytest.mark.parametrize("train_on_validation", [False, True])
def test_validation_held_out_or_trained_on(tmp_path, train_on_validation):
    c = _coreset(tmp_path, train_on_validation)
    val = set(json.loads((tmp_path / "validation.json").read_text()))
    assert val == c.val_ids and len(val) == 10  # 5% of 200, drawn the same way in both modes
    warmup = c.keep(0)  # a full epoch before the first selection
    if train_on_validation:  # DynACL_RCS.py: every image, the 1% included
        assert warmup == set(IDS) and c.full_steps == 13  # 200 in batches of 16, the short last one kept
    else:  # ACL_RCS.py: the 99% only, never the validation images
        assert warmup == set(IDS) - val and c.full_steps == 12  # 190 = 11 × 16 + 14
    # RCS.py sizes the budget from the set the Coreset is built with, the 99%, in both scripts
    assert c.budget == int(190 * 0.2) and c.n_pick == 2
    assert c.subset <= warmup and len(c.subset) == c.budget


def test_same_validation_draw_in_both_modes(tmp_path):
    a = _coreset(tmp_path / "a", False)
    b = _coreset(tmp_path / "b", True)
    assert a.val_ids == b.val_ids
