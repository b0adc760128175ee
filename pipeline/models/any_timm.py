"""Any other timm architecture, by name, with our input normalisation in front.

``model.name: timm:<name>`` (e.g. ``timm:convnext_atto``) builds ``timm.create_model(<name>)`` inside a
thin wrapper registered as the timm model ``timm_any``, so that the exported folder records
``base=<name>`` and reloads with ``timm.create_model("local-dir:...")`` like our own architectures.
The base must accept the input size (pass ``img_size`` for ViT-style models through ``base_kwargs``).

The normalisation is the wrapper's (an arbitrary base may pad, rearrange or split its input before
its first conv, so it is not pushed into the base's stem). Every entry point of the wrapper normalises
exactly once: ``__call__`` / ``forward_features`` / ``forward_intermediates`` normalise and delegate to
the base; ``forward_head`` takes features. ``timm.create_model("timm_any", base=..., features_only=True)``
(and ``"local-dir:<folder>"`` with ``features_only=True``) returns a :class:`PixelSpaceFeatures`: the
normalisation in front of timm's own feature extractor for the base, holding the wrapper's weights.
"""

from __future__ import annotations

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .normalize import DEFAULT_MEAN, DEFAULT_STD, InputNormalize


class PixelSpaceTimm(nn.Module):
    def __init__(
        self,
        base: str,
        num_classes: int = 10,
        mean=DEFAULT_MEAN,
        std=DEFAULT_STD,
        base_kwargs: dict | None = None,
        in_chans: int = 3,
        global_pool: str | None = None,
    ):
        super().__init__()
        extra = dict(base_kwargs or {}, **({"global_pool": global_pool} if global_pool else {}))
        self.normalize = InputNormalize(mean, std)
        self.model = timm.create_model(
            base, pretrained=False, num_classes=num_classes, in_chans=in_chans, **extra
        )
        self.num_classes, self.num_features = num_classes, self.model.num_features
        self.base_name, self.base_args = (
            base,
            dict(extra, in_chans=in_chans),
        )  # to rebuild as a feature extractor

    def forward_features(self, x):
        return self.model.forward_features(self.normalize(x))  # x in [0,1]

    def forward_head(self, x, pre_logits: bool = False):
        return self.model.forward_head(x, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x, *args, **kwargs):
        """The base's ``forward_intermediates`` (same arguments) on the normalised input."""
        if not hasattr(self.model, "forward_intermediates"):
            raise AttributeError(f"timm model {self.base_name!r} has no forward_intermediates")
        return self.model.forward_intermediates(self.normalize(x), *args, **kwargs)

    def prune_intermediate_layers(self, *args, **kwargs):
        out = self.model.prune_intermediate_layers(*args, **kwargs)
        self.num_classes, self.num_features = self.model.num_classes, self.model.num_features
        return out

    @property
    def feature_info(self):
        """The base's ``feature_info`` (module names relative to ``self.model``)."""
        return self.model.feature_info

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        self.model.reset_classifier(num_classes, *([global_pool] if global_pool else []))
        self.num_classes = num_classes


class PixelSpaceFeatures(nn.Module):
    """``features_only`` for ``timm_any``: normalisation, then timm's feature extractor for the base
    (``FeatureListNet``, ``FeatureGetterNet``, … whichever timm picks for it). ``x`` in [0,1]."""

    def __init__(self, normalize: InputNormalize, features: nn.Module):
        super().__init__()
        self.normalize, self.model = normalize, features
        self.feature_info = features.feature_info

    @classmethod
    def from_model(cls, wrapper: PixelSpaceTimm, **feature_args) -> PixelSpaceFeatures:
        """timm's ``features_only`` extractor of ``wrapper``'s base, carrying ``wrapper``'s weights.

        timm decides per architecture how to extract features (and may prune layers), so the base is
        rebuilt by timm with ``features_only=True``, its weights passed as the pretrained state dict
        (loaded before timm wraps/prunes it, exactly like downloaded weights)."""
        state = {k: v.detach().clone() for k, v in wrapper.model.state_dict().items()}
        features = timm.create_model(
            wrapper.base_name,
            pretrained=True,
            features_only=True,
            num_classes=wrapper.num_classes,
            pretrained_cfg_overlay=dict(state_dict=state, source="", num_classes=wrapper.num_classes),
            **wrapper.base_args,
            **feature_args,
        )
        _check_same_weights(features, state, wrapper.base_name)
        return cls(wrapper.normalize, features).train(wrapper.training)

    def forward(self, x):
        return self.model(self.normalize(x))


def _check_same_weights(features: nn.Module, state: dict, base: str) -> None:
    """timm loads the classifier-less weights non-strictly: make sure what the extractor kept is ours.
    Keys are matched up to timm's renaming (``FeatureGetterNet``'s ``model.`` prefix,
    ``flatten_sequential``'s ``stages_0`` for ``stages.0``)."""

    def canon(key: str) -> str:
        return key.replace("_", ".")

    ours = {canon(k): v for k, v in state.items()}
    for key, value in features.state_dict().items():
        k = canon(key)
        k = k if k in ours or not k.startswith("model.") else k[len("model.") :]
        if k in ours and not (ours[k].shape == value.shape and torch.equal(ours[k], value)):
            raise RuntimeError(
                f"timm_any features_only for {base!r}: {key!r} did not receive the model's weights"
            )


default_cfgs = generate_default_cfgs(
    {
        "timm_any.untrained": {
            "num_classes": 10,
            "input_size": (3, 32, 32),
            "crop_pct": 1.0,
            "mean": (0.0, 0.0, 0.0),
            "std": (1.0, 1.0, 1.0),
            "classifier": "model.head",
        }
    }
)

_FEATURE_ARGS = ("out_indices", "feature_cls")  # consumed by build_model_with_cfg when features_only


@register_model
def timm_any(pretrained: bool = False, **kwargs) -> PixelSpaceTimm | PixelSpaceFeatures:
    features_only = kwargs.pop("features_only", False)
    feature_args = {k: kwargs.pop(k) for k in _FEATURE_ARGS if k in kwargs} if features_only else {}
    model = build_model_with_cfg(PixelSpaceTimm, "timm_any", pretrained, **kwargs)
    return PixelSpaceFeatures.from_model(model, **feature_args) if features_only else model
