"""Any other timm architecture, by name, with our input normalisation in front.

``model.name: timm:<name>`` (e.g. ``timm:convnext_atto``) builds ``timm.create_model(<name>)`` inside a
thin wrapper registered as the timm model ``timm_any``, so that the exported folder records
``base=<name>`` and reloads with ``timm.create_model("local-dir:...")`` like our own architectures.
The base must accept the input size (pass ``img_size`` for ViT-style models through ``base_kwargs``).
"""

from __future__ import annotations

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, InputNormalize


class PixelSpaceTimm(nn.Module):
    def __init__(self, base: str, num_classes: int = 10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                 base_kwargs: dict | None = None, in_chans: int = 3, global_pool: str | None = None):
        super().__init__()
        extra = dict(base_kwargs or {}, **({"global_pool": global_pool} if global_pool else {}))
        self.normalize = InputNormalize(mean, std)
        self.model = timm.create_model(base, pretrained=False, num_classes=num_classes, in_chans=in_chans, **extra)
        self.num_classes, self.num_features = num_classes, self.model.num_features

    def forward_features(self, x):
        return self.model.forward_features(self.normalize(x))  # x in [0,1]

    def forward_head(self, x, pre_logits: bool = False):
        return self.model.forward_head(x, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        self.model.reset_classifier(num_classes, *([global_pool] if global_pool else []))
        self.num_classes = num_classes


default_cfgs = generate_default_cfgs({"timm_any.untrained": {
    "num_classes": 10, "input_size": (3, 32, 32), "crop_pct": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
    "classifier": "model.head"}})


@register_model
def timm_any(pretrained: bool = False, **kwargs) -> PixelSpaceTimm:
    return build_model_with_cfg(PixelSpaceTimm, "timm_any", pretrained, **kwargs)
