"""Training objectives, by name: contrastive (pretrain) and supervised (finetune)."""

from .contrastive import ContrastiveModel, ContrastiveObjective, dynacl_strength, loss_weights
from .supervised import SupervisedObjective, trades_attack, trades_outer_loss

PRETRAIN_OBJECTIVES = ("simclr", "acl", "dynacl")
FINETUNE_OBJECTIVES = ("trades", "pgd_at", "ce")

__all__ = ["ContrastiveModel", "ContrastiveObjective", "SupervisedObjective", "dynacl_strength",
           "loss_weights", "trades_attack", "trades_outer_loss", "PRETRAIN_OBJECTIVES", "FINETUNE_OBJECTIVES"]
