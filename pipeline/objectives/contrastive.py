"""SimCLR, ACL and DynACL objectives [0, 1, 2] on top of lightly's NT-Xent loss and projection head.

One step of ``acl``/``dynacl`` (B images, two views each):
  1. attack: PGD on the *local* NT-Xent of the projected views, both views perturbed jointly, model in
     ``eval()`` and routed through the adversarial BN branch. eval(): the attack's forward passes must not
     move BN running statistics (the reference does the same). Gradients are w.r.t. the input only.
  2. train: clean views through the clean BN branch, adversarial views through the adversarial branch,
     both in ``train()``; loss = w_clean·NT-Xent(clean) + w_adv·NT-Xent(adv), negatives gathered across
     processes when there are several.

[0] Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020.
[1] Jiang et al., Robust Pre-Training by Adversarial Contrastive Learning, NeurIPS 2020.
[2] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from ..attacks.pgd import pgd_attack
from ..models import bn_branch


class ContrastiveModel(nn.Module):
    """backbone (pooled features) → projection head; ``(B, 3, H, W) -> (B, proj_dim)``.

    With ``momentum > 0`` (DynACL's reference) a frozen copy of backbone + head, updated as an exponential
    moving average of the trained one, encodes the images after the first ``n_query`` of a batch.
    """

    def __init__(self, backbone: nn.Module, hidden_dim: int, out_dim: int, momentum: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.num_features, hidden_dim, out_dim)
        self.momentum = momentum
        self.key: nn.ModuleDict | None = None
        if momentum > 0:
            self.key = copy.deepcopy(nn.ModuleDict({"backbone": self.backbone, "head": self.head}))
            self.key.requires_grad_(False)

    def forward(self, x: torch.Tensor, n_query: int | None = None) -> torch.Tensor:
        if self.key is None or n_query is None:
            return self.head(self.backbone(x))
        q = self.head(self.backbone(x[:n_query]))
        k = self.key["head"](self.key["backbone"](x[n_query:]))  # no parameter gradients: frozen copy
        return torch.cat([q, k])

    @torch.no_grad()
    def update_key(self) -> None:
        """key ← m·key + (1 − m)·trained, parameters only (the key's BN statistics follow its own forwards)."""
        trained = [*self.backbone.parameters(), *self.head.parameters()]
        for k, q in zip(self.key.parameters(), trained, strict=True):
            k.mul_(self.momentum).add_(q.detach(), alpha=1.0 - self.momentum)

    def export_modules(self) -> tuple[nn.Module, nn.Module]:
        """(backbone, head) to save: the momentum copy when there is one (DynACL exports it)."""
        return (self.key["backbone"], self.key["head"]) if self.key is not None else (self.backbone, self.head)


def dynacl_strength(epoch: int, total_epochs: int, cfg) -> float:
    """Augmentation strength at ``epoch``: 1 at the start, lowered step-wise every K epochs towards
    ``cfg.min_strength`` (DynACL's schedule: μ = 1 − ⌊e/K⌋·K/E, floored)."""
    k = cfg.strength_period_epochs
    drop = (epoch // k) * k / max(1, total_epochs)
    return max(cfg.min_strength, 1.0 - drop * (1.0 - cfg.min_strength))


def loss_weights(method: str, strength: float, pcfg) -> tuple[float, float]:
    """(clean weight, adversarial weight). DynACL shifts weight from the clean to the adversarial term as
    augmentations weaken, keeping the sum: w = min(1 + progress·swap, 2), weights (2 − w, w)·(½, ½) by
    default, where progress = ⌊e/K⌋·K/E is the strength schedule's (the DynACL code computes its ⌊·⌋ from
    the 1-based epoch, so its weight moves one epoch before its strength; we move both together)."""
    if method == "simclr":
        return 1.0, 0.0
    if method == "dynacl":
        progress = (1.0 - strength) / (1.0 - pcfg.dynacl.min_strength)  # undo the floor's rescaling
        w = min(1.0 + progress * pcfg.dynacl.weight_swap, 2.0)
        return pcfg.clean_weight * (2.0 - w), pcfg.adv_weight * w
    return pcfg.clean_weight, pcfg.adv_weight


class ContrastiveObjective:
    """``step(views, state) -> (loss, metrics)`` for simclr / acl / dynacl."""

    def __init__(self, method: str, model: nn.Module, raw_model: nn.Module, pcfg, gather: bool):
        self.method, self.model, self.raw, self.cfg = method, model, raw_model, pcfg
        self.loss = NTXentLoss(temperature=pcfg.temperature, gather_distributed=gather)
        # the attack maximises the per-process loss: gathering inside the attack would add 2 collectives
        # per PGD step and couple ranks, for a perturbation of local samples only
        self.attack_loss = NTXentLoss(temperature=pcfg.temperature, gather_distributed=False)
        self.attack_cfg = replace(pcfg.attack)
        self.strength = 1.0

    @staticmethod
    def _pair_loss(loss_fn, z: torch.Tensor, b: int) -> torch.Tensor:
        return loss_fn(z[:b], z[b:])  # z: (2B, D), view 1 then view 2

    def _attack(self, x: torch.Tensor, b: int) -> tuple[torch.Tensor, dict]:
        losses = []
        was_training = self.raw.training
        self.raw.eval()
        try:
            with bn_branch(self.raw, "adv"):
                # one forward of all 2B views: in eval() the batch composition cannot change the output
                x_adv = pgd_attack(lambda xa: self._pair_loss(self.attack_loss, self.raw(xa, b), b), x,
                                   self.attack_cfg, on_step=lambda _, v: losses.append(v))
        finally:
            self.raw.train(was_training)
        gain = (losses[-1] - losses[0]) if losses else 0.0
        return x_adv, {"attack_loss_first": losses[0] if losses else None, "attack_gain": gain}

    def step(self, batch, state) -> tuple[torch.Tensor, dict]:
        v1, v2 = batch[0], batch[1]  # (B, 3, H, W) each, in [0,1]
        b = v1.shape[0]
        x = torch.cat([v1, v2])  # (2B, 3, H, W): both views, attacked jointly
        w_clean, w_adv = loss_weights(self.method, self.strength, self.cfg)
        metrics: dict = {"images": b, "strength": self.strength, "w_clean": w_clean, "w_adv": w_adv}
        steps = self.attack_cfg.steps if self.method != "simclr" else 0
        if self.method != "simclr":
            x_adv, info = self._attack(x, b)
            metrics.update(info)
        with bn_branch(self.raw, "clean"):
            z = self.model(x, b)  # (2B, D); the second view through the momentum copy, if any
        loss_clean = self.loss(z[:b], z[b:])
        loss = w_clean * loss_clean
        metrics["loss_clean"] = float(loss_clean.detach())
        if self.method != "simclr":
            with bn_branch(self.raw, "adv"):
                z_adv = self.model(x_adv, b)
            loss_adv = self.loss(z_adv[:b], z_adv[b:])
            loss = loss + w_adv * loss_adv
            metrics["loss_adv"] = float(loss_adv.detach())
        if self.raw.key is not None:
            self.raw.update_key()  # after the forwards, before the optimiser step (as the reference)
        # passes over the 2B images: attack (fwd + input-bwd) per PGD step, then 1 or 2 training fwd+bwd
        # (with a momentum copy, training backpropagates through the first B images only)
        n_train = 1 if self.method == "simclr" else 2
        train_bwd = b if self.raw.key is not None else 2 * b
        metrics.update(forward_passes=2 * b * (steps + n_train), backward_passes=2 * b * steps + train_bwd * n_train)
        return loss, metrics

