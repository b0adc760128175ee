"""The models this project trains, by name. Each is a timm-registered architecture (see the sibling
modules); this table adds what the pipeline needs to know about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import timm
from torch import nn

from ..errors import UsageError


@dataclass(frozen=True)
class ModelInfo:
    family: str  # "cnn" | "vit"
    input_size: int  # the image side it is built for
    note: str


MODELS: dict[str, ModelInfo] = {
    "resnet10_cifar_tiny": ModelInfo("cnn", 32, "0.3 M params; quickstart and tests"),
    "resnet18_cifar": ModelInfo("cnn", 32, "ResNet-18, CIFAR stem (the ACL/DynACL backbone)"),
    "wrn28_10_cifar": ModelInfo("cnn", 32, "WideResNet-28-10, pre-activation"),
    "wrn34_10_cifar": ModelInfo("cnn", 32, "WideResNet-34-10, pre-activation"),
    "vit_micro_patch4_32": ModelInfo("vit", 32, "0.2 M params ViT; tests"),
    "vit_tiny_patch4_32": ModelInfo("vit", 32, "ViT-Tiny, patch 4"),
    "vit_small_patch4_32": ModelInfo("vit", 32, "ViT-Small, patch 4"),
}


def check_model_name(name: str, key: str = "model.name") -> ModelInfo:
    """Return the registry entry or raise a one-line error listing what exists."""
    if name.startswith("timm:"):
        if not timm.is_model(name[5:]):
            raise UsageError(f"{key}={name!r}: {name[5:]!r} is not a timm model; see timm.list_models()")
        return ModelInfo("timm", 0, "any timm architecture, normalisation added in front")
    if name not in MODELS:
        raise UsageError(f"{key}={name!r} is not a registered model; use one of: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """Build a registered model: ``num_classes=0`` gives the backbone (pooled features, ``num_features``)."""
    check_model_name(name)
    if name.startswith("timm:"):
        return timm.create_model("timm_any", base=name[5:], num_classes=num_classes, mean=tuple(mean), std=tuple(std))
    return timm.create_model(name, num_classes=num_classes, mean=tuple(mean), std=tuple(std))
