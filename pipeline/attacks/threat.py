"""The threat model — a norm ball of radius ε in [0,1] pixel space — shared by training and evaluation.

This is the one place where ε is checked: training attacks (``pretrain.attack``, ``finetune.attack``)
and the evaluation (``evaluate.eps`` / ``evaluate.norm``, the sweep radii) all go through
:func:`check_eps`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import InvalidValue, check_choice

# The norms pyautoattack 0.2 accepts (AutoAttack.__init__ asserts it); our PGD implements a subset
# (``pipeline.attacks.pgd.PGD_NORMS``).
NORMS = ("Linf", "L2", "L1")


def check_eps(key: str, value: float, norm: str, allow_zero: bool = False) -> None:
    """Linf radii live in [0, 1] for [0,1] images; L2/L1 radii grow with the image size, so only the
    sign is checked for them."""
    too_low = value < 0 or (value == 0 and not allow_zero)
    low = "[0" if allow_zero else "(0"
    if norm == "Linf" and (too_low or value > 1):
        raise InvalidValue(key, value, f"use a value in {low}, 1] (pixel units: 8/255 = 0.0314)")
    if too_low:
        raise InvalidValue(key, value, f"use a value {'>=' if allow_zero else '>'} 0 ({norm}, pixel units)")


@dataclass
class ThreatModel:
    """A norm ball around each [0,1] image."""

    norm: str = "Linf"  # Linf | L2 | L1 (evaluation); training PGD: Linf | L2
    eps: float = 8 / 255  # radius, pixel units

    def check(self) -> None:
        check_choice("norm", self.norm, NORMS)
        check_eps("eps", self.eps, self.norm)
