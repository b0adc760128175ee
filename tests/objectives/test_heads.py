"""The projection heads (``pretrain.head``), the methods' defaults for head and crop interpolation, and dual
BN on the head's BatchNorm1d layers."""

import pytest
import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from pipeline.config import load_config
from pipeline.models import bn_branch, convert_to_dual_bn, resolve_dual_bn
from pipeline.models.dual_bn import DualBatchNorm, DualBatchNorm2d
from pipeline.objectives import pretrain_method
from pipeline.objectives.heads import build_head


def test_acl_head_is_the_reference_proj_head():
    # models/resnet_multi_bn.py proj_head(512): fc1 (bias) bn1 relu fc2 (no bias) bn2 relu fc3 (no bias) bn3
    layers = list(build_head("acl", 512).layers)
    kinds = [type(m) for m in layers]
    block = [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert kinds == block + block + block[:2]
    fc1, fc2, fc3 = layers[0], layers[3], layers[6]
    assert [(m.in_features, m.out_features, m.bias is not None) for m in (fc1, fc2, fc3)] == [
        (512, 512, True),
        (512, 512, False),
        (512, 512, False),
    ]
    assert all(m.num_features == 512 for m in layers[1::3])


def test_acl_head_widths():
    fc1, fc2, fc3 = (m for m in build_head("acl", 128, 32, 16).layers if isinstance(m, nn.Linear))
    assert (fc1.in_features, fc1.out_features, fc2.out_features, fc3.out_features) == (128, 32, 32, 16)


def test_simclr_head_is_lightlys():
    head = build_head("simclr", 128)
    assert isinstance(head, SimCLRProjectionHead)
    # lightly 1.6: Linear(no bias) BN ReLU Linear(no bias) BN
    assert [m.out_features for m in head.layers if isinstance(m, nn.Linear)] == [512, 128]


def test_every_head_bn_is_dual_and_routed():
    torch.manual_seed(0)
    head = build_head("acl", 16, dual_bn=True).train()
    duals = [m for m in head.modules() if isinstance(m, DualBatchNorm)]
    assert len(duals) == 3 and all(isinstance(m.clean, nn.BatchNorm1d) for m in duals)
    assert "layers.1.clean.weight" in head.state_dict() and "layers.7.adv.running_var" in head.state_dict()
    with bn_branch(head, "adv"):
        head(torch.randn(8, 16) * 3)
    assert not torch.equal(duals[0].adv.running_var, duals[0].clean.running_var)
    assert convert_to_dual_bn(head) is head  # converting again changes nothing
    assert len([m for m in head.modules() if isinstance(m, DualBatchNorm)]) == 3
    plain = resolve_dual_bn(head, "adv")
    assert isinstance(plain.layers[1], nn.BatchNorm1d) and DualBatchNorm2d is DualBatchNorm


@pytest.mark.parametrize(
    ("method", "head", "interpolation"),
    [("acl", "acl", "bicubic"), ("dynacl", "acl", "bilinear"), ("simclr", "simclr", "bilinear")],
)
def test_method_defaults(method, head, interpolation):
    cfg = load_config(None, [f"pretrain.method={method}"]).pretrain
    m = pretrain_method(cfg, 10)
    assert (m.head, m.crop_interpolation, cfg.min_crop_scale) == (head, interpolation, 0.1)
    cfg = load_config(
        None, [f"pretrain.method={method}", "pretrain.head=simclr", "pretrain.crop_interpolation=nearest"]
    ).pretrain
    assert (pretrain_method(cfg, 10).head, pretrain_method(cfg, 10).crop_interpolation) == (
        "simclr",
        "nearest",
    )


@pytest.mark.parametrize(
    "override", ["pretrain.head=mlp", "pretrain.crop_interpolation=cubic", "pretrain.proj_dim=-1"]
)
def test_bad_values_are_refused(override):
    key = override.split("=")[0]
    with pytest.raises(Exception, match=key):
        load_config(None, [override])
