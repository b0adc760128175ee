"""Training objectives, by name: contrastive (pretrain: ``PRETRAIN_METHODS``) and supervised (finetune:
``FINETUNE_OBJECTIVES``, with the ``PROTOCOLS`` that pick one)."""

from .air import AIRConfig, ViewsWithOriginal, air_regularisers
from .contrastive import (
    PRETRAIN_METHODS,
    ContrastiveConfig,
    ContrastiveModel,
    ContrastiveObjective,
    pretrain_method,
)
from .dynacl import DynACLConfig, DynACLSchedule
from .heads import PROJECTION_HEADS, build_head
from .lpaft import LPAFTConfig, kmeans_pseudo_labels, post_process, training_images
from .supervised import (
    FINETUNE_OBJECTIVES,
    PROTOCOLS,
    Protocol,
    SupervisedObjective,
    trades_attack,
    trades_outer_loss,
)

__all__ = ["AIRConfig", "LPAFTConfig", "ViewsWithOriginal", "air_regularisers", "kmeans_pseudo_labels",
           "post_process", "training_images", "FINETUNE_OBJECTIVES", "PRETRAIN_METHODS", "PROTOCOLS", "ContrastiveConfig", "ContrastiveModel",
           "ContrastiveObjective", "DynACLConfig", "PROJECTION_HEADS", "build_head", "DynACLSchedule", "Protocol", "SupervisedObjective",
           "pretrain_method", "trades_attack", "trades_outer_loss"]
