"""Training-time attacks, by name (``ATTACKS``), and the threat model they share with evaluation."""

from . import pgd  # noqa: F401  (registers "pgd" and the random starts)
from .base import ATTACKS, STARTS, AttackConfig, cross_entropy_attack, run_attack
from .threat import NORMS, ThreatModel, check_eps

__all__ = ["ATTACKS", "STARTS", "AttackConfig", "NORMS", "ThreatModel", "check_eps", "cross_entropy_attack",
           "run_attack"]
