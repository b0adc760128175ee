"""Robustness-aware coreset selection (RCS) for ACL / DynACL [0] — the selection step, written by hand
(no kept library does it), following GodXuxilie/Efficient_ACL_via_RCS (``RCS.py``, ``ACL_RCS.py``).

Every ``period`` epochs after ``warmup_epochs`` on the whole set, the pretraining trains on a fraction of
the unlabeled training set: candidate batches are scored by how well one SGD step of the projection head on
their (clean + adversarial) contrastive loss would *decrease the representational divergence* — the KL
between the head's outputs on clean and adversarial validation images — and picked greedily:

1. ``g_val`` = the head's gradient of the divergence on the held-out validation images (attacked by PGD on
   that divergence, ``val_attack_steps`` steps of (10/255)/steps);
2. per candidate batch: its two views attacked as in ACL's pretraining, the gradient of
   ``(NT-Xent(clean) + NT-Xent(adv)) / 2`` for the head's Linear layers, summarised as the per-parameter
   mean over its first axis (the reference's ``g.mean(dim=0)``);
3. greedy: pick the batch maximising ``<g_batch, g_val>``, move the head's Linear layers by one SGD step of
   that batch's gradient, recompute ``g_val``; repeat until ``fraction`` of the set is picked. The head is
   restored afterwards: selection never changes the trained model.

Reference details kept on purpose (the parity test checks them): only the head's Linear parameters count;
the step is applied twice (``RCS.py`` updates ``linear_layer`` and ``self.model.fc``, the same module), so
it is ``2·lr``; every forward runs in eval() mode (the attacks switch the model to eval and it stays there).
The validation rows are the reference's too (``validation_rows``): its loader yields the held-out images
in batches of ``val_batch_size`` (its ``--batch_size``, 512), each image as two identical un-augmented
"views", and ``view(2d, …)[:d]`` keeps the first d rows — the first half of each batch's images, each
twice. Every row gets its own random attack start, so the two copies of an image are attacked apart: the
divergence is not the same as over each image once (the other half of the images is never used).
``Coreset_bs`` — read but never defined by the reference's argument parser — is replaced by the
pretraining batch size, the only value for which its budget arithmetic (``int(budget / batch_size)``
batches) selects ``fraction`` of the set.

[0] Xu et al., Efficient Adversarial Contrastive Learning via Robustness-Aware Coreset Selection, NeurIPS 2023.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from lightly.loss import NTXentLoss
from torch import nn

from ..attacks import AttackConfig, run_attack
from ..models import bn_branch, eval_mode
from ..validation import check

REFERENCE_VAL_STEP = 10 / 255  # RCS.py: alpha = (10/255) / Coreset_pgd_iter


@dataclass
class RCSConfig:
    """``pretrain.rcs``: coreset selection; the defaults are ACL_RCS.py's arguments."""

    fraction: float = 0.0  # share of the training set trained on after warm-up (reference 0.2; 0 = off)
    warmup_epochs: int = 100  # --warmup: epochs on the whole set before the first selection
    period: int = 20  # --fre: epochs between selections
    val_fraction: float = 0.01  # held out of pretraining as RCS's (unlabeled) validation set (reference 1%)
    val_attack_steps: int = 3  # --Coreset_pgd_iter: PGD steps on the divergence, step (10/255)/steps
    lr: float = 0.01  # --Coreset_lr: the greedy search's SGD step on the projection head
    # the reference's validation loader batch (ACL_RCS.py: --batch_size, 512): RCS.py keeps the first half of
    # each batch's images, each twice (validation_rows)
    val_batch_size: int = 512
    # DynACL_RCS.py draws the 1% but rebuilds its loader over the whole training set every epoch and hands that
    # set to the selection: the validation images are trained on in full epochs and are candidates too, while
    # the budget stays fraction × the other 99%. False = ACL_RCS.py (held out, never trained on).
    train_on_validation: bool = False

    def check(self) -> None:
        check(
            0.0 <= self.fraction < 1.0,
            "fraction",
            self.fraction,
            "use a value in [0, 1) (0.2 = the paper's; 0 = off)",
        )
        check(
            self.warmup_epochs >= 1 and self.period >= 1,
            "period",
            self.period,
            "use warmup_epochs >= 1 and period >= 1",
        )
        check(
            0.0 < self.val_fraction < 0.5,
            "val_fraction",
            self.val_fraction,
            "use a value in (0, 0.5), e.g. 0.01",
        )
        check(
            self.val_attack_steps >= 1 and self.lr > 0, "lr", self.lr, "use lr > 0 and val_attack_steps >= 1"
        )
        check(
            self.val_batch_size >= 1,
            "val_batch_size",
            self.val_batch_size,
            "use 1 or more (the reference's: its pretraining batch, 512)",
        )

    def selects(self, epoch: int) -> bool:
        """Whether 0-based ``epoch`` starts with a selection (ACL_RCS.py: ``epoch >= warmup and (epoch-1) %
        fre == 0`` with 1-based epochs)."""
        return self.fraction > 0 and epoch + 1 >= self.warmup_epochs and epoch % self.period == 0

    def on_subset(self, epoch: int) -> bool:
        """Whether ``epoch`` trains on a coreset (``epoch > warmup``, 1-based); before the first selection
        that is the seeded random subset the reference's ``Coreset`` starts with."""
        return self.fraction > 0 and (epoch + 1 > self.warmup_epochs or self.selects(epoch))


def divergence(out_adv: torch.Tensor, out_clean: torch.Tensor) -> torch.Tensor:
    """RCS's KL loss: ``mean(Q · (log Q − log P))`` over every element, with P, Q the clean and adversarial
    outputs min-max normalised per row (+1e-8) — not probability vectors (``RCS.py`` ``kl_loss``)."""

    def minmax(t: torch.Tensor) -> torch.Tensor:
        t = t - t.min(1, keepdim=True)[0]
        return t / t.max(1, keepdim=True)[0]

    log_p = torch.log(minmax(out_clean) + 1e-8)
    q = minmax(out_adv) + 1e-8
    return (q * (q.log() - log_p)).mean()  # KLDivLoss(reduction="mean")(log_p, q), q > 0


def validation_rows(val_x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The rows RCS.py attacks and scores, from the held-out images in loader order: per batch of d images
    (two identical views each, ``(d, 2, C, H, W)`` viewed as 2d rows), the first d rows — images 0 … ⌈d/2⌉−1 of
    the batch, each twice and adjacent (``RCS.py``: ``valid_inputs.view(d[0]*2, …)[:d[0]]``)."""
    return torch.cat([chunk.repeat_interleave(2, dim=0)[: len(chunk)] for chunk in val_x.split(batch_size)])


def head_linears(head: nn.Module) -> list[nn.Parameter]:
    """The parameters the selection differentiates: the head's Linear layers' (RCS.py: names with 'fc')."""
    return [p for m in head.modules() if isinstance(m, nn.Linear) for p in m.parameters()]


class CoresetSelector:
    """Scores candidate batches and picks them greedily for one selection (all in eval mode)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, attack: AttackConfig, cfg: RCSConfig, temperature: float
    ):
        self.backbone, self.head, self.cfg = backbone, head, cfg
        self.model = nn.Sequential(backbone, head)
        self.attack = attack
        self.val_attack = replace(
            attack,
            name="pgd",
            start="uniform",
            steps=cfg.val_attack_steps,
            step_size=REFERENCE_VAL_STEP / cfg.val_attack_steps,
        )
        self.nt_xent = NTXentLoss(temperature=temperature)
        self.params = head_linears(head)

    def _features(self, x: torch.Tensor, branch: str) -> torch.Tensor:
        with torch.no_grad(), bn_branch(self.model, branch):
            return self.backbone(x)

    def _grad(self, loss: torch.Tensor) -> list[torch.Tensor]:
        return [g.detach() for g in torch.autograd.grad(loss, self.params)]

    @staticmethod
    def _summary(grads: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([g.mean(dim=0).reshape(-1) for g in grads])  # the reference's g.mean(dim=0)

    def val_gradient(self, val_x: torch.Tensor) -> torch.Tensor:
        """``val_x``: the held-out images, un-augmented, in loader order (``validation_rows`` picks the rows)."""
        val_x = validation_rows(val_x, self.cfg.val_batch_size)
        with torch.no_grad(), bn_branch(self.model, "clean"):
            out_clean = self.model(val_x)
        with bn_branch(self.model, "adv"):
            val_adv = run_attack(lambda xa: divergence(self.model(xa), out_clean), val_x, self.val_attack)
        feats, feats_adv = self._features(val_x, "clean"), self._features(val_adv, "adv")
        with bn_branch(self.model, "clean"):
            out = self.head(feats)
        with bn_branch(self.model, "adv"):
            out_adv = self.head(feats_adv)
        return self._summary(self._grad(divergence(out_adv, out)))

    def batch_gradient(self, v1: torch.Tensor, v2: torch.Tensor) -> list[torch.Tensor]:
        b, x = v1.shape[0], torch.cat([v1, v2])
        with bn_branch(self.model, "adv"):
            x_adv = run_attack(lambda xa: self._pair(self.model(xa), b), x, self.attack)
        feats, feats_adv = self._features(x, "clean"), self._features(x_adv, "adv")
        with bn_branch(self.model, "clean"):
            loss = self._pair(self.head(feats), b)
        with bn_branch(self.model, "adv"):
            loss = (loss + self._pair(self.head(feats_adv), b)) / 2
        return self._grad(loss)

    def _pair(self, z: torch.Tensor, b: int) -> torch.Tensor:
        return self.nt_xent(z[:b], z[b:])

    def greedy(
        self, grads: list[list[torch.Tensor]], val_x: torch.Tensor, n_pick: int, g_val: torch.Tensor
    ) -> list[int]:
        """Candidate indices in the order picked; the head is restored afterwards."""
        saved = [p.detach().clone() for p in self.params]
        summaries = torch.stack([self._summary(g) for g in grads])
        remaining, picked = list(range(len(grads))), []
        self.gains: list[
            torch.Tensor
        ] = []  # the score of every remaining candidate at each pick (tests, logs)
        try:
            for j in range(min(n_pick, len(grads))):
                self.gains.append(summaries[remaining] @ g_val)
                r = int(torch.argmax(self.gains[-1]))
                picked.append(remaining[r])
                if j == n_pick - 1:
                    break
                with torch.no_grad():  # 2·lr: the reference applies the step to the same module twice
                    for p, g in zip(self.params, grads[remaining[r]], strict=True):
                        p.sub_(2 * self.cfg.lr * g)
                g_val = self.val_gradient(val_x)
                remaining.pop(r)
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved, strict=True):
                    p.copy_(s)
        return picked

    def select(self, candidates, val_x: torch.Tensor, n_pick: int) -> list[int]:
        """``candidates``: ``(v1, v2)`` batches; returns the indices of the picked ones. Attacks run in
        RCS.py's order (validation first), so injected starts line up with the reference's."""
        with eval_mode(self.model):
            g_val = self.val_gradient(val_x)
            grads = [self.batch_gradient(v1, v2) for v1, v2 in candidates]
            return self.greedy(grads, val_x, n_pick, g_val)

    def gradients(self, v1: torch.Tensor, v2: torch.Tensor) -> list[torch.Tensor]:
        """One candidate batch's head gradients (the pretrain stage scores batches as they stream)."""
        with eval_mode(self.model), torch.enable_grad():
            return self.batch_gradient(v1, v2)

    def select_from(self, grads: list[list[torch.Tensor]], val_x: torch.Tensor, n_pick: int) -> list[int]:
        with eval_mode(self.model), torch.enable_grad():
            return self.greedy(grads, val_x, n_pick, self.val_gradient(val_x))
