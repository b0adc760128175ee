"""Model registry: timm architectures adapted to small inputs, normalisation inside, [0,1] in.

Importing this package registers our architectures with timm, so ``timm.create_model("local-dir:...")``
can rebuild exported folders. Add a model: a builder decorated with ``@register_architecture`` in a
module imported below.
"""

from . import any_timm, cifar_resnet, vit, wide_resnet  # noqa: F401  (registers the architectures)
from .dual_bn import bn_branch, convert_to_dual_bn, has_batch_norm, is_dual_bn, resolve_dual_bn
from .modes import eval_mode
from .registry import (
    MODELS,
    ModelConfig,
    ModelFacts,
    ModelInfo,
    build_model,
    check_model_name,
    register_architecture,
)

__all__ = [
    "MODELS",
    "ModelConfig",
    "ModelFacts",
    "ModelInfo",
    "build_model",
    "check_model_name",
    "register_architecture",
    "bn_branch",
    "convert_to_dual_bn",
    "eval_mode",
    "has_batch_norm",
    "is_dual_bn",
    "resolve_dual_bn",
]
