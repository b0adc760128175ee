"""Learning-rate schedules and optimiser parameter groups (they drive every GPU recipe). Exact parity with
the reference implementations is in test_optim_parity.py."""

import math

import pytest
import torch
from lightly.utils.lars import LARS as LightlyLARS
from torch import nn

from pipeline.train.optim import LARS, OptimConfig, build_optimizer, build_scheduler, lr_factor


def _cos(progress, floor=0.0):
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def test_warmup_from_the_first_step_then_cosine_reaching_the_floor_on_the_last_step():
    # ACL train_simCLR.py: scheduler.step() runs before optimizer.step(), so step s runs at
    # cosine_annealing(s + 1)
    cfg = OptimConfig(schedule="cosine", warmup_epochs=1, lr=0.5, min_lr=0.05, cosine_sampled_at_end=True)
    spe, total = 4, 12  # 1 warm-up epoch of 4 steps, then 8 cosine steps
    assert [lr_factor(s, total, spe, cfg) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(4, total, spe, cfg) == pytest.approx(_cos(1 / 8, 0.1))  # one step into the cosine
    assert lr_factor(7, total, spe, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway
    assert lr_factor(11, total, spe, cfg) == pytest.approx(0.1)  # the last step runs at min_lr
    assert lr_factor(50, total, spe, cfg) == pytest.approx(0.1)  # clamped past the end


def test_cosine_sampled_at_the_start_is_one_step_behind_by_default():
    cfg = OptimConfig(schedule="cosine", warmup_epochs=1)
    assert lr_factor(4, 12, 4, cfg) == pytest.approx(1.0)  # the cosine starts at its top
    assert lr_factor(8, 12, 4, cfg) == pytest.approx(0.5)
    assert lr_factor(11, 12, 4, cfg) == pytest.approx(_cos(7 / 8))
    assert lr_factor(12, 12, 4, cfg) == pytest.approx(0.0, abs=1e-12)


def test_epoch_unit_holds_the_lr_for_an_epoch_like_dynacl():
    # DynACL train_DynACL.py: LambdaLR stepped after each epoch, utils.py warm-up (epoch + 1) / W
    cfg = OptimConfig(schedule="cosine", schedule_unit="epoch", warmup_epochs=2, cosine_sampled_at_end=False)
    spe, epochs = 3, 6
    got = [lr_factor(s, spe * epochs, spe, cfg) for s in range(spe * epochs)]
    per_epoch = [0.5, 1.0] + [_cos(e / 4) for e in range(4)]
    assert got == pytest.approx([f for f in per_epoch for _ in range(spe)])


def test_piecewise_counts_epochs_from_the_start_warmup_included():
    cfg = OptimConfig(schedule="piecewise", milestones=[2, 3], gamma=0.1, warmup_epochs=0.5)
    spe = 10
    assert lr_factor(2, 100, spe, cfg) == pytest.approx(3 / 5)  # warm-up: 5 steps
    assert lr_factor(5, 100, spe, cfg) == 1.0
    assert lr_factor(19, 100, spe, cfg) == 1.0
    assert lr_factor(20, 100, spe, cfg) == pytest.approx(0.1)  # epoch 2
    assert lr_factor(35, 100, spe, cfg) == pytest.approx(0.01)  # epoch 3.5
    by_epoch = OptimConfig(schedule="piecewise", milestones=[2, 3], schedule_unit="epoch")
    assert [lr_factor(s, 100, spe, by_epoch) for s in (19, 20, 29, 30)] == pytest.approx([1, 0.1, 0.1, 0.01])


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


def _model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 5, 5))
    model[0].bias.requires_grad_(False)  # frozen parameters are left out
    return model


@pytest.mark.parametrize(
    "name, cls",
    [("sgd", torch.optim.SGD), ("lars", LARS), ("lars_lightly", LightlyLARS), ("adamw", torch.optim.AdamW)],
)
def test_groups_decay_every_parameter_by_default(name, cls):
    model = _model()
    opt = build_optimizer(model.parameters(), OptimConfig(name=name, weight_decay=0.01))
    assert isinstance(opt, cls)
    (group,) = opt.param_groups
    assert group["weight_decay"] == 0.01
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("name", ["sgd", "lars", "lars_lightly", "adamw"])
def test_groups_can_exempt_biases_and_norms(name):
    model = _model()
    cfg = OptimConfig(name=name, weight_decay=0.01, decay_norm_and_bias=False)
    opt = build_optimizer(model.parameters(), cfg)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}


def test_sgd_uses_plain_momentum_unless_nesterov_is_asked():
    params = list(nn.Linear(3, 2).parameters())
    assert build_optimizer(params, OptimConfig()).param_groups[0]["nesterov"] is False
    assert build_optimizer(params, OptimConfig(nesterov=True)).param_groups[0]["nesterov"] is True


def test_unknown_names_and_bad_values_are_one_line_errors():
    from pipeline.config import load_config
    from pipeline.errors import UsageError

    with pytest.raises(
        UsageError,
        match=r"^pretrain.optim.name='rmsprop' is invalid; "
        r"use one of: sgd, lars, lars_lightly, adamw$",
    ):
        load_config(None, ["pretrain.optim.name=rmsprop"])
    with pytest.raises(UsageError, match=r"^finetune.optim.schedule='step' is invalid; use one of: "):
        load_config(None, ["finetune.optim.schedule=step"])
    with pytest.raises(
        UsageError, match=r"^finetune.optim.schedule_unit='batch' is invalid; use one of: step, epoch$"
    ):
        load_config(None, ["finetune.optim.schedule_unit=batch"])
    with pytest.raises(
        UsageError, match=r"^pretrain.optim.nesterov=True is invalid; Nesterov needs momentum > 0$"
    ):
        load_config(None, ["pretrain.optim.nesterov=true", "pretrain.optim.momentum=0"])
    with pytest.raises(UsageError, match=r"^pretrain.optim.min_lr="):
        load_config(None, ["pretrain.optim.min_lr=100"])
