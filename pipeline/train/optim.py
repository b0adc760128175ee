"""Optimisers (SGD, the ACL/DynACL LARS, lightly's LARS, AdamW) and learning-rate schedules with warm-up,
by name, and ``prepare_training``: a model's optimiser and schedule through accelerate.

Defaults reproduce the references (ACL, Jiang et al. NeurIPS 2020: VITA-Group/Adversarial-Contrastive-Learning
``train_simCLR.py`` + ``optimizer/lars.py``; DynACL, Luo et al. ICLR 2023: PKU-ML/DYNACL ``train_DynACL.py``,
same ``optimizer/lars.py``; RobustSSL fine-tuning: GodXuxilie/RobustSSL_Benchmark
``Finetuning_Methods/Vanilla_Finetuning/utils.py``): weight decay on every parameter, plain (not Nesterov)
momentum, and a warm-up whose first step is already at lr / W (never 0).

Add one: a function with ``@OPTIMIZERS.register("name")`` (``(param_groups, cfg) -> Optimizer``) or
``@SCHEDULES.register("name")`` (``(unit_after_warmup, total_after_warmup, units_per_epoch, cfg) -> factor``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from lightly.utils.lars import LARS as LightlyLARS

from ..models.speed import channels_last_for, speed_up
from ..registry import Registry
from ..validation import check, check_choice

if TYPE_CHECKING:  # pipeline.config imports this package
    from accelerate import Accelerator

    from ..run import RunConfig
    from .loop import TrainLoopConfig

OPTIMIZERS: Registry[Callable] = Registry("optimizer")
SCHEDULES: Registry[Callable] = Registry("schedule")
SCHEDULE_UNITS = ("step", "epoch")


@dataclass
class OptimConfig:
    name: str = (
        "sgd"  # sgd | lars (ACL's) | adamw | lars_lightly (deprecated: lightly's, not ACL's) (OPTIMIZERS)
    )
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9
    nesterov: bool = False  # SGD only; the references use plain momentum
    weight_decay: float = 5e-4
    # True: decay every parameter, BN and biases included (ACL/DynACL/RobustSSL pass model.parameters()
    # whole); False: biases and norm parameters (ndim <= 1) get no weight decay (common large-batch practice)
    decay_norm_and_bias: bool = True
    schedule: str = "cosine"  # cosine | piecewise | constant (SCHEDULES)
    # lr is recomputed every optimiser step ("step", ACL) or held for a whole epoch ("epoch": DynACL
    # steps its LambdaLR once per epoch, RobustSSL its MultiStepLR)
    schedule_unit: str = "step"
    warmup_epochs: float = 0.0  # linear warm-up: (u + 1) / W over the first W units
    min_lr: float = 0.0  # cosine floor, an absolute lr (ACL/DynACL: lr_min = 1e-6 / args.lr as a factor)
    # False: the cosine is read at the start of each unit, so the first unit after warm-up runs at the
    # peak (DynACL steps its LambdaLR after each epoch; our previous schedule); True: at its end, one unit
    # ahead, the last unit running at min_lr (ACL steps its LambdaLR before optimizer.step())
    cosine_sampled_at_end: bool = False
    milestones: list[float] = field(default_factory=list)  # piecewise: epochs where lr *= gamma
    gamma: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only (MIMIR/MAE: [0.9, 0.95])
    # False: the warm-up's first unit already runs at lr / W ((u + 1) / W: ACL, DynACL); True: at 0 (u / W:
    # MAE/MIMIR util/lr_sched.py, lr · epoch / warmup_epochs read before each step)
    warmup_from_zero: bool = False
    # layer-wise lr decay (BEiT/MAE fine-tuning, MIMIR finetune.py --layer_decay): ViT block i runs at
    # lr · d^(depth + 1 − (i + 1)), the embeddings at d^(depth + 1), the rest (final norm, head) at lr; 1 = off
    layer_decay: float = 1.0

    def check(self) -> None:
        check_choice("name", self.name, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("schedule_unit", self.schedule_unit, SCHEDULE_UNITS)
        check(self.lr > 0, "lr", self.lr, "use a positive learning rate")
        check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "use 0 or more")
        check(
            self.schedule_unit == "step" or float(self.warmup_epochs).is_integer(),
            "warmup_epochs",
            self.warmup_epochs,
            "use a whole number of epochs with schedule_unit=epoch",
        )
        check(0 <= self.min_lr <= self.lr, "min_lr", self.min_lr, "use a value in [0, lr]")
        check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "betas",
            self.betas,
            "use [b1, b2] in [0, 1)",
        )
        check(0 < self.layer_decay <= 1, "layer_decay", self.layer_decay, "use a value in (0, 1] (1 = off)")
        check(
            not self.nesterov or self.momentum > 0, "nesterov", self.nesterov, "Nesterov needs momentum > 0"
        )


class LARS(torch.optim.Optimizer):
    """LARS exactly as ACL/DynACL's ``optimizer/lars.py`` (You et al. 2017, "Large Batch Training of
    Convolutional Networks", Alg. 1), re-typed. Per parameter tensor ``w`` with gradient ``g``::

        local_lr = eta * ||w|| / (||g|| + wd * ||w||)     (1 if ||w|| or ||g|| < 1e-15)
        buf = momentum * buf + lr * local_lr * (g + wd * w)
        w  -= buf

    Why not a kept library: lightly's LARS (``lars_lightly``) multiplies by ``lr`` *after* the momentum
    buffer (so a changing lr acts at once instead of through the buffer), adds eps, and skips the trust
    ratio and weight decay for groups with ``weight_decay=0``; torchlars/apex LARC wrap SGD the same way.
    The trust ratio and decay here apply to every parameter, zero-initialised BN biases included (their
    ``local_lr`` is 1 until they move). Parity is tested in tests/train/test_optim_parity.py.
    """

    def __init__(
        self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3
    ):
        if min(lr, momentum, weight_decay, eta) < 0:
            raise ValueError(
                f"LARS needs non-negative lr, momentum, weight_decay, eta; "
                f"got {lr}, {momentum}, {weight_decay}, {eta}"
            )
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
                local_lr = eta * w_norm / (g_norm + wd * w_norm)
                degenerate = (w_norm < 1e-15) | (g_norm < 1e-15)
                local_lr = torch.where(degenerate, torch.ones_like(local_lr), local_lr)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(p.grad.add(p, alpha=wd).mul_(local_lr * lr))
                p.sub_(buf)
        return loss


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


@OPTIMIZERS.register("lars")
def _lars(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return LARS(groups, lr=cfg.lr, momentum=cfg.momentum)


@OPTIMIZERS.register("lars_lightly")
def _lars_lightly(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    # deprecated: the pre-parity behaviour, kept for old configs (and the LARS comparison in tests)
    print(
        "note: optim.name=lars_lightly (lightly's LARS) is deprecated and is not ACL's LARS; "
        "use optim.name=lars for the references' optimiser"
    )
    return LightlyLARS(groups, lr=cfg.lr, momentum=cfg.momentum)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def param_groups(params, weight_decay: float, decay_norm_and_bias: bool = True) -> list[dict]:
    """Trainable parameters in groups carrying their weight decay. ``decay_norm_and_bias``: one group,
    all decayed (the references); otherwise weights (``ndim > 1``) decayed, biases and norm parameters
    not. Empty groups are dropped."""
    params = [p for p in params if p.requires_grad]
    if decay_norm_and_bias:
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    return [g for g in groups if g["params"]]


def layer_decay_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """MAE/MIMIR ``util/lr_decay.py param_groups_lrd``, re-typed: for the ViT inside ``model`` with n blocks,
    ``cls_token``/``pos_embed``/``patch_embed.*`` run at lr·d^(n+1), block i at lr·d^(n−i), everything else
    (final norm or fc_norm, head) at lr; no weight decay for 1-D parameters and the ViT's ``no_weight_decay()``
    names. Each group's ``lr`` is already scaled (the LR schedule multiplies it).

    Why not timm's ``param_groups_layer_decay``: its ViT ``group_matcher`` puts the final ``norm`` in the last
    block's group (lr·d instead of the reference's lr), and it takes no layer map to say otherwise."""
    from timm.models.vision_transformer import VisionTransformer

    prefix, vit = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, VisionTransformer)), ("", None)
    )
    if vit is None:
        raise ValueError("optim.layer_decay < 1 needs a timm VisionTransformer in the model")
    prefix = f"{prefix}." if prefix else ""
    layers, skip = len(vit.blocks) + 1, {prefix + n for n in vit.no_weight_decay()}
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        rel = name[len(prefix) :] if name.startswith(prefix) else None
        if rel in ("cls_token", "pos_embed") or (rel or "").startswith("patch_embed"):
            layer = 0
        elif (rel or "").startswith("blocks."):
            layer = int(rel.split(".")[1]) + 1
        else:
            layer = layers
        decay = not (p.ndim == 1 or name in skip)
        group = groups.setdefault(
            (layer, decay),
            {
                "params": [],
                "weight_decay": cfg.weight_decay if decay else 0.0,
                "lr": cfg.lr * cfg.layer_decay ** (layers - layer),
            },
        )
        group["params"].append(p)
    return list(groups.values())


def build_optimizer(params, cfg: OptimConfig, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """The optimiser over ``params``; with ``cfg.layer_decay < 1``, over ``model``'s layer-wise groups."""
    if cfg.layer_decay < 1 and model is not None:
        groups = layer_decay_groups(model, cfg)
    else:
        groups = param_groups(params, cfg.weight_decay, cfg.decay_norm_and_bias)
    return OPTIMIZERS.get(cfg.name, "optim.name")(groups, cfg)


@SCHEDULES.register("cosine")
def _cosine(unit: int, total: int, units_per_epoch: int, cfg: OptimConfig) -> float:
    # ACL train_simCLR.py cosine_annealing: lr_min + (lr_max - lr_min) * 0.5 * (1 + cos(pi * t / T)),
    # as a factor of lr (lr_max = 1, lr_min = min_lr / lr)
    floor = cfg.min_lr / cfg.lr
    progress = min(1.0, (unit + int(cfg.cosine_sampled_at_end)) / max(1, total))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("piecewise")
def _piecewise(unit: int, total: int, units_per_epoch: int, cfg: OptimConfig) -> float:
    # milestones count epochs from the start of training, warm-up included; an epoch's lr is that of its
    # start, as a MultiStepLR stepped after each epoch (RobustSSL utils.py train())
    epoch = (unit + _warmup_units(units_per_epoch, cfg)) / max(1, units_per_epoch)
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@SCHEDULES.register("constant")
def _constant(unit: int, total: int, units_per_epoch: int, cfg: OptimConfig) -> float:
    return 1.0


def _warmup_units(units_per_epoch: int, cfg: OptimConfig) -> int:
    return int(round(cfg.warmup_epochs * units_per_epoch))


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimiser step ``step`` (0-based; the trainer steps the scheduler
    after each optimiser step, so step s runs at ``lr_factor(s)``). With unit u (the step, or its epoch
    when ``schedule_unit=epoch``) and W warm-up units: ``(u + 1) / W`` for u < W, then the schedule over
    the remaining units. Why u + 1: ACL calls ``scheduler.step()`` before ``optimizer.step()``, so its
    first update already runs at ``cosine_annealing(1) = 1/W``, never at 0; DynACL's ``utils.py``
    warm-up is ``(epoch + 1) / W`` with the scheduler stepped after each epoch, the same values."""
    per_unit = max(1, steps_per_epoch) if cfg.schedule_unit == "epoch" else 1
    unit, total = step // per_unit, max(1, round(total_steps / per_unit))
    units_per_epoch = max(1, steps_per_epoch) // per_unit
    warmup = _warmup_units(units_per_epoch, cfg)
    if unit < warmup:
        return (unit + (0 if cfg.warmup_from_zero else 1)) / warmup
    schedule = SCHEDULES.get(cfg.schedule, "optim.schedule")
    return schedule(unit - warmup, total - warmup, units_per_epoch, cfg)


def build_scheduler(optimizer, total_steps: int, steps_per_epoch: int, cfg: OptimConfig):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, cfg)
    )


def prepare_training(
    acc: Accelerator,
    model: torch.nn.Module,
    loop: TrainLoopConfig,
    steps_per_epoch: int,
    run: RunConfig | None = None,
):
    """Optimiser and LR schedule for ``model``, both through ``acc.prepare``; returns
    ``(model, optimizer, scheduler, raw)`` where ``raw`` is the unwrapped model (attacks use it: no
    collective operations inside attack loops). ``run``: its ``channels_last`` / ``compile`` apply first."""
    if run is not None:
        nhwc = channels_last_for(run.channels_last, acc.device)
        speed_up(model, acc.device, channels_last=nhwc, compile=run.compile)
    optimizer = build_optimizer(model.parameters(), loop.optim, model)
    model, optimizer = acc.prepare(model, optimizer)
    # the scheduler counts optimiser steps: one per grad_accum_steps micro-batches
    scheduler = build_scheduler(
        optimizer,
        steps_per_epoch * loop.epochs // loop.grad_accum_steps,
        max(1, steps_per_epoch // loop.grad_accum_steps),
        loop.optim,
    )
    return model, optimizer, scheduler, acc.unwrap_model(model)
