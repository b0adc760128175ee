"""Learning-rate schedules and optimiser parameter groups (they drive every GPU recipe)."""

import math

import pytest
import torch
from lightly.utils.lars import LARS
from torch import nn

from pipeline.optim import build_optimizer, build_scheduler  # the public import path
from pipeline.train.optim import OptimConfig, lr_factor


def test_linear_warmup_then_cosine_to_zero():
    cfg = OptimConfig(schedule="cosine", warmup_epochs=1)
    spe, total = 4, 12  # 1 warm-up epoch of 4 steps, then 8 cosine steps
    assert [lr_factor(s, total, spe, cfg) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(4, total, spe, cfg) == pytest.approx(1.0)  # cosine starts at its top
    assert lr_factor(8, total, spe, cfg) == pytest.approx(0.5)  # halfway through the 8 cosine steps
    assert lr_factor(6, total, spe, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 8)))
    assert lr_factor(12, total, spe, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50, total, spe, cfg) == pytest.approx(0.0, abs=1e-12)  # clamped past the end


def test_piecewise_counts_epochs_from_the_start_warmup_included():
    cfg = OptimConfig(schedule="piecewise", milestones=[2, 3], gamma=0.1, warmup_epochs=0.5)
    spe = 10
    assert lr_factor(2, 100, spe, cfg) == pytest.approx(3 / 5)  # warm-up: 5 steps
    assert lr_factor(5, 100, spe, cfg) == 1.0
    assert lr_factor(19, 100, spe, cfg) == 1.0
    assert lr_factor(20, 100, spe, cfg) == pytest.approx(0.1)  # epoch 2
    assert lr_factor(35, 100, spe, cfg) == pytest.approx(0.01)  # epoch 3.5


def test_constant_and_the_scheduler_applies_the_factor():
    model = nn.Linear(3, 2)
    cfg = OptimConfig(name="sgd", lr=0.2, schedule="constant", warmup_epochs=1)
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, total_steps=10, steps_per_epoch=2, cfg=cfg)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.2, 0.2, 0.2])


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("lars", LARS), ("adamw", torch.optim.AdamW)])
def test_groups_decay_weights_but_not_biases_or_norms(name, cls):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 5, 5))
    model[0].bias.requires_grad_(False)  # frozen parameters are left out
    opt = build_optimizer(model.parameters(), OptimConfig(name=name, weight_decay=0.01))
    assert isinstance(opt, cls)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}


def test_unknown_names_are_one_line_errors():
    from pipeline.config import load_config
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match=r"^pretrain.optim.name='rmsprop' is invalid; use one of: sgd, lars, adamw$"):
        load_config(None, ["pretrain.optim.name=rmsprop"])
    with pytest.raises(UsageError, match=r"^finetune.optim.schedule='step' is invalid; use one of: "):
        load_config(None, ["finetune.optim.schedule=step"])
