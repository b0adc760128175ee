"""Optimisers (SGD, LARS from lightly, AdamW) and per-step learning-rate schedules with warm-up, by name.

Add one: a function with ``@OPTIMIZERS.register("name")`` (``(param_groups, cfg) -> Optimizer``) or
``@SCHEDULES.register("name")`` (``(step_after_warmup, total_after_warmup, steps_per_epoch, cfg) -> factor``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from lightly.utils.lars import LARS

from ..registry import Registry
from ..validation import check, check_choice

OPTIMIZERS: Registry[Callable] = Registry("optimizer")
SCHEDULES: Registry[Callable] = Registry("schedule")


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | lars | adamw (OPTIMIZERS)
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | piecewise | constant (SCHEDULES)
    warmup_epochs: float = 0.0  # linear warm-up from 0
    milestones: list[float] = field(default_factory=list)  # piecewise: epochs where lr *= gamma
    gamma: float = 0.1

    def check(self) -> None:
        check_choice("name", self.name, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check(self.lr > 0, "lr", self.lr, "use a positive learning rate")
        check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "use 0 or more")


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


@OPTIMIZERS.register("lars")
def _lars(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return LARS(groups, lr=cfg.lr, momentum=cfg.momentum)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr)


def param_groups(params, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: weights (``ndim > 1``) with weight decay, biases and norm
    parameters without (standard for all three optimisers). Empty groups are dropped."""
    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name, "optim.name")(param_groups(params, cfg.weight_decay), cfg)


@SCHEDULES.register("cosine")
def _cosine(step: int, total: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))


@SCHEDULES.register("piecewise")
def _piecewise(step: int, total: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    # milestones count epochs from the start of training, warm-up included
    epoch = (step + _warmup_steps(steps_per_epoch, cfg)) / max(1, steps_per_epoch)
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@SCHEDULES.register("constant")
def _constant(step: int, total: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    return 1.0


def _warmup_steps(steps_per_epoch: int, cfg: OptimConfig) -> int:
    return int(round(cfg.warmup_epochs * steps_per_epoch))


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` (0-based): linear warm-up to 1 over
    ``warmup_epochs``, then the schedule over the remaining steps."""
    warmup = _warmup_steps(steps_per_epoch, cfg)
    if step < warmup:
        return (step + 1) / warmup
    return SCHEDULES.get(cfg.schedule, "optim.schedule")(step - warmup, total_steps - warmup, steps_per_epoch, cfg)


def build_scheduler(optimizer, total_steps: int, steps_per_epoch: int, cfg: OptimConfig):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, cfg))
