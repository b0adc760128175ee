"""SimCLR, ACL, DynACL and their AIR variants [0, 1, 2, 3] on top of lightly's NT-Xent loss and projection head.

One step of ``acl``/``dynacl`` (B images, two views each):
  1. attack: PGD on the *local* NT-Xent of the projected views, both views perturbed jointly, model in
     ``eval()`` and routed through the adversarial BN branch. eval(): the attack's forward passes must not
     move BN running statistics (the reference does the same). Gradients are w.r.t. the input only.
  2. train: clean views through the clean BN branch, adversarial views through the adversarial branch,
     both in ``train()``; loss = w_clean·NT-Xent(clean) + w_adv·NT-Xent(adv), negatives gathered across
     processes when there are several.
  3. DynACL: the momentum copy moves once per optimiser step, after that step's forwards and before the
     optimiser (``train_DynACL.py``: ``_momentum_update_encoder_k()`` between the forwards and the loss).
  4. AIR (``acl_air``, ``dynacl_air``): the un-augmented images through the clean branch in ``train()``, then
     + λ1·SIR + λ2·AIR (``air.py``; checked against AIR's ``pretraining.py`` in ``test_air_parity.py``).

References: ``train_simCLR.py`` (ACL, ``--ACL_DS``) and ``train_DynACL.py``; both are transcribed in
``tests/objectives/test_contrastive_parity.py`` and checked step for step against this objective.

[0] Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020.
[1] Jiang et al., Robust Pre-Training by Adversarial Contrastive Learning, NeurIPS 2020.
[2] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
[3] Xu et al., Enhancing Adversarial Contrastive Learning via Adversarial Invariant Regularization, NeurIPS 2023.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from lightly.loss import NTXentLoss
from torch import nn
from torchvision.transforms import InterpolationMode

from ..attacks import AttackConfig, run_attack
from ..models import bn_branch, eval_mode
from ..registry import Registry
from ..validation import check, check_choice
from .air import AIRConfig, air_regularisers
from .dynacl import DynACLConfig, DynACLSchedule
from .heads import PROJECTION_HEADS

PRETRAIN_METHODS: Registry[type] = Registry("pretrain method")


@dataclass
class ContrastiveConfig:
    """The contrastive objective's settings (the ``pretrain:`` section adds the training loop's)."""

    method: str = "acl"  # simclr | acl | dynacl | acl_air | dynacl_air (PRETRAIN_METHODS)
    temperature: float = 0.5  # NT-Xent τ
    head: str = (
        ""  # acl | simclr (PROJECTION_HEADS); "" = the method's: acl for acl/dynacl, simclr for simclr
    )
    # the head's widths, 0 = the head's default (heads.py): acl → hidden = out = the backbone's feature
    # width (the reference head); simclr → 512 / 128
    proj_hidden_dim: int = 0
    proj_dim: int = 0
    clean_weight: float = 0.5  # loss = clean_weight·NT-Xent(clean) + adv_weight·NT-Xent(adversarial)
    adv_weight: float = 0.5
    dual_bn: bool = True  # separate clean/adversarial BN (only for backbones that have BN)
    min_crop_scale: float = 0.1  # RandomResizedCrop lower scale at strength 1 (ACL/DynACL: 1 − 0.9·strength)
    # RandomResizedCrop resampling; "" = the method's: acl bicubic (train_simCLR.py: interpolation=3),
    # dynacl bilinear (train_DynACL.py: torchvision's default), simclr bilinear (lightly's default)
    crop_interpolation: str = ""
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=5, start="uniform"))
    dynacl: DynACLConfig = field(default_factory=DynACLConfig)
    air: AIRConfig = field(default_factory=AIRConfig)  # acl_air / dynacl_air: the regularisers' weights

    def check(self) -> None:
        check_choice("method", self.method, PRETRAIN_METHODS)
        chosen = PRETRAIN_METHODS.get(self.method)
        if chosen.air and chosen.uses_momentum:  # dynacl_air: DynACL's schedule without its momentum copy
            check(
                self.dynacl.momentum == 0.0,
                "dynacl.momentum",
                self.dynacl.momentum,
                f"set pretrain.dynacl.momentum=0 for {self.method}: AIR's reference has no momentum encoder",
            )
        check(
            self.temperature > 0, "temperature", self.temperature, "use a positive temperature (0.5 in ACL)"
        )
        if self.head:
            check_choice("head", self.head, PROJECTION_HEADS)
        if self.crop_interpolation:
            check_choice("crop_interpolation", self.crop_interpolation, [m.value for m in InterpolationMode])
        for key in ("proj_hidden_dim", "proj_dim"):
            check(getattr(self, key) >= 0, key, getattr(self, key), "use 0 (the head's default) or a width")


@PRETRAIN_METHODS.register("simclr")
class SimCLR:
    """A pretraining method: whether views are attacked, and — by epoch — the augmentation strength the
    loader uses and the loss weights the objective uses (one object read by both, in one direction)."""

    adversarial = False  # attack both views and add the adversarial NT-Xent term
    air = False  # add AIR's SIR/AIR regularisers (needs the original image next to the two views)
    uses_momentum = False  # whether pretrain.dynacl.momentum applies (a momentum copy for the second view)
    default_head = "simclr"  # lightly's SimCLRProjectionHead
    default_crop_interpolation = "bilinear"  # lightly's SimCLRTransform (torchvision's default)

    def __init__(self, cfg: ContrastiveConfig, epochs: int):
        self.cfg, self.epochs = cfg, epochs
        self.momentum = 0.0  # > 0: the second view goes through an EMA copy of the network
        self.head = cfg.head or self.default_head  # the projection head to build (heads.build_head)
        self.crop_interpolation = cfg.crop_interpolation or self.default_crop_interpolation  # for SimCLRViews

    def strength(self, epoch: int) -> float:
        return 1.0

    def loss_weights(self, epoch: int) -> tuple[float, float]:
        return 1.0, 0.0


@PRETRAIN_METHODS.register("acl")
class ACL(SimCLR):
    adversarial = True
    default_head = "acl"  # models/resnet_multi_bn.py: proj_head, 3 layers, dual BN
    default_crop_interpolation = "bicubic"  # train_simCLR.py: RandomResizedCrop(..., interpolation=3)

    def loss_weights(self, epoch: int) -> tuple[float, float]:
        return self.cfg.clean_weight, self.cfg.adv_weight


@PRETRAIN_METHODS.register("dynacl")
class DynACL(ACL):
    uses_momentum = True
    default_crop_interpolation = (
        "bilinear"  # train_DynACL.py reload(): RandomResizedCrop without interpolation
    )

    def __init__(self, cfg: ContrastiveConfig, epochs: int):
        super().__init__(cfg, epochs)
        self.schedule = DynACLSchedule(cfg.dynacl, epochs)
        self.momentum = cfg.dynacl.momentum

    def strength(self, epoch: int) -> float:
        return self.schedule.strength(epoch)

    def loss_weights(self, epoch: int) -> tuple[float, float]:
        return self.schedule.loss_weights(epoch, self.cfg.clean_weight, self.cfg.adv_weight)


@PRETRAIN_METHODS.register("acl_air")
class ACLAIR(ACL):
    """ACL + AIR (``pretraining.py --ACL_DS``): weights from clean_weight/adv_weight (the reference: 1 and 1)."""

    air = True


@PRETRAIN_METHODS.register("dynacl_air")
class DynACLAIR(DynACL):
    """DynACL + AIR (``pretraining.py --ACL_DS --DynAug``): DynACL's augmentation and loss-weight schedule,
    no momentum encoder (checked: dynacl.momentum must be 0), bicubic crops as ACL."""

    air = True
    default_crop_interpolation = "bicubic"  # AIR pretraining.py get_transform(): interpolation=3


def pretrain_method(cfg: ContrastiveConfig, epochs: int) -> SimCLR:
    """The configured method, built for a run of ``epochs`` epochs."""
    return PRETRAIN_METHODS.get(cfg.method, "pretrain.method")(cfg, epochs)


class ContrastiveModel(nn.Module):
    """backbone (pooled features) → projection head (built by the caller: ``heads.build_head``);
    ``(B, 3, H, W) -> (B, D)``.

    With ``momentum > 0`` (DynACL's reference) a frozen copy of backbone + head, updated as an exponential
    moving average of the trained one, encodes the images after the first ``n_query`` of a batch.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, momentum: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = head
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
        return (
            (self.key["backbone"], self.key["head"]) if self.key is not None else (self.backbone, self.head)
        )


class ContrastiveObjective:
    """``step(views, state) -> (loss, metrics)`` for the configured method; ``state.epoch`` picks the
    method's loss weights (``state`` None: epoch 0).

    ``sync()``: whether this call is the last micro-batch of an optimiser step (the stage passes
    ``lambda: acc.sync_gradients``). The momentum copy moves only then: once per optimiser step, as the
    reference (which has no accumulation) does, and every micro-batch of a step sees the same copy.
    """

    def __init__(
        self,
        method: str | SimCLR,
        model: nn.Module,
        raw_model: nn.Module,
        cfg: ContrastiveConfig,
        gather: bool,
        sync: Callable[[], bool] = lambda: True,
    ):
        self.method = pretrain_method(replace(cfg, method=method), 1) if isinstance(method, str) else method
        self.model, self.raw, self.cfg, self.sync = model, raw_model, cfg, sync
        self.loss = NTXentLoss(temperature=cfg.temperature, gather_distributed=gather)
        # the attack maximises the per-process loss: gathering inside the attack would add 2 collectives
        # per PGD step and couple ranks, for a perturbation of local samples only
        self.attack_loss = NTXentLoss(temperature=cfg.temperature, gather_distributed=False)
        self.attack_cfg = replace(cfg.attack)

    @staticmethod
    def _pair_loss(loss_fn, z: torch.Tensor, b: int) -> torch.Tensor:
        return loss_fn(z[:b], z[b:])  # z: (2B, D), view 1 then view 2

    def _attack(self, x: torch.Tensor, b: int) -> tuple[torch.Tensor, dict]:
        losses = []
        with eval_mode(self.raw), bn_branch(self.raw, "adv"):
            # one forward of all 2B views: in eval() the batch composition cannot change the output
            x_adv = run_attack(
                lambda xa: self._pair_loss(self.attack_loss, self.raw(xa, b), b),
                x,
                self.attack_cfg,
                on_step=lambda _, v: losses.append(v),
            )
        gain = (losses[-1] - losses[0]) if losses else 0.0
        return x_adv, {"attack_loss_first": losses[0] if losses else None, "attack_gain": gain}

    def step(self, batch, state) -> tuple[torch.Tensor, dict]:
        """``batch``: (view 1, view 2) or, for AIR, (view 1, view 2, original), each (B, 3, H, W) in [0,1]."""
        v1, v2 = batch[0], batch[1]
        b = v1.shape[0]
        x = torch.cat([v1, v2])  # (2B, 3, H, W): both views, attacked jointly
        epoch = state.epoch if state is not None else 0
        w_clean, w_adv = self.method.loss_weights(epoch)
        metrics: dict = {
            "images": b,
            "strength": self.method.strength(epoch),
            "w_clean": w_clean,
            "w_adv": w_adv,
        }
        adversarial = self.method.adversarial
        if adversarial:
            x_adv, info = self._attack(x, b)
            metrics.update(info)
        with bn_branch(self.raw, "clean"):
            z = self.model(x, b)  # (2B, D); the second view through the momentum copy, if any
        loss_clean = self.loss(z[:b], z[b:])
        loss = w_clean * loss_clean
        metrics["loss_clean"] = float(loss_clean.detach())
        if adversarial:
            with bn_branch(self.raw, "adv"):
                z_adv = self.model(x_adv, b)
            loss_adv = self.loss(z_adv[:b], z_adv[b:])
            loss = loss + w_adv * loss_adv
            metrics["loss_adv"] = float(loss_adv.detach())
        if self.method.air:
            loss = loss + self._air_terms(batch[2], z, z_adv, b, metrics)
        if self.raw.key is not None and self.sync():
            self.raw.update_key()  # after the forwards, before the optimiser step (as train_DynACL.py)
        metrics.update(self._passes(b, adversarial, self.method.air))
        return loss, metrics

    def _air_terms(
        self, original: torch.Tensor, z: torch.Tensor, z_adv: torch.Tensor, b: int, metrics: dict
    ) -> torch.Tensor:
        """λ1·SIR + λ2·AIR (air.py). The original images go through the clean branch in train(), after the
        two views, as in AIR's ``train()``: the clean BN's running statistics see views, then originals."""
        with bn_branch(self.raw, "clean"):
            z_orig = self.model(original)  # (B, D)
        sir, air = air_regularisers(z[:b], z[b:], z_orig, z_adv[:b], z_adv[b:], self.cfg.temperature)
        metrics.update(loss_sir=float(sir.detach()), loss_air=float(air.detach()))
        return self.cfg.air.lambda1 * sir + self.cfg.air.lambda2 * air

    def _passes(self, b: int, adversarial: bool, air: bool = False) -> dict:
        """Passes over the 2B images: attack (fwd + input-bwd) per PGD step, then 1 or 2 training fwd+bwd
        (with a momentum copy, training backpropagates through the first B images only); AIR adds one
        fwd+bwd of the B originals."""
        steps = self.attack_cfg.steps if adversarial else 0
        n_train = 2 if adversarial else 1
        train_bwd = b if self.raw.key is not None else 2 * b
        extra = b if air else 0
        return {
            "forward_passes": 2 * b * (steps + n_train) + extra,
            "backward_passes": 2 * b * steps + train_bwd * n_train + extra,
        }
