"""Model registry: timm architectures adapted to small inputs, normalisation inside, [0,1] in.

Importing this package registers our architectures with timm, so ``timm.create_model("local-dir:...")``
can rebuild exported folders.
"""

from . import any_timm, cifar_resnet, vit, wide_resnet  # noqa: F401  (registers the timm models)
from .dual_bn import bn_branch, convert_to_dual_bn, has_batch_norm, is_dual_bn, resolve_dual_bn
from .registry import MODELS, ModelInfo, build_model, check_model_name

__all__ = [
    "MODELS", "ModelInfo", "build_model", "check_model_name",
    "bn_branch", "convert_to_dual_bn", "has_batch_norm", "is_dual_bn", "resolve_dual_bn",
]
