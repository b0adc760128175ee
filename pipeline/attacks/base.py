"""What every training attack shares: its config, the registries of attacks and random starts, and the
dispatch by name.

A new attack is one file in this package with one decorator line::

    @ATTACKS.register("fgsm")
    def fgsm_attack(loss_fn, x, cfg, on_step=None): ...   # -> x_adv, detached, in the ball and [0,1]

and it is chosen with ``<section>.attack.name=fgsm``. ``norms`` on the function says which norms it
implements (checked with the config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..registry import Registry
from ..validation import check, check_choice
from .threat import ThreatModel, check_eps

LossFn = Callable[[torch.Tensor], torch.Tensor]
ATTACKS: Registry[Callable] = Registry("attack")
STARTS: Registry[Callable] = Registry("attack start")


@dataclass
class AttackConfig(ThreatModel):
    """A training-time attack: threat model (``norm``, ``eps``) and budget; all values in [0,1] pixel units."""

    step_size: float = 2 / 255  # per-iteration step (Linf: sign step; L2: normalised-gradient step)
    steps: int = 10  # iterations; 0 = no attack (returns the start point clamped to the ball)
    # uniform in the ball | normal (x + 0.001·N(0,1), TRADES) | zero; "" = the objective's own (finetune:
    # TRADES normal, PGD-AT uniform)
    start: str = "uniform"
    name: str = "pgd"  # a registered attack (pipeline/attacks/)

    def check(self) -> None:
        check_choice("name", self.name, ATTACKS)
        check_choice("norm", self.norm, ATTACKS.get(self.name).norms)
        check_eps("eps", self.eps, self.norm)
        check(0 < self.step_size <= 1, "step_size", self.step_size, "use a value in (0, 1] (2/255 = 0.0078)")
        check(self.steps >= 0, "steps", self.steps, "use 0 or more steps")
        # a single-step attack's budget is fixed by its paper; steps=1 keeps the config (and the pass counts
        # the objectives log from it) honest about what runs
        if getattr(ATTACKS.get(self.name), "single_step", False):
            check(self.steps == 1, "steps", self.steps, f"attack {self.name} takes one step; set steps=1")
        if self.start:
            check_choice("start", self.start, STARTS)


def run_attack(
    loss_fn: LossFn, x: torch.Tensor, cfg: AttackConfig, on_step: Callable[[int, float], None] | None = None
) -> torch.Tensor:
    """Maximise ``loss_fn`` around ``x`` with the attack ``cfg.name``."""
    return ATTACKS.get(cfg.name, "attack.name")(loss_fn, x, cfg, on_step)


def cross_entropy_attack(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig
) -> torch.Tensor:
    """Untargeted attack on the summed cross-entropy (PGD-AT's inner loop, validation and the quick
    evaluation attack). The caller decides the model's mode; all of these attack in ``eval()``."""
    ce = torch.nn.CrossEntropyLoss(reduction="sum")
    return run_attack(lambda xa: ce(model(xa), y), x, cfg)
