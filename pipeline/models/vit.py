"""Vision Transformers at 32 px with 4×4 patches (64 tokens), registered as timm models.

A 16×16 patch on a 32 px image leaves 4 tokens; the small-image recipe uses patch 4. We reuse timm's
``VisionTransformer`` unchanged apart from the normalisation layer in front.
"""

from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, InputNormalize
from .registry import register_architecture


class PixelViT(VisionTransformer):
    """timm ``VisionTransformer`` taking [0,1] images (normalisation inside)."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD, **kwargs):
        super().__init__(**kwargs)
        self.normalize = InputNormalize(mean, std)

    def forward_features(self, x, *args, **kwargs):
        # x: (B, 3, 32, 32) in [0,1] -> tokens (B, 1 + 64, D)
        return super().forward_features(self.normalize(x), *args, **kwargs)


def _cfg(**kwargs):
    return {
        "num_classes": 10, "input_size": (3, 32, 32), "pool_size": None, "crop_pct": 1.0,
        "interpolation": "bicubic", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
        "first_conv": "patch_embed.proj", "classifier": "head", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "vit_tiny_patch4_32.untrained": _cfg(),
    "vit_small_patch4_32.untrained": _cfg(),
    "vit_micro_patch4_32.untrained": _cfg(),
})


def _create(variant: str, pretrained: bool, **kwargs) -> PixelViT:
    kwargs = dict(dict(img_size=32, patch_size=4), **kwargs)
    return build_model_with_cfg(PixelViT, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)


@register_architecture("vit", "ViT-Tiny, patch 4")
def vit_tiny_patch4_32(pretrained: bool = False, **kwargs) -> PixelViT:
    """ViT-Tiny (5.4 M parameters): width 192, depth 12, 3 heads."""
    return _create("vit_tiny_patch4_32", pretrained, **dict(dict(embed_dim=192, depth=12, num_heads=3), **kwargs))


@register_architecture("vit", "ViT-Small, patch 4")
def vit_small_patch4_32(pretrained: bool = False, **kwargs) -> PixelViT:
    """ViT-Small (21 M parameters): width 384, depth 12, 6 heads."""
    return _create("vit_small_patch4_32", pretrained, **dict(dict(embed_dim=384, depth=12, num_heads=6), **kwargs))


@register_architecture("vit", "0.2 M params ViT; tests")
def vit_micro_patch4_32(pretrained: bool = False, **kwargs) -> PixelViT:
    """A 0.2 M-parameter ViT (width 64, depth 4, 2 heads) for CPU tests."""
    return _create("vit_micro_patch4_32", pretrained, **dict(dict(embed_dim=64, depth=4, num_heads=2), **kwargs))
