"""ResNets with a CIFAR stem, built from timm's ``ResNet`` and registered as timm models.

timm's ResNet stem (7×7 stride-2 conv + max-pool) throws away 3/4 of a 32 px image before the first
block; the CIFAR recipe uses a 3×3 stride-1 conv and no pool. We keep timm's blocks, stages, heads and
pretrained-config machinery and swap only the stem, so ``timm.create_model("resnet18_cifar")`` and
``timm.create_model("local-dir:...")`` both work once this module is imported.
"""

from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from .normalize import DEFAULT_MEAN, DEFAULT_STD, InputNormalize, NormalizedConv2d
from .registry import register_architecture


class CifarResNet(ResNet):
    """timm ``ResNet`` with a 3×3 stride-1 stem, no max-pool, and input normalisation inside.

    The normalisation is part of the stem conv (``conv1`` is a :class:`NormalizedConv2d`), so
    ``forward_features``, ``forward_intermediates`` and ``features_only=True`` (timm's
    ``FeatureListNet`` runs ``conv1, bn1, act1, maxpool, layer1..4`` itself) all normalise exactly once.
    State-dict keys are unchanged (``conv1.weight``): mean/std are not weights.
    """

    def __init__(self, mean=DEFAULT_MEAN, std=DEFAULT_STD, **kwargs):
        super().__init__(**kwargs)
        # one 3×3 conv producing what timm's stem would (bn1's width; 'deep' stems give 2×stem_width)
        self.conv1 = NormalizedConv2d(
            self.in_chans, self.bn1.num_features, 3, stride=1, padding=1, bias=False, mean=mean, std=std
        )
        self.maxpool = nn.Identity()
        # the stem no longer reduces resolution: feature maps are 32→32→16→8→4
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // 4)

    @property
    def normalize(self) -> InputNormalize:
        """The input normalisation (held by the stem conv)."""
        return self.conv1.normalize


def _cfg(**kwargs):
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),  # normalised inside
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "resnet18_cifar.untrained": _cfg(),
        "resnet10_cifar_tiny.untrained": _cfg(),
    }
)


def _create(variant: str, pretrained: bool, **kwargs) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


@register_architecture("cnn", "0.3 M params; quickstart and tests")
def resnet10_cifar_tiny(pretrained: bool = False, **kwargs) -> CifarResNet:
    """A 0.3 M-parameter ResNet-10 (widths 16-32-64-128) for the CPU quickstart and tests."""
    args = dict(
        block=BasicBlock, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_type="deep", stem_width=8
    )
    return _create("resnet10_cifar_tiny", pretrained, **dict(args, **kwargs))


@register_architecture("cnn", "ResNet-18, CIFAR stem (the ACL/DynACL backbone)")
def resnet18_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-18 (11 M parameters) with the CIFAR stem."""
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create("resnet18_cifar", pretrained, **dict(args, **kwargs))
