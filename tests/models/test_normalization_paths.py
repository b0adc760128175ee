"""Every timm entry point into our models normalises the [0,1] input exactly once.

The normalisation lives in each network's first module (the stem conv, the ViT's patch embedding, the
``timm_any`` wrapper), so ``__call__``, ``forward_features``, ``forward_intermediates`` and timm's
``features_only=True`` extractors (which call modules directly / go through ``forward_intermediates``)
all see it once. Reference: the same weights in a model whose normalisation is the identity
(mean 0, std 1), fed ``(x - mean) / std`` computed here by hand.
"""

import pytest
import timm
import torch

from pipeline.export import save_timm_folder
from pipeline.models import MODELS, build_model
from pipeline.models.normalize import InputNormalize

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.3, 0.4)
ATOL = 1e-5

# small variants of the large registered models (same code paths, CPU-sized)
SMALL = {
    "vit_tiny_patch4_32": dict(depth=3),
    "vit_small_patch4_32": dict(depth=3),
    "wrn28_10_cifar": dict(depth=10, widen_factor=1),
    "wrn34_10_cifar": dict(depth=10, widen_factor=2),
}
TIMM_VIT = "timm:vit_tiny_patch16_224"
TIMM_BASE_KWARGS = {TIMM_VIT: dict(img_size=32, patch_size=4, depth=3)}
NAMES = [*MODELS, "timm:resnet10t", TIMM_VIT]


def build(name, mean=MEAN, std=STD, num_classes=10, **extra):
    if name.startswith("timm:"):
        if name not in TIMM_BASE_KWARGS and not extra:
            return build_model(name, num_classes, mean, std)  # the project's own entry point
        return timm.create_model(
            "timm_any",
            base=name[5:],
            num_classes=num_classes,
            mean=tuple(mean),
            std=tuple(std),
            base_kwargs=TIMM_BASE_KWARGS.get(name),
            **extra,
        )
    return timm.create_model(
        name, num_classes=num_classes, mean=tuple(mean), std=tuple(std), **SMALL.get(name, {}), **extra
    )


def pair(name, mean=MEAN, std=STD):
    """(model, the same weights with identity normalisation, x in [0,1], x normalised by hand)."""
    torch.manual_seed(0)
    model = build(name, mean, std).eval()
    plain = build(name, (0.0,) * 3, (1.0,) * 3).eval()
    plain.load_state_dict(model.state_dict())  # strict: mean/std are not in the state dict
    x = torch.rand(2, 3, 32, 32)
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return model, plain, x, xn


def close(a, b):
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close(u, v) for u, v in zip(a, b, strict=True))
    return a.shape == b.shape and torch.allclose(a, b, atol=ATOL)


def test_every_registered_model_is_covered():
    assert set(MODELS) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_keep_the_exported_layout(name):
    """Folders exported before the normalisation moved into the stem still load: same keys."""
    keys = set(build(name).state_dict())
    assert not any("normalize" in k for k in keys)
    tops = {k.split(".")[0] for k in keys}
    if name.startswith("timm:"):
        assert tops == {"model"}
        assert keys == {
            f"model.{k}"
            for k in timm.create_model(
                name[5:], num_classes=10, **TIMM_BASE_KWARGS.get(name, {})
            ).state_dict()
        }
    elif "resnet" in name and "wrn" not in name:
        assert tops == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}
        assert {k for k in keys if k.startswith("conv1.")} == {"conv1.weight"}
    elif name.startswith("vit"):
        assert tops == {"cls_token", "pos_embed", "patch_embed", "blocks", "norm", "head"}
        assert {k for k in keys if k.startswith("patch_embed.")} == {
            "patch_embed.proj.weight",
            "patch_embed.proj.bias",
        }
    else:
        assert tops == {"conv1", "block1", "block2", "block3", "bn", "fc"}
        assert {k for k in keys if k.startswith("conv1.")} == {"conv1.weight"}


@pytest.mark.parametrize(
    ("name", "n_keys"),
    [
        ("resnet10_cifar_tiny", 74),
        ("resnet18_cifar", 122),
        ("vit_micro_patch4_32", 56),
        ("wrn28_10_cifar", 46),
    ],
)
def test_state_dict_key_count_as_before(name, n_keys):
    # counts taken from the models as they were before the normalisation moved into the stem
    assert len(build(name).state_dict()) == n_keys


@pytest.mark.parametrize("name", NAMES)
def test_normalize_attribute_still_there(name):
    model = build(name, (0.5,) * 3, (0.25,) * 3)
    assert isinstance(model.normalize, InputNormalize)
    assert torch.allclose(model.normalize(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("name", NAMES)
def test_call_forward_features_forward_head(name):
    model, plain, x, xn = pair(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert close(feats, plain.forward_features(xn))
        assert close(model(x), plain(xn))
        assert close(model.forward_head(feats), model(x))
        assert close(
            model.forward_head(feats, pre_logits=True),
            plain.forward_head(plain.forward_features(xn), pre_logits=True),
        )


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates(name):
    model, plain, x, xn = pair(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        final, inter = model.forward_intermediates(x)
        ref_final, ref_inter = plain.forward_intermediates(xn)
        assert close(final, ref_final) and close(inter, ref_inter)
        assert close(final, feats)  # the final features are forward_features'
        if "resnet" in name:  # no final norm: the last stage's output is the feature map
            assert close(inter[-1], feats)
        for kwargs in (
            dict(indices=1),
            dict(indices=[0, -1]),
            dict(norm=True),
            dict(stop_early=True, indices=[0]),
            dict(indices=2, norm=True),
        ):
            assert close(
                model.forward_intermediates(x, intermediates_only=True, **kwargs),
                plain.forward_intermediates(xn, intermediates_only=True, **kwargs),
            ), kwargs
            got, ref = model.forward_intermediates(x, **kwargs), plain.forward_intermediates(xn, **kwargs)
            assert close(got[0], ref[0]) and close(got[1], ref[1]), kwargs
        if name.startswith("vit") or name == TIMM_VIT:  # the final norm on the last block's patch tokens
            n_prefix = (model.model if name.startswith("timm:") else model).num_prefix_tokens
            last = model.forward_intermediates(
                x, indices=1, norm=True, output_fmt="NLC", intermediates_only=True
            )[-1]
            assert close(last, feats[:, n_prefix:])


def _check_feature_maps(name, features, plain, x, xn):
    assert any(n.endswith("normalize.mean") for n, _ in features.named_buffers())  # inside: moves with .to()
    features.eval()
    indices = list(features.feature_info.out_indices)
    with torch.no_grad():
        maps = features(x)
        ref = plain.forward_intermediates(xn, indices=indices, intermediates_only=True)
        assert close(maps, ref)
        assert [m.shape[1] for m in maps] == features.feature_info.channels()
        if "resnet" in name and 4 in indices:  # the reported symptom: last map == forward_features
            assert close(maps[-1], plain.forward_features(xn))


@pytest.mark.parametrize("name", NAMES)
def test_features_only_local_dir_round_trip(tmp_path, name):
    model, plain, x, xn = pair(name)
    save_timm_folder(model, tmp_path / "m")
    features = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True, features_only=True)
    _check_feature_maps(name, features, plain, x, xn)
    # a subset of stages / blocks
    out_indices = (0, 2)
    if name.startswith("vit") or name == TIMM_VIT:  # FeatureGetterNet: indices over blocks
        out_indices = (0, len((plain.model if name.startswith("timm:") else plain).blocks) - 1)
    features = timm.create_model(
        f"local-dir:{tmp_path / 'm'}", pretrained=True, features_only=True, out_indices=out_indices
    )
    _check_feature_maps(name, features, plain, x, xn)


@pytest.mark.parametrize("name", NAMES)
def test_features_only_direct(name):
    model, plain, x, xn = pair(name)
    overlay = dict(state_dict=model.state_dict(), num_classes=10)
    if name.startswith("timm:"):
        features = timm.create_model(
            "timm_any",
            base=name[5:],
            mean=MEAN,
            std=STD,
            features_only=True,
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            base_kwargs=TIMM_BASE_KWARGS.get(name),
        )
    else:
        features = timm.create_model(
            name,
            mean=MEAN,
            std=STD,
            features_only=True,
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            **SMALL.get(name, {}),
        )
    _check_feature_maps(name, features, plain, x, xn)


@pytest.mark.parametrize("name", NAMES)
def test_normalised_exactly_once(tmp_path, name):
    """mean = std = 0.5: normalising twice ((2(2x-1)-1)) or not at all would give other outputs."""
    model, plain, x, xn = pair(name, (0.5,) * 3, (0.5,) * 3)
    twice = 2 * xn - 1
    save_timm_folder(model, tmp_path / "m")
    features = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True, features_only=True).eval()
    with torch.no_grad():
        for got, ref_fn in (
            (model(x), plain),
            (model.forward_features(x), plain.forward_features),
            (
                model.forward_intermediates(x, intermediates_only=True),
                lambda t: plain.forward_intermediates(t, intermediates_only=True),
            ),
            (
                features(x),
                lambda t: plain.forward_intermediates(
                    t, indices=list(features.feature_info.out_indices), intermediates_only=True
                ),
            ),
        ):
            assert close(got, ref_fn(xn))
            assert not close(got, ref_fn(twice)) and not close(got, ref_fn(x))
