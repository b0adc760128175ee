"""Training-time attacks, by name (``ATTACKS``), and the threat model they share with evaluation."""

from . import pgd, single_step  # noqa: F401  (they register "pgd" with the random starts, "fgsm_rs", "nfgsm")
from .base import ATTACKS, STARTS, AttackConfig, cross_entropy_attack, run_attack
from .single_step import SINGLE_STEP_ATTACKS
from .threat import NORMS, ThreatModel, check_eps

__all__ = [
    "ATTACKS",
    "SINGLE_STEP_ATTACKS",
    "STARTS",
    "AttackConfig",
    "NORMS",
    "ThreatModel",
    "check_eps",
    "cross_entropy_attack",
    "run_attack",
]
