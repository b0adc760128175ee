"""Input normalisation as the model's first layer.

Every model in this project takes images in [0,1]; the (mean, std) standardisation lives inside the
network so that attacks, ε and AutoAttack all work in pixel units and an exported model needs no
separate preprocessing recipe.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class InputNormalize(nn.Module):
    """``(x - mean) / std`` per channel; ``x``: (B, C, H, W) in [0,1]."""

    def __init__(self, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD):
        super().__init__()
        # non-persistent: the values are architecture arguments (recorded in config.json), not weights
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
