"""DynACL's schedule [0]: one object, read by epoch, by both the data loader (augmentation strength)
and the loss (clean/adversarial weights) — nothing is pushed from one into the other.

[0] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import check


@dataclass
class DynACLConfig:
    strength_period_epochs: int = (
        1  # the augmentation strength changes (and the loader is rebuilt) every K epochs
    )
    min_strength: float = 0.0  # strength is annealed linearly from 1 to this, step-wise
    # the loss weights move from (clean, adv) = (1, 1)·(clean_weight, adv_weight) towards
    # (2 − w, w)·(…) with w = 1 + progress·weight_swap (DynACL's swap_param, 2/3 in the paper)
    weight_swap: float = 0.6666666666666666
    # DynACL's reference code sends the second view of every pair through a momentum (EMA) copy of the
    # backbone + head, in the attack and in training, and exports that copy; 0 = off (both views through
    # the trained network, as in ACL)
    momentum: float = 0.99

    def check(self) -> None:
        check(
            self.strength_period_epochs >= 1,
            "strength_period_epochs",
            self.strength_period_epochs,
            "use 1 or more epochs",
        )
        check(0.0 <= self.min_strength < 1.0, "min_strength", self.min_strength, "use a value in [0, 1)")
        check(
            0.0 <= self.momentum < 1.0,
            "momentum",
            self.momentum,
            "use a value in [0, 1): 0.99 as in DynACL, 0 to turn the momentum encoder off",
        )
        check(
            0.0 <= self.weight_swap <= 1.0,
            "weight_swap",
            self.weight_swap,
            "use a value in [0, 1] (DynACL uses 2/3)",
        )


class DynACLSchedule:
    """progress = ⌊e/K⌋·K/E (e: 0-based epoch, K: period, E: total epochs);
    strength μ = 1 − progress·(1 − min_strength);  w = min(1 + progress·swap, 2);
    loss weights (clean, adv) = (2 − w, w)·(clean_weight, adv_weight), so their sum stays constant.

    The DynACL code computes its ⌊·⌋ for the weight from the 1-based epoch, so its weight moves one epoch
    before its strength; we move both together (one progress for both)."""

    def __init__(self, cfg: DynACLConfig, total_epochs: int):
        self.cfg, self.total_epochs = cfg, total_epochs

    def progress(self, epoch: int) -> float:
        k = self.cfg.strength_period_epochs
        return (epoch // k) * k / max(1, self.total_epochs)

    def strength(self, epoch: int) -> float:
        return max(self.cfg.min_strength, 1.0 - self.progress(epoch) * (1.0 - self.cfg.min_strength))

    def loss_weights(self, epoch: int, clean_weight: float, adv_weight: float) -> tuple[float, float]:
        w = min(1.0 + self.progress(epoch) * self.cfg.weight_swap, 2.0)
        return clean_weight * (2.0 - w), adv_weight * w
