"""Vision Transformers at 32 px with 4×4 patches (64 tokens), registered as timm models.

A 16×16 patch on a 32 px image leaves 4 tokens; the small-image recipe uses patch 4. We reuse timm's
``VisionTransformer`` unchanged apart from the normalisation inside its patch embedding.
"""

from __future__ import annotations

from functools import partial

from timm.layers import PatchEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from .normalize import DEFAULT_MEAN, DEFAULT_STD, InputNormalize
from .registry import register_architecture


class NormalizedPatchEmbed(PatchEmbed):
    """timm ``PatchEmbed`` standardising its [0,1] input first (before any dynamic padding, as before).

    State-dict keys are those of ``PatchEmbed`` (``proj.weight``, ``proj.bias``): mean/std are
    non-persistent buffers.
    """

    def __init__(self, *args, mean=DEFAULT_MEAN, std=DEFAULT_STD, **kwargs):
        super().__init__(*args, **kwargs)
        self.normalize = InputNormalize(mean, std)

    def forward(self, x):
        return super().forward(self.normalize(x))


class PixelViT(VisionTransformer):
    """timm ``VisionTransformer`` taking [0,1] images (normalisation inside).

    The normalisation is part of the patch embedding, the first module, so ``forward_features``,
    ``forward_intermediates`` / ``get_intermediate_layers`` and ``features_only=True`` (timm's
    ``FeatureGetterNet`` over ``forward_intermediates``) all normalise exactly once.
    """

    def __init__(self, mean=DEFAULT_MEAN, std=DEFAULT_STD, **kwargs):
        if "embed_layer" in kwargs:
            raise ValueError(
                "PixelViT builds its own (normalising) patch embedding; embed_layer is not supported"
            )
        super().__init__(embed_layer=partial(NormalizedPatchEmbed, mean=mean, std=std), **kwargs)

    @property
    def normalize(self) -> InputNormalize:
        """The input normalisation (held by the patch embedding)."""
        return self.patch_embed.normalize


def _cfg(**kwargs):
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "vit_tiny_patch4_32.untrained": _cfg(),
        "vit_small_patch4_32.untrained": _cfg(),
        "vit_micro_patch4_32.untrained": _cfg(),
    }
)


def _create(variant: str, pretrained: bool, **kwargs) -> PixelViT:
    kwargs = dict(dict(img_size=32, patch_size=4), **kwargs)
    # as timm's own ViTs: features_only goes through forward_intermediates (last 3 blocks by default)
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(
        PixelViT,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


@register_architecture("vit", "ViT-Tiny, patch 4")
def vit_tiny_patch4_32(pretrained: bool = False, **kwargs) -> PixelViT:
    """ViT-Tiny (5.4 M parameters): width 192, depth 12, 3 heads."""
    return _create(
        "vit_tiny_patch4_32", pretrained, **dict(dict(embed_dim=192, depth=12, num_heads=3), **kwargs)
    )


@register_architecture("vit", "ViT-Small, patch 4")
def vit_small_patch4_32(pretrained: bool = False, **kwargs) -> PixelViT:
    """ViT-Small (21 M parameters): width 384, depth 12, 6 heads."""
    return _create(
        "vit_small_patch4_32", pretrained, **dict(dict(embed_dim=384, depth=12, num_heads=6), **kwargs)
    )


@register_architecture("vit", "0.2 M params ViT; tests")
def vit_micro_patch4_32(pretrained: bool = False, **kwargs) -> PixelViT:
    """A 0.2 M-parameter ViT (width 64, depth 4, 2 heads) for CPU tests."""
    return _create(
        "vit_micro_patch4_32", pretrained, **dict(dict(embed_dim=64, depth=4, num_heads=2), **kwargs)
    )
