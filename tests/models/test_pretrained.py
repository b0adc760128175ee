"""model.pretrained, model.kwargs and the normalisation rule (pipeline/models/pretrained.py), and
evaluate.model=timm:<name>@<weights> built by the same rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from pipeline.config import load_config
from pipeline.errors import UsageError
from pipeline.export import load_timm_weights
from pipeline.models import ModelConfig
from pipeline.models.normalize import IMAGENET_MEAN

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
VIT = "vit_tiny_patch16_224"
TINY = {"patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}  # a ViT small enough for CPU tests


def _hf_folder(
    tmp_path: Path, img_size: int = 32, num_classes: int = 7, name: str = "hf"
) -> tuple[Path, dict]:
    """A timm/Hugging Face folder (config.json with ImageNet statistics + model.safetensors), as a user
    downloads one — written by the test, so nothing is fetched."""
    torch.manual_seed(0)
    net = timm.create_model(VIT, num_classes=num_classes, img_size=img_size, **TINY)
    net.pretrained_cfg = dict(net.pretrained_cfg, mean=tuple(IMAGENET[0]), std=tuple(IMAGENET[1]))
    timm.models.save_for_hf(net, str(tmp_path / name), safe_serialization=True)
    return tmp_path / name, {k: v.clone() for k, v in net.state_dict().items()}


def test_pretrained_folder_any_image_size_and_its_own_normalisation(tmp_path):
    folder, saved = _hf_folder(tmp_path, img_size=32)
    cfg = ModelConfig(f"timm:{VIT}", pretrained=str(folder), kwargs=dict(TINY, img_size=64))
    mean, std, source = cfg.normalization()
    assert (list(mean), list(std)) == IMAGENET and "pretrained_cfg" in source
    model = cfg.build(5).eval()
    got = model.model.state_dict()
    for k, v in saved.items():
        if k == "pos_embed":  # 1 + 2×2 tokens resampled by timm to 1 + 4×4 for 64 px inputs
            assert v.shape == (1, 5, 32) and got[k].shape == (1, 17, 32)
            assert torch.equal(got[k][:, 0], v[:, 0])  # the class token's position is kept as is
        elif k.startswith("head."):  # 7-class head dropped for 5 classes
            assert got[k].shape[0] == 5
        else:
            assert torch.equal(got[k], v), k
    x = torch.rand(2, 3, 64, 64)
    m, s = torch.tensor(IMAGENET[0]).view(1, 3, 1, 1), torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.model((x - m) / s))


def test_pretrained_backbone_for_pretraining(tmp_path):
    folder, saved = _hf_folder(tmp_path)
    backbone = ModelConfig(
        f"timm:{VIT}", pretrained=f"local-dir:{folder}", kwargs=dict(TINY, img_size=32)
    ).build(0)
    assert backbone.num_classes == 0 and backbone(torch.rand(2, 3, 32, 32)).shape == (2, 32)
    assert torch.equal(backbone.model.blocks[1].mlp.fc2.weight, saved["blocks.1.mlp.fc2.weight"])


def test_normalisation_rule_order(tmp_path):
    folder, _ = _hf_folder(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "w.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    kw = dict(TINY, img_size=32)
    # 1. explicit mean/std win over the weights' config
    assert ModelConfig(f"timm:{VIT}", [0.1] * 3, [0.2] * 3, str(folder), kw).normalization()[0] == (0.1,) * 3
    # 2b. a bare file under a tagged name: timm's config of those published weights
    tagged = ModelConfig(f"timm:{VIT}.augreg_in21k", pretrained=str(bare / "w.safetensors"), kwargs=kw)
    assert tagged.normalization()[0] == (0.5, 0.5, 0.5)
    # 3. our own architectures: the registry default
    assert (
        ModelConfig("resnet10_cifar_tiny").normalization()[0] == IMAGENET_MEAN
    )  # the references' statistics
    # 4. nothing known: a one-line error, at build time and already when the config loads
    with pytest.raises(UsageError, match="carries no pretrained_cfg: set model.mean and model.std"):
        ModelConfig(f"timm:{VIT}", pretrained=str(bare / "w.safetensors"), kwargs=kw).build(5)
    with pytest.raises(UsageError, match="model.name=timm:resnet10t has no known input normalisation"):
        load_config(None, ["model.name=timm:resnet10t"])


def test_bad_pretrained_paths_and_kwargs(tmp_path):
    folder, _ = _hf_folder(tmp_path)
    with pytest.raises(UsageError, match="no such file or folder"):
        ModelConfig(f"timm:{VIT}", pretrained=str(tmp_path / "nope")).build(5)
    with pytest.raises(
        UsageError, match="does not fit vit_tiny_patch16_224"
    ):  # depth differs from the weights'
        ModelConfig(f"timm:{VIT}", pretrained=str(folder), kwargs=dict(TINY, depth=3, img_size=32)).build(5)
    with pytest.raises(UsageError, match="model.kwargs"):
        load_config(None, ["model.kwargs={num_classes: 3}"])


class _RunsCode:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickled_code_in_weights_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(UsageError, match="without running code"):
        ModelConfig("resnet10_cifar_tiny", pretrained=str(tmp_path / "evil.pt")).build(10)
    with pytest.raises(UsageError, match="without running code"):
        load_timm_weights("resnet10t", tmp_path / "evil.pt", 10, *IMAGENET)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_evaluate_external_timm_model_normalised_with_its_head(tmp_path, suffix):
    torch.manual_seed(0)
    plain = timm.create_model("resnet10t", num_classes=10).eval()
    file = tmp_path / f"w{suffix}"
    if (
        suffix == ".pt"
    ):  # a plain state-dict checkpoint as training scripts write it, DataParallel prefix included
        torch.save(
            {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in plain.state_dict().items()}}, file
        )
    else:
        save_file(plain.state_dict(), str(file))
    model, facts = load_timm_weights("resnet10t", file, 10, *IMAGENET)
    source = facts.normalization_source
    assert source == "evaluate.model.mean/std" or "mean/std" in source
    x = torch.rand(3, 3, 32, 32)
    m, s = torch.tensor(IMAGENET[0]).view(1, 3, 1, 1), torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain((x - m) / s))
    with pytest.raises(UsageError, match="10-class classifier but data.num_classes=4"):
        load_timm_weights("resnet10t", file, 4, *IMAGENET)
    with pytest.raises(UsageError, match="no known input normalisation"):
        load_timm_weights("resnet10t", file, 10)


def test_our_exported_backbone_as_pretrained_start(tmp_path):
    from pipeline.export import save_timm_folder
    from pipeline.models import build_model

    torch.manual_seed(1)
    backbone = build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.25,) * 3)
    save_timm_folder(backbone, tmp_path / "backbone")
    cfg = ModelConfig("resnet10_cifar_tiny", pretrained=str(tmp_path / "backbone"))
    assert cfg.normalization()[:2] == ((0.5,) * 3, (0.25,) * 3)  # this project's export: model_args
    clf = cfg.build(10).eval()
    assert torch.equal(clf.layer1[0].conv1.weight, backbone.layer1[0].conv1.weight) and clf.num_classes == 10
    with pytest.raises(UsageError, match=r"has no classifier \(fc.weight\) but data.num_classes=10"):
        load_timm_weights("resnet10_cifar_tiny", tmp_path / "backbone" / "model.safetensors", 10)


def test_the_built_model_says_what_it_is(tmp_path):
    """The start line and the manifests' `model`: the real architecture, where the weights and the
    normalisation came from, and that the 7-class head of the weights was replaced."""
    folder, _ = _hf_folder(tmp_path)
    cfg = ModelConfig(f"timm:{VIT}", pretrained=str(folder), kwargs=dict(TINY, img_size=32))
    _, facts = cfg.build_with_facts(5)
    assert facts.architecture == VIT and facts.weights == f"model.pretrained={folder}"
    assert (facts.mean, facts.std) == IMAGENET and facts.normalization_source.endswith("(pretrained_cfg)")
    assert facts.head == "the weights' 7-class classifier replaced by a fresh 5-class classifier"
    assert cfg.build_with_facts(7)[1].head == "the weights' 7-class classifier kept"
    line = facts.line()
    assert line.startswith(
        f"model {VIT}, weights model.pretrained={folder}, normalisation mean [0.485, 0.456"
    )
    assert "from " + facts.normalization_source in line
    _, scratch = ModelConfig("resnet10_cifar_tiny").build_with_facts(10)
    assert scratch.weights == "random initialisation" and scratch.head == "a fresh 10-class classifier"
    assert scratch.normalization_source.startswith("the registry default of resnet10_cifar_tiny")


def test_a_saved_folder_states_one_normalisation(tmp_path):
    import json

    from pipeline.export import folder_facts, save_timm_folder

    folder, _ = _hf_folder(tmp_path)
    cfg = ModelConfig(f"timm:{VIT}", pretrained=str(folder), kwargs=dict(TINY, img_size=32))
    save_timm_folder(cfg.build(5), tmp_path / "best")
    saved = json.loads((tmp_path / "best" / "config.json").read_text())
    assert saved["input_normalization"]["mean"] == saved["model_args"]["mean"] == IMAGENET[0]
    assert saved["pretrained_cfg"]["mean"] == [0, 0, 0]  # timm's transforms must not normalise again
    facts = folder_facts(tmp_path / "best")
    assert facts["architecture"] == VIT and facts["std"] == IMAGENET[1]  # not timm_any
