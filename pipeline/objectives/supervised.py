"""Supervised fine-tuning objectives: TRADES [0], PGD-AT [1] and plain cross-entropy.

TRADES here computes the clean prediction *once* per step for the attack (the reference recomputes the
same eval-mode forward at each of the k PGD steps) and takes input-only gradients, so the inner loop
costs k × (forward + input backward). The outer loss is the reference's: in ``train()``,
CE(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x')) averaged over the batch, gradients through both sides.

[0] Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy, ICML 2019.
[1] Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.pgd import AttackConfig, cross_entropy_pgd, pgd_attack


def trades_attack(model: nn.Module, x: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    """Maximise KL(f(x) ‖ f(x')) over x'; the caller puts the model in eval()."""
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)  # (B, K), fixed during the attack: computed once
    return pgd_attack(lambda xa: F.kl_div(F.log_softmax(model(xa), dim=1), p_clean, reduction="sum"), x, cfg)


def trades_outer_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    natural = F.cross_entropy(logits, y)
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="sum") / logits.shape[0]
    return natural + beta * robust


def _eval_mode(model: nn.Module):
    """Put ``model`` in eval() and return the modules that were training (to restore exactly)."""
    training = [m for m in model.modules() if m.training]
    model.eval()
    return training


def _restore(training: list[nn.Module]) -> None:
    for m in training:
        m.train()


class SupervisedObjective:
    """``step((x, y), state) -> (loss, metrics)``; ``model`` is the (possibly DDP-wrapped) classifier,
    ``raw`` the unwrapped one used by the attack (no collective operations inside attack loops)."""

    def __init__(self, name: str, model: nn.Module, raw: nn.Module, attack: AttackConfig, beta: float, num_classes: int):
        self.name, self.model, self.raw, self.attack, self.beta = name, model, raw, attack, beta
        self.num_classes = num_classes

    def step(self, batch, state) -> tuple[torch.Tensor, dict]:
        x, y = batch[0], batch[1]
        b, k = x.shape[0], self.attack.steps
        if int(y.max()) >= self.num_classes or int(y.min()) < 0:
            from ..errors import DataError

            raise DataError(f"a training label is {int(y.max())}, outside [0, {self.num_classes}); "
                            "set data.num_classes to the real number of classes or fix the shards")
        if self.name == "ce":
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            return loss, {"images": b, "train_acc": float((logits.argmax(1) == y).float().mean()),
                          "forward_passes": b, "backward_passes": b}
        training = _eval_mode(self.raw)  # eval(): attack iterations must not move BN statistics
        try:
            if self.name == "trades":
                x_adv = trades_attack(self.raw, x, self.attack)
            else:
                x_adv = cross_entropy_pgd(self.raw, x, y, self.attack)
        finally:
            _restore(training)
        if self.name == "trades":
            logits, logits_adv = self.model(x), self.model(x_adv)
            loss = trades_outer_loss(logits, logits_adv, y, self.beta)
            passes = {"forward_passes": b * (1 + k + 2), "backward_passes": b * (k + 2)}
            acc = float((logits.argmax(1) == y).float().mean())
        else:
            logits_adv = self.model(x_adv)
            loss = F.cross_entropy(logits_adv, y)
            passes = {"forward_passes": b * (k + 1), "backward_passes": b * (k + 1)}
            acc = None
        return loss, {"images": b, "train_acc": acc, "train_robust_acc": float((logits_adv.argmax(1) == y).float().mean()),
                      **passes}
