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
from timm.models._features import feature_take_indices
from torch import nn

from .normalize import DEFAULT_MEAN, DEFAULT_STD, InputNormalize, NormalizedConv2d
from .registry import register_architecture


class PreActBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.act = nn.ReLU(inplace=False)  # not in-place: the pre-activation feeds the shortcut too
        self.shortcut = (
            None if (in_chs == out_chs and stride == 1) else nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)
        )

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.act(self.bn2(self.conv1(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        mean=DEFAULT_MEAN,
        std=DEFAULT_STD,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        # the stem conv normalises its input: every path into the network (forward_features,
        # forward_intermediates, features_only's FeatureListNet) goes through it exactly once
        self.conv1 = NormalizedConv2d(in_chans, widths[0], 3, 1, 1, bias=False, mean=mean, std=std)
        stages, in_chs = [], widths[0]
        for i, (w, s) in enumerate(zip(widths[1:], (1, 2, 2), strict=True)):
            stages.append(
                nn.Sequential(
                    *[PreActBlock(in_chs if j == 0 else w, w, s if j == 0 else 1) for j in range(n)]
                )
            )
            in_chs = w
            setattr(self, f"block{i + 1}", stages[-1])
        self.bn = nn.BatchNorm2d(in_chs)
        self.act = nn.ReLU()
        self.num_features = self.head_hidden_size = in_chs
        self.feature_info = [
            dict(num_chs=w, reduction=r, module=f"block{i + 1}")
            for i, (w, r) in enumerate(zip(widths[1:], (1, 2, 4), strict=True))
        ]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def normalize(self) -> InputNormalize:
        """The input normalisation (held by the stem conv)."""
        return self.conv1.normalize

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's intermediate-features API; indices 0, 1, 2 are the outputs of ``block1..3``
        (``feature_info``). As in timm's pre-activation ResNetV2, the last block's output is taken
        before the final BN + ReLU unless ``norm=True``; the returned final features always have them
        (= ``forward_features``) when the last block ran."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        names = [info["module"] for info in self.feature_info]
        take_indices, max_index = feature_take_indices(len(names), indices)
        last = len(names) - 1
        intermediates = []
        x = self.conv1(x)  # normalises
        for i, name in enumerate(names[: max_index + 1] if stop_early else names):
            x = getattr(self, name)(x)
            if i in take_indices:
                intermediates.append(self.act(self.bn(x)) if (norm and i == last) else x)
        if intermediates_only:
            return intermediates
        if not stop_early or max_index == last:
            x = self.act(self.bn(x))
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks (and final norm / head) not needed for ``indices``; returns the kept indices."""
        names = [info["module"] for info in self.feature_info]
        take_indices, max_index = feature_take_indices(len(names), indices)
        for name in names[max_index + 1 :]:
            setattr(self, name, nn.Sequential())
        prune_end = max_index < len(names) - 1
        if prune_norm or prune_end:
            self.bn, self.act = nn.Identity(), nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # normalises; (B, 16, 32, 32)
        x = self.block3(self.block2(self.block1(x)))  # (B, 64k, 8, 8)
        return self.act(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs(
    {
        f"{name}.untrained": {
            "num_classes": 10,
            "input_size": (3, 32, 32),
            "pool_size": (8, 8),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": (0.0, 0.0, 0.0),
            "std": (1.0, 1.0, 1.0),
            "first_conv": "conv1",
            "classifier": "fc",
        }
        for name in ("wrn28_10_cifar", "wrn34_10_cifar")
    }
)


def _create(variant: str, pretrained: bool, **kwargs) -> WideResNet:
    # features_only: timm's FeatureListNet over conv1 (normalising), block1..3 — all three by default
    return build_model_with_cfg(
        WideResNet, variant, pretrained, feature_cfg=dict(out_indices=(0, 1, 2)), **kwargs
    )


@register_architecture("cnn", "WideResNet-28-10, pre-activation")
def wrn28_10_cifar(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-28-10 (36 M parameters)."""
    return _create("wrn28_10_cifar", pretrained, **dict(dict(depth=28, widen_factor=10), **kwargs))


@register_architecture("cnn", "WideResNet-34-10, pre-activation")
def wrn34_10_cifar(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-34-10 (46 M parameters), the usual TRADES / AutoAttack leaderboard backbone."""
    return _create("wrn34_10_cifar", pretrained, **dict(dict(depth=34, widen_factor=10), **kwargs))
