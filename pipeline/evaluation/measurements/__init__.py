"""The measurements, one module each (what one is: :mod:`.base`), in the order of work on a chunk.

That order is also the order of their rows in the summary, their sections in report.md and their phases in
the cost table. A measurement reads what earlier ones left on the chunk (clean logits first of all), so
keep ``clean`` first and put a new one after those it reads.
"""

from pipeline.registry import Registry

from .autoattack import AUTOATTACK_VERSIONS, AutoAttack, AutoAttackConfig
from .base import ChunkWork, EvalContext, Measurement, Merged
from .calibration import Calibration, CalibrationConfig
from .clean import Clean
from .corruptions import Corruptions, CorruptionsConfig
from .pgd import PGD, PGDEvalConfig
from .smoothing import Smoothing, SmoothingConfig
from .sweep import Sweep, SweepConfig
from .threats import Threats
from .transfer import Transfer, TransferConfig

MEASUREMENTS = Registry[Measurement]("measurement")
for _measurement in (
    Clean(),
    PGD(),
    AutoAttack(),  # its versions: AUTOATTACK_VERSIONS
    Threats(),  # evaluate.threats after the first: PGD and AutoAttack at their radii; report.json's threats
    Transfer(),  # reads AutoAttack's results (the masking signal)
    Calibration(),  # reads the clean logits and AutoAttack's adversarial inputs
    Sweep(),
    Smoothing(),
    Corruptions(),
):
    MEASUREMENTS.add(_measurement.name, _measurement)


def in_order() -> list[Measurement]:
    """Every registered measurement, in the order of work."""
    return [m for _, m in MEASUREMENTS.items()]


__all__ = [
    "AUTOATTACK_VERSIONS",
    "MEASUREMENTS",
    "AutoAttackConfig",
    "CalibrationConfig",
    "ChunkWork",
    "CorruptionsConfig",
    "EvalContext",
    "Measurement",
    "Merged",
    "in_order",
    "PGDEvalConfig",
    "SmoothingConfig",
    "SweepConfig",
    "TransferConfig",
]
