"""Every registered model: forward shape, no NaN, backbone/head separable, timm round trip; dual BN."""

import pytest
import timm
import torch
from torch import nn

from pipeline.export import load_timm_folder, save_timm_folder
from pipeline.models import (
    MODELS,
    bn_branch,
    build_model,
    convert_to_dual_bn,
    has_batch_norm,
    resolve_dual_bn,
)
from pipeline.models.dual_bn import DualBatchNorm


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shape_no_nan(name):
    torch.manual_seed(0)
    model = build_model(name, 10, (0.5,) * 3, (0.5,) * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert features.shape == (2, model.num_features)
    backbone = build_model(name, 0, (0.5,) * 3, (0.5,) * 3)
    assert backbone.eval()(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["resnet10_cifar_tiny", "vit_micro_patch4_32"])
def test_timm_local_dir_roundtrip(tmp_path, name):
    model = build_model(name, 7, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4)).eval()
    save_timm_folder(model, tmp_path / "m")
    again = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True).eval()
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(model(x), again(x), atol=1e-6)
    assert torch.equal(load_timm_folder(tmp_path / "m").normalize.mean, model.normalize.mean)


def test_normalisation_is_inside_the_model():
    model = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.25,) * 3)
    assert torch.allclose(model.normalize(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))


def test_dual_bn_keeps_two_sets_of_statistics():
    torch.manual_seed(0)
    model = convert_to_dual_bn(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3)).train()
    with bn_branch(model, "clean"):
        model(torch.rand(8, 3, 32, 32))
    with bn_branch(model, "adv"):
        model(torch.rand(8, 3, 32, 32) * 0.2)
    dual = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    assert dual and not torch.allclose(dual[0].clean.running_mean, dual[0].adv.running_mean)
    adv_mean = dual[0].adv.running_mean.clone()
    plain = resolve_dual_bn(model, "adv")
    assert not any(isinstance(m, DualBatchNorm) for m in plain.modules())
    assert torch.equal(plain.bn1.running_mean, adv_mean)
    assert isinstance(plain.bn1, nn.BatchNorm2d)


def test_vit_has_no_batch_norm():
    assert not has_batch_norm(build_model("vit_micro_patch4_32", 0, (0.5,) * 3, (0.5,) * 3))


def test_any_timm_name_gets_normalisation_and_round_trips(tmp_path):
    model = build_model("timm:resnet10t", 5, (0.5,) * 3, (0.25,) * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 5) and torch.isfinite(model(x)).all()
    save_timm_folder(model, tmp_path / "m")
    assert torch.allclose(load_timm_folder(tmp_path / "m")(x), model(x), atol=1e-6)
    from pipeline.errors import UsageError
    from pipeline.export import load_backbone_weights

    fresh = build_model("timm:resnet10t", 5, (0.5,) * 3, (0.25,) * 3)
    load_backbone_weights(fresh, tmp_path / "m", "timm:resnet10t", "finetune.init")
    with pytest.raises(UsageError, match="holds a 'timm:resnet10t' but model.name='resnet10_cifar_tiny'"):
        load_backbone_weights(
            build_model("resnet10_cifar_tiny", 5, (0.5,) * 3, (0.5,) * 3),
            tmp_path / "m",
            "resnet10_cifar_tiny",
            "finetune.init",
        )
    with pytest.raises(UsageError, match="is not a timm model"):
        build_model("timm:not_a_model", 5, (0.5,) * 3, (0.5,) * 3)
