"""Pre-activation WideResNet [0] with the CIFAR layout, registered as a timm model.

timm has no CIFAR WideResNet (its ``wide_resnet50_2`` is an ImageNet bottleneck network), so this one
is written by hand: 3 stages of (depth-4)/6 pre-activation basic blocks, widths 16k/32k/64k. It follows
timm's model interface (``forward_features`` / ``forward_head`` / ``reset_classifier``) so the rest of
the pipeline treats it like any timm model.

[0] Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016.
"""

from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs
from torch import nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, InputNormalize
from .registry import register_architecture


class PreActBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.act = nn.ReLU(inplace=False)  # not in-place: the pre-activation feeds the shortcut too
        self.shortcut = None if (in_chs == out_chs and stride == 1) else nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.act(self.bn2(self.conv1(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, in_chans: int = 3,
                 global_pool: str = "avg", mean=CIFAR10_MEAN, std=CIFAR10_STD, drop_rate: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.normalize = InputNormalize(mean, std)
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        stages, in_chs = [], widths[0]
        for i, (w, s) in enumerate(zip(widths[1:], (1, 2, 2), strict=True)):
            stages.append(nn.Sequential(*[PreActBlock(in_chs if j == 0 else w, w, s if j == 0 else 1) for j in range(n)]))
            in_chs = w
            setattr(self, f"block{i + 1}", stages[-1])
        self.bn = nn.BatchNorm2d(in_chs)
        self.act = nn.ReLU()
        self.num_features = self.head_hidden_size = in_chs
        self.feature_info = [dict(num_chs=w, reduction=r, module=f"block{i + 1}")
                             for i, (w, r) in enumerate(zip(widths[1:], (1, 2, 4), strict=True))]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.normalize(x))  # (B, 16, 32, 32)
        x = self.block3(self.block2(self.block1(x)))  # (B, 64k, 8, 8)
        return self.act(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs({
    f"{name}.untrained": {
        "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (8, 8), "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
        "first_conv": "conv1", "classifier": "fc",
    } for name in ("wrn28_10_cifar", "wrn34_10_cifar")
})


@register_architecture("cnn", "WideResNet-28-10, pre-activation")
def wrn28_10_cifar(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-28-10 (36 M parameters)."""
    return build_model_with_cfg(WideResNet, "wrn28_10_cifar", pretrained, **dict(dict(depth=28, widen_factor=10), **kwargs))


@register_architecture("cnn", "WideResNet-34-10, pre-activation")
def wrn34_10_cifar(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-34-10 (46 M parameters), the usual TRADES / AutoAttack leaderboard backbone."""
    return build_model_with_cfg(WideResNet, "wrn34_10_cifar", pretrained, **dict(dict(depth=34, widen_factor=10), **kwargs))
