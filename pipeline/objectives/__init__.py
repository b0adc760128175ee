"""Training objectives — losses and their schedules — by name: contrastive (pretrain: ``PRETRAIN_METHODS``)
and supervised (finetune: ``FINETUNE_OBJECTIVES``, with the ``PROTOCOLS`` that pick one). Procedures that
run several trainings (LP-AFT's phases, RCS's coreset schedule) live in :mod:`pipeline.train`, which may
import this package; this package never imports :mod:`pipeline.train`."""

from .air import AIRConfig, ViewsWithOriginal, air_regularisers
from .contrastive import (
    PRETRAIN_METHODS,
    ContrastiveConfig,
    ContrastiveModel,
    ContrastiveObjective,
    pretrain_method,
)
from .dynacl import DynACLConfig, DynACLSchedule
from .fare import FAREConfig, FAREObjective, embedding_report, frozen_copy
from .heads import PROJECTION_HEADS, build_head
from .mimir import MIMIRConfig, MIMIRModel, MIMIRObjective
from .supervised import (
    FINETUNE_OBJECTIVES,
    PROTOCOLS,
    Protocol,
    SupervisedObjective,
    trades_attack,
    trades_outer_loss,
)

__all__ = [
    "AIRConfig",
    "ViewsWithOriginal",
    "air_regularisers",
    "FINETUNE_OBJECTIVES",
    "PRETRAIN_METHODS",
    "PROTOCOLS",
    "ContrastiveConfig",
    "ContrastiveModel",
    "ContrastiveObjective",
    "DynACLConfig",
    "PROJECTION_HEADS",
    "build_head",
    "DynACLSchedule",
    "FAREConfig",
    "FAREObjective",
    "embedding_report",
    "frozen_copy",
    "MIMIRConfig",
    "MIMIRModel",
    "MIMIRObjective",
    "Protocol",
    "SupervisedObjective",
    "pretrain_method",
    "trades_attack",
    "trades_outer_loss",
]
