"""Training-time attacks, by name (``ATTACKS``), and the threat model they share with evaluation."""

from . import pgd  # noqa: F401  (registers "pgd" and the random starts)
from . import single_step  # noqa: F401  (registers "fgsm_rs" and "nfgsm")
from .base import ATTACKS, STARTS, AttackConfig, cross_entropy_attack, run_attack
from .single_step import SINGLE_STEP_ATTACKS
from .threat import NORMS, ThreatModel, check_eps

__all__ = ["ATTACKS", "SINGLE_STEP_ATTACKS", "STARTS", "AttackConfig", "NORMS", "ThreatModel", "check_eps",
           "cross_entropy_attack", "run_attack"]
