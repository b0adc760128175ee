"""DynACL's momentum encoder: the second view goes through a frozen EMA copy of backbone + head, which
receives no gradients, moves by key ← m·key + (1 − m)·trained after each step's forwards, and is the
backbone the pretrain stage exports."""

import pytest
import torch

from pipeline.config import load_config
from pipeline.models import build_model, convert_to_dual_bn
from pipeline.objectives import ContrastiveModel, ContrastiveObjective
from pipeline.objectives.heads import build_head


def _model(momentum):
    torch.manual_seed(0)
    backbone = build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3)
    convert_to_dual_bn(backbone)
    head = build_head("acl", backbone.num_features, 32, 16, dual_bn=True)
    return ContrastiveModel(backbone, head, momentum=momentum)


def test_second_half_goes_through_the_key_copy():
    model = _model(0.99).eval()
    with torch.no_grad():
        for p in model.key.parameters():  # make the copy distinguishable
            p.add_(0.05)
    x = torch.rand(6, 3, 32, 32)
    z = model(x, 3)
    with torch.no_grad():
        assert torch.allclose(z[:3], model.head(model.backbone(x[:3])), atol=1e-6)
        assert torch.allclose(z[3:], model.key["head"](model.key["backbone"](x[3:])), atol=1e-6)
        assert not torch.allclose(z[3:], model.head(model.backbone(x[3:])), atol=1e-3)
    assert torch.equal(model(x), model.head(model.backbone(x)))  # no n_query: the trained network only


def test_step_updates_key_as_ema_and_gives_it_no_gradient():
    cfg = load_config(None, ["pretrain.method=dynacl", "pretrain.attack.steps=2"]).pretrain
    model = _model(cfg.dynacl.momentum).train()
    before_q = [p.detach().clone() for p in [*model.backbone.parameters(), *model.head.parameters()]]
    before_k = [p.detach().clone() for p in model.key.parameters()]
    objective = ContrastiveObjective("dynacl", model, model, cfg, gather=False)
    loss, metrics = objective.step((torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32)), None)
    loss.backward()
    assert all(p.grad is None for p in model.key.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    m = cfg.dynacl.momentum
    for k, k0, q0 in zip(model.key.parameters(), before_k, before_q, strict=True):
        assert torch.allclose(k, m * k0 + (1 - m) * q0, atol=1e-7)
    # training backpropagates through the first view only (the second went through the frozen copy)
    assert metrics["backward_passes"] == 2 * 8 * 2 + 8 * 2


def test_key_moves_once_per_optimiser_step_with_accumulation():
    # 3 micro-batches per optimiser step: only the last (sync) one moves the copy, after its forwards
    cfg = load_config(None, ["pretrain.method=dynacl", "pretrain.attack.steps=1"]).pretrain
    model = _model(cfg.dynacl.momentum).train()
    calls = iter([False, False, True])
    objective = ContrastiveObjective("dynacl", model, model, cfg, gather=False, sync=lambda: next(calls))
    before_k = [p.detach().clone() for p in model.key.parameters()]
    q0 = [p.detach().clone() for p in [*model.backbone.parameters(), *model.head.parameters()]]
    for i in range(3):
        objective.step((torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)), None)
        moved = any(not torch.equal(k, k0) for k, k0 in zip(model.key.parameters(), before_k, strict=True))
        assert moved == (i == 2)
    m = cfg.dynacl.momentum
    for k, k0, q in zip(model.key.parameters(), before_k, q0, strict=True):
        assert torch.allclose(k, m * k0 + (1 - m) * q, atol=1e-7)  # one EMA step, not three


def test_key_copies_the_head_with_its_dual_bn():
    model = _model(0.99)
    names = dict(model.key["head"].named_parameters())
    assert names.keys() == dict(model.head.named_parameters()).keys()
    assert any(".adv." in n for n in names) and any(".clean." in n for n in names)


def test_momentum_out_of_range_is_refused():
    with pytest.raises(Exception, match="pretrain.dynacl.momentum"):
        load_config(None, ["pretrain.dynacl.momentum=1.0"])
