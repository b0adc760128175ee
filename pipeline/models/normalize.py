"""Input normalisation as the model's first layer.

Every model in this project takes images in [0,1]; the (mean, std) standardisation lives inside the
network so that attacks, ε and AutoAttack all work in pixel units and an exported model needs no
separate preprocessing recipe.

The normalisation is applied by the network's *first module* (``NormalizedConv2d`` as a CNN's input
conv, a normalising patch embedding in the ViT, the wrapper in ``timm_any``), never by
``forward_features`` alone: timm's feature APIs (``forward_intermediates``, ``features_only=True``)
bypass ``forward_features`` and call the stem directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the default of our own architectures: ImageNet statistics, what every reference network uses on CIFAR-10
# (NormalizeByChannelMeanStd in ACL's, DynACL's, AIR's and RCS's resnet_multi_bn.py, RobustSSL's resnet.py)
# — so a parity recipe matches without setting model.mean/std — and what most pretrained weights expect;
# a dataset's own statistics are no better a guess for an arbitrary user dataset
DEFAULT_MEAN, DEFAULT_STD = IMAGENET_MEAN, IMAGENET_STD


class InputNormalize(nn.Module):
    """``(x - mean) / std`` per channel; ``x``: (B, C, H, W) in [0,1]."""

    def __init__(self, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD):
        super().__init__()
        # non-persistent: the values are architecture arguments (recorded in config.json), not weights
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedConv2d(nn.Conv2d):
    """The input convolution of a CNN, standardising its input first: ``conv((x - mean) / std)``.

    The normalisation lives in the stem *module*, not in ``forward_features``, so every way into the
    network normalises exactly once: ``__call__``, ``forward_features``, ``forward_intermediates`` and
    timm's ``features_only`` wrappers (``FeatureListNet`` and friends call the stem module directly).
    State-dict keys are those of a plain ``nn.Conv2d`` (``weight``, ``bias``): mean/std are
    non-persistent buffers, so folders exported before the normalisation moved here load unchanged.
    """

    def __init__(
        self, *args, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.normalize = InputNormalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))
