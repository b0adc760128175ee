"""DynACL's momentum encoder: the second view goes through a frozen EMA copy of backbone + head, which
receives no gradients, moves by key ← m·key + (1 − m)·trained after each step's forwards, and is the
backbone the pretrain stage exports."""

import pytest
import torch

from pipeline.config import load_config
from pipeline.models import build_model, convert_to_dual_bn
from pipeline.objectives import ContrastiveModel, ContrastiveObjective


def _model(momentum):
    torch.manual_seed(0)
    backbone = build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3)
    convert_to_dual_bn(backbone)
    return ContrastiveModel(backbone, 32, 16, momentum=momentum)


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


def test_momentum_out_of_range_is_refused():
    with pytest.raises(Exception, match="pretrain.dynacl.momentum"):
        load_config(None, ["pretrain.dynacl.momentum=1.0"])
