"""The models this project trains, by name — one decorator per architecture.

``@register_architecture(family, note)`` registers the builder with timm (so ``timm.create_model`` and
``local-dir:`` folders know it) *and* with :data:`MODELS` (so ``model.name`` is validated against it):
adding a model is one file with one decorated builder, imported in ``pipeline/models/__init__.py``.
Any other timm architecture is reachable as ``timm:<name>`` (``any_timm.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import timm
from timm.models import register_model
from torch import nn

from ..registry import Registry
from ..validation import InvalidValue, check
from .normalize import CIFAR10_MEAN, CIFAR10_STD


@dataclass(frozen=True)
class ModelInfo:
    family: str  # "cnn" | "vit" | "timm"
    note: str


MODELS: Registry[ModelInfo] = Registry("model")


def register_architecture(family: str, note: str) -> Callable:
    def wrap(builder: Callable) -> Callable:
        register_model(builder)
        MODELS.add(builder.__name__, ModelInfo(family, note))
        return builder
    return wrap


@dataclass
class ModelConfig:
    name: str = "resnet10_cifar_tiny"  # a registered model (pipeline/models/) or timm:<any timm architecture>
    mean: list[float] = field(default_factory=lambda: list(CIFAR10_MEAN))  # normalisation inside the model
    std: list[float] = field(default_factory=lambda: list(CIFAR10_STD))

    def check(self) -> None:
        check_model_name(self.name, "name")
        check(len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0, "std", self.std,
              "give 3 means and 3 positive stds")


def check_model_name(name: str, key: str = "model.name") -> ModelInfo:
    """Return the registry entry or raise a one-line error listing what exists."""
    if name.startswith("timm:"):
        if not timm.is_model(name[5:]):
            raise InvalidValue(key, name, message=f"{{key}}={name!r}: {name[5:]!r} is not a timm model; "
                                                  "see timm.list_models()")
        return ModelInfo("timm", "any timm architecture, normalisation added in front")
    if name not in MODELS:
        raise InvalidValue(key, name, message=f"{{key}}={name!r} is not a registered model; use one of: "
                                              f"{', '.join(MODELS)}")
    return MODELS.get(name)


def build_model(name: str, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """Build a registered model: ``num_classes=0`` gives the backbone (pooled features, ``num_features``)."""
    check_model_name(name)
    if name.startswith("timm:"):
        return timm.create_model("timm_any", base=name[5:], num_classes=num_classes, mean=tuple(mean), std=tuple(std))
    return timm.create_model(name, num_classes=num_classes, mean=tuple(mean), std=tuple(std))
