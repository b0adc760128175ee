"""The models this project trains, by name — one decorator per architecture.

``@register_architecture(family, note)`` registers the builder with timm (so ``timm.create_model`` and
``local-dir:`` folders know it) *and* with :data:`MODELS` (so ``model.name`` is validated against it):
adding a model is one file with one decorated builder, imported in ``pipeline/models/__init__.py``.
Any other timm architecture is reachable as ``timm:<name>`` (``any_timm.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import timm
from timm.models import register_model
from torch import nn

from ..registry import Registry
from ..validation import InvalidValue, check
from .pretrained import fresh_head, load_pretrained_into, resolve_normalization, weights_path


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
    # normalisation inside the model; [] = the weights' pretrained_cfg, else our registry default, else an
    # error (pipeline/models/pretrained.py)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    # starting weights: a .safetensors / plain state-dict file, or a timm / Hugging Face model folder
    # (local-dir:<folder> also accepted); "" = random initialisation. Never downloads.
    pretrained: str = ""
    kwargs: dict[str, Any] = field(
        default_factory=dict
    )  # constructor arguments, e.g. {img_size: 64, drop_path_rate: 0.1}

    def check(self) -> None:
        check_model_name(self.name, "name")
        check(
            len(self.mean) == len(self.std) and len(self.mean) in (0, 3) and min(self.std, default=1) > 0,
            "std",
            self.std,
            "give 3 means and 3 positive stds, or neither (model.mean=[] model.std=[])",
        )
        check(
            not {"num_classes", "mean", "std", "pretrained"} & set(self.kwargs),
            "kwargs",
            self.kwargs,
            "set num_classes through data.num_classes and mean/std/pretrained through their own keys",
        )
        # model.pretrained is checked where it is read (a recipe may name weights the user fetches later); a
        # timm model with neither weights nor mean/std fails here already
        if not self.pretrained:
            self.normalization()

    def follow_image_size(self, image_size: int) -> None:
        """A registered ViT's ``img_size`` is the data's unless ``model.kwargs`` sets it: its position
        embedding has one entry per patch, so a ViT built for 32 px cannot take the 16 px quickstart digits.
        Written into the resolved config (``model.kwargs.img_size``), so a run directory's config.yaml says it."""
        info = MODELS.get(self.name) if self.name in MODELS.names() else None
        if info is not None and info.family == "vit" and "img_size" not in self.kwargs:
            self.kwargs["img_size"] = int(image_size)

    def normalization(self, key: str = "model.pretrained") -> tuple[tuple, tuple, str]:
        """(mean, std, where they came from): pipeline/models/pretrained.py's rule."""
        # explicit mean/std need no weights (a recipe states its statistics before the user fetches them)
        weights = (
            weights_path(self.pretrained, key) if self.pretrained and not (self.mean and self.std) else None
        )
        return resolve_normalization(self.name, self.mean, self.std, weights)

    def build(self, num_classes: int, key: str = "model.pretrained", whole: bool = False) -> nn.Module:
        """The configured network: ``num_classes=0`` gives the backbone; ``model.pretrained`` loaded when set
        (its classifier kept only when its class count is ``num_classes``; with ``whole`` it must be)."""
        return self.build_with_facts(num_classes, key, whole)[0]

    def build_with_facts(
        self, num_classes: int, key: str = "model.pretrained", whole: bool = False
    ) -> tuple[nn.Module, ModelFacts]:
        """:meth:`build`, and what was built (architecture, weights, normalisation and its source, head)."""
        mean, std, source = self.normalization(key)
        model = build_model(self.name, num_classes, mean, std, self.kwargs)
        head = fresh_head(num_classes)
        if self.pretrained:
            file = weights_path(self.pretrained, key)
            if self.name.startswith("timm:"):  # the wrapper's base is a plain timm network
                head = load_pretrained_into(
                    model.model, self.name[5:], file, num_classes, dict(self.kwargs), key, whole
                )
            else:
                head = load_pretrained_into(
                    model, self.name, file, num_classes, dict(self.kwargs, mean=mean, std=std), key, whole
                )
        weights = f"{key}={self.pretrained}" if self.pretrained else "random initialisation"
        return model, ModelFacts(self.architecture(), weights, list(mean), list(std), source, head)

    def architecture(self) -> str:
        """The real architecture: ``resnet18`` for ``timm:resnet18`` (built inside our normalising wrapper)."""
        return self.name.removeprefix("timm:")


@dataclass
class ModelFacts:
    """What a stage says about the network it starts from: one line at start, the same in its manifest."""

    architecture: str  # the real one (resnet18), not the wrapper timm registers it under (timm_any)
    weights: str  # model.pretrained=<file or folder>, a pretrained backbone, or random initialisation
    mean: list[float]  # the normalisation inside the model ([0,1] inputs)
    std: list[float]
    normalization_source: str  # which rule gave them (pipeline/models/pretrained.py)
    head: str  # what became of the classifier: kept, replaced by a fresh one, ...

    def line(self) -> str:
        return (
            f"model {self.architecture}, weights {self.weights}, normalisation mean {_short(self.mean)} "
            f"std {_short(self.std)} from {self.normalization_source}, head: {self.head}"
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _short(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def check_model_name(name: str, key: str = "model.name") -> ModelInfo:
    """Return the registry entry or raise a one-line error listing what exists."""
    if name.startswith("timm:"):
        if not timm.is_model(name[5:]):
            raise InvalidValue(
                key,
                name,
                message=f"{{key}}={name!r}: {name[5:]!r} is not a timm model; see timm.list_models()",
            )
        return ModelInfo("timm", "any timm architecture, normalisation added in front")
    if name not in MODELS:
        raise InvalidValue(
            key, name, message=f"{{key}}={name!r} is not a registered model; use one of: {', '.join(MODELS)}"
        )
    return MODELS.get(name)


def build_model(
    name: str, num_classes: int, mean: Sequence[float], std: Sequence[float], kwargs: dict | None = None
) -> nn.Module:
    """Build a registered model: ``num_classes=0`` gives the backbone (pooled features, ``num_features``).
    ``kwargs`` go to the architecture's constructor (for ``timm:<name>``, to the wrapped timm model)."""
    check_model_name(name)
    kwargs = dict(kwargs or {})
    if name.startswith("timm:"):
        return timm.create_model(
            "timm_any",
            base=name[5:],
            num_classes=num_classes,
            mean=tuple(mean),
            std=tuple(std),
            base_kwargs=kwargs,
        )
    return timm.create_model(name, num_classes=num_classes, mean=tuple(mean), std=tuple(std), **kwargs)
