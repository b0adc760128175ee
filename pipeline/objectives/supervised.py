"""Supervised fine-tuning objectives, by name: TRADES [0], PGD-AT [1] and plain cross-entropy; and the
fine-tuning protocols SLF / ALF / AFF [2] that pick a default objective and what is trained.

TRADES here computes the clean prediction *once* per step for the attack (the reference recomputes the
same eval-mode forward at each of the k PGD steps) and takes input-only gradients, so the inner loop
costs k × (forward + input backward). The outer loss is the reference's: in ``train()``,
CE(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x')) averaged over the batch, gradients through both sides.

FGSM-RS [3] and N-FGSM [4] (``fgsm_rs``, ``nfgsm``) are PGD-AT with the paper's single-step attack
(``pipeline/attacks/single_step.py``): cross-entropy on the one-step adversarial batch, 2 passes per image
instead of TRADES PGD-10's 13. The objective picks its attack: ``attack.name`` and ``attack.steps`` are
replaced by it, ``attack.step_size`` and ``attack.start`` are not used (the papers' rules, tied to ε).

``finetune.attack.model_mode`` (:class:`FinetuneAttackConfig`) sets the network's mode while the training
attack runs: ``eval`` (default, like every other attack here) or ``train``, what the FGSM-RS and N-FGSM
authors' loops do (the attack forward uses batch statistics and updates the running ones: twice a step).

Add an objective: a function ``(objective, x, y) -> (loss, metrics)`` with
``@FINETUNE_OBJECTIVES.register("name")``.

[0] Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy, ICML 2019.
[1] Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018.
[2] Jiang et al., Robust Pre-Training by Adversarial Contrastive Learning, NeurIPS 2020 (SLF/ALF/AFF).
[3] Wong, Rice & Kolter, Fast is better than free: revisiting adversarial training, ICLR 2020.
[4] de Jorge et al., Make some noise: reliable and efficient single-step adversarial training, NeurIPS 2022.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import SINGLE_STEP_ATTACKS, AttackConfig, cross_entropy_attack, run_attack
from ..errors import DataError
from ..models import bn_branch, eval_mode
from ..registry import Registry
from ..validation import check_choice

FINETUNE_OBJECTIVES: Registry[Callable] = Registry("finetune objective")
PROTOCOLS: Registry[Protocol] = Registry("finetune protocol")


@dataclass(frozen=True)
class Protocol:
    frozen_backbone: bool  # train the classifier head only (a linear probe)
    objective: str  # the objective used when finetune.objective is ""


@dataclass
class FinetuneAttackConfig(AttackConfig):
    """``finetune.attack``: the training attack, and the network's mode while it runs."""

    # eval | train: the network's mode while the training attack runs (validation attacks always in eval).
    # train = the FGSM-RS / N-FGSM authors' loops (train_fgsm.py, N-FGSM train.py): batch statistics, and the
    # attack's forward updates the BN running statistics too (dropout on); their recipes set it. eval is the
    # default: the running statistics (what is evaluated and exported) average only the inputs the loss trains
    # on, the attack does not depend on the rest of the batch or on how many processes split it, and it is
    # TRADES' own choice (trades.py: model.eval() for the attack) and that of every other attack here
    model_mode: str = "eval"

    def check(self) -> None:
        super().check()
        check_choice("model_mode", self.model_mode, ("eval", "train"))


def attack_mode(obj: SupervisedObjective) -> AbstractContextManager:
    """The network's mode for the training attack: eval() inside the block, or the step's own mode (train)."""
    return eval_mode(obj.raw) if obj.model_mode == "eval" else nullcontext()


PROTOCOLS.add("slf", Protocol(frozen_backbone=True, objective="ce"))  # standard linear fine-tuning
PROTOCOLS.add("alf", Protocol(frozen_backbone=True, objective="pgd_at"))  # adversarial linear fine-tuning
PROTOCOLS.add("aff", Protocol(frozen_backbone=False, objective="trades"))  # adversarial full fine-tuning


def trades_attack(
    model: nn.Module, x: torch.Tensor, cfg: AttackConfig, dual_bn: bool = False, target_branch: str = ""
) -> torch.Tensor:
    """Maximise KL(f(x) ‖ f(x')) over x'; the caller puts the model in eval().

    ``dual_bn``: RobustSSL's ``trades_loss_dual`` — the clean prediction through the clean BN branch, the
    adversarial one through the adversarial branch. ``target_branch``: only the clean prediction f(x) through
    that branch (AIR's LP-AFF.py: ``model(x_natural, 'normal')`` while everything else runs through 'pgd')."""
    branch = "clean" if dual_bn else target_branch
    with torch.no_grad(), bn_branch(model, branch) if branch else nullcontext():
        p_clean = F.softmax(model(x), dim=1)  # (B, K), fixed during the attack: computed once
    with bn_branch(model, "adv") if dual_bn else nullcontext():
        return run_attack(
            lambda xa: F.kl_div(F.log_softmax(model(xa), dim=1), p_clean, reduction="sum"), x, cfg
        )


def trades_outer_loss(
    logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float, label_smoothing: float = 0.0
) -> torch.Tensor:
    natural = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    robust = (
        F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="sum")
        / logits.shape[0]
    )
    return natural + beta * robust


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


@FINETUNE_OBJECTIVES.register("trades")
def _trades(obj: SupervisedObjective, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    b, k = x.shape[0], obj.attack.steps
    with attack_mode(obj):  # eval() by default: attack iterations must not move BN statistics
        x_adv = trades_attack(obj.raw, x, obj.attack, obj.dual_bn, obj.target_branch)
    with bn_branch(obj.raw, "clean") if obj.dual_bn else nullcontext():
        logits = obj.model(x)
    with bn_branch(obj.raw, "adv") if obj.dual_bn else nullcontext():
        logits_adv = obj.model(x_adv)
    loss = trades_outer_loss(logits, logits_adv, y, obj.beta, obj.label_smoothing)
    return loss, {
        "images": b,
        "train_acc": _accuracy(logits, y),
        "train_robust_acc": _accuracy(logits_adv, y),
        "forward_passes": b * (1 + k + 2),
        "backward_passes": b * (k + 2),
    }


@FINETUNE_OBJECTIVES.register("pgd_at")
def _pgd_at(obj: SupervisedObjective, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    b, k = x.shape[0], obj.attack.steps
    with attack_mode(obj):
        x_adv = cross_entropy_attack(obj.raw, x, y, obj.attack)
    logits_adv = obj.model(x_adv)
    return F.cross_entropy(logits_adv, y, label_smoothing=obj.label_smoothing), {
        "images": b,
        "train_acc": None,
        "train_robust_acc": _accuracy(logits_adv, y),
        "forward_passes": b * (k + 1),
        "backward_passes": b * (k + 1),
    }


def _single_step(obj: SupervisedObjective, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    b = x.shape[0]
    # every input the loss sees is adversarial: with dual BN, attack and loss use the adversarial branch
    with bn_branch(obj.raw, "adv") if obj.dual_bn else nullcontext():
        with attack_mode(obj):  # train: the references' (their attack forward updates BN statistics)
            x_adv = cross_entropy_attack(obj.raw, x, y, obj.attack)
        logits_adv = obj.model(x_adv)
    return F.cross_entropy(logits_adv, y, label_smoothing=obj.label_smoothing), {
        "images": b,
        "train_acc": None,
        "train_robust_acc": _accuracy(logits_adv, y),
        "forward_passes": 2 * b,
        "backward_passes": 2 * b,
    }


for _name in SINGLE_STEP_ATTACKS:  # fgsm_rs, nfgsm: one objective per single-step attack, same loss
    FINETUNE_OBJECTIVES.add(_name, _single_step)


@FINETUNE_OBJECTIVES.register("ce")
def _ce(obj: SupervisedObjective, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits = obj.model(x)
    b = x.shape[0]
    return F.cross_entropy(logits, y, label_smoothing=obj.label_smoothing), {
        "images": b,
        "train_acc": _accuracy(logits, y),
        "forward_passes": b,
        "backward_passes": b,
    }


# where each objective's attack starts when ``attack.start`` is "" (its reference's choice): TRADES from
# x + 0.001·N(0, 1) (TRADES' trades.py), PGD-AT uniformly in the ε-ball (Madry et al.; RobustSSL's pgd_attack)
DEFAULT_STARTS = {"trades": "normal", "pgd_at": "uniform", "ce": "uniform"}


class SupervisedObjective:
    """``step((x, y), state) -> (loss, metrics)``; ``model`` is the (possibly DDP-wrapped) classifier,
    ``raw`` the unwrapped one used by the attack (no collective operations inside attack loops).

    ``dual_bn``: the classifier has dual BN (AFF from a dual-BN pretrained backbone, RobustSSL's default):
    TRADES routes clean inputs through the clean branch and adversarial ones through the adversarial
    branch, in the attack and in the loss. ``target_branch``: TRADES' attack computes its target f(x) through
    this BN branch (the caller routes everything else; AIR's LP-AFT variant)."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        raw: nn.Module,
        attack: AttackConfig,
        beta: float,
        num_classes: int,
        dual_bn: bool = False,
        target_branch: str = "",
        label_smoothing: float = 0.0,
    ):
        self.name, self.model, self.raw, self.beta = name, model, raw, beta
        # the training loss's cross-entropy targets (1 − s)·onehot + s/K (timm LabelSmoothingCrossEntropy, MIMIR
        # finetune.py --smoothing); the attacks' own losses stay plain cross-entropy (torchattacks' PGD there)
        self.label_smoothing = label_smoothing
        self.attack = replace(attack, start=attack.start or DEFAULT_STARTS.get(name, "uniform"))
        if name in SINGLE_STEP_ATTACKS:  # the objective is its attack: one step by the paper's rule
            self.attack = replace(self.attack, name=name, steps=1)
        self.num_classes, self.dual_bn, self.target_branch = num_classes, dual_bn, target_branch
        self.model_mode = getattr(attack, "model_mode", "eval")  # a plain AttackConfig (LP-AFT's): eval
        self._step = FINETUNE_OBJECTIVES.get(name, "finetune.objective")

    def step(self, batch, state) -> tuple[torch.Tensor, dict]:
        x, y = batch[0], batch[1]
        if int(y.max()) >= self.num_classes or int(y.min()) < 0:
            raise DataError(
                f"a training label is {int(y.max())}, outside [0, {self.num_classes}); "
                "set data.num_classes to the real number of classes or fix the shards"
            )
        return self._step(self, x, y)
