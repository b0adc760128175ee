"""The ``evaluate:`` section of the experiment YAML: the threat model, the settings every measurement
shares, and one section per measurement, each defined in its own module (``measurements/``).

Plain dataclasses so that ``OmegaConf.structured(EvaluateConfig)`` can type-check user overrides
(omegaconf 2.3 has no ``Literal``: choices are ``str`` fields checked in ``check``). Every config checks
its own fields with keys relative to itself; :meth:`EvaluateConfig.validate` walks the tree
(:func:`pipeline.validation.validate`) so a message names the full YAML key. All radii are in pixel units
of images scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import validation
from pipeline.attacks.threat import ThreatModel
from pipeline.validation import InvalidValue, check_choice, check_min

from .measurements import (
    AutoAttackConfig,
    CalibrationConfig,
    CorruptionsConfig,
    PGDEvalConfig,
    SmoothingConfig,
    SweepConfig,
    TransferConfig,
    in_order,
)
from .sampling import first_n

__all__ = [
    "AutoAttackConfig",
    "CalibrationConfig",
    "CorruptionsConfig",
    "EvaluateConfig",
    "PGDEvalConfig",
    "SmoothingConfig",
    "SweepConfig",
    "TransferConfig",
    "first_n",
]


@dataclass
class EvaluateConfig(ThreatModel):
    """Everything the evaluate stage measures and how; ``norm`` and ``eps`` (the threat model) come from
    :class:`~pipeline.attacks.threat.ThreatModel`. Construction does not check: call :meth:`validate`."""

    n_examples: int = 0  # first k test examples; 0 = the whole test split
    batch_size: int = 256  # forward/attack batch size
    seed: int = 0  # every attack/noise seed derives from (seed, chunk index)
    chunk_size: int = 100  # examples per unit of work (distribution and resume granularity)
    pgd: PGDEvalConfig = field(default_factory=PGDEvalConfig)  # PGD-k settings
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)  # AutoAttack settings
    sweep: SweepConfig = field(default_factory=SweepConfig)  # epsilon sweep settings
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)  # ECE settings
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)  # certification settings
    # several threat models in one evaluation: [{norm: Linf, eps: 0.0314}, {norm: L2, eps: 0.5}]; when set,
    # the first replaces norm/eps (every existing key describes it) and each other one gets AutoAttack (and
    # PGD when on) at its own radius, with its masking checks. [] = the one threat norm/eps
    threats: list[ThreatModel] = field(default_factory=list)
    corruptions: CorruptionsConfig = field(default_factory=CorruptionsConfig)  # common corruptions
    transfer: TransferConfig = field(default_factory=TransferConfig)  # transfer attack from a surrogate
    masking_checks: bool = True  # run the gradient-masking sanity checks
    # fp32 | bf16: autocast for the PGD attack and its predictions and for the sweep's attacks. Clean
    # accuracy and AutoAttack stay fp32 whatever this says (the reference number is never a bf16 one)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.adopt_first_threat()

    def adopt_first_threat(self) -> None:
        """``threats[0]`` is the threat model ``norm``/``eps`` describe (the shorthand for one threat)."""
        if self.threats:
            self.norm, self.eps = self.threats[0].norm, self.threats[0].eps

    def extra_threats(self) -> list[ThreatModel]:
        """The threat models after the first (``norm``/``eps``), in the order listed."""
        return list(self.threats[1:])

    def check(self) -> None:
        """This node's fields and what depends on the norm (the sections check their own fields)."""
        self.adopt_first_threat()  # threats may have been set after construction (the Python API)
        for i, threat in enumerate(self.threats):
            try:
                threat.check()
            except InvalidValue as exc:
                raise exc.under(f"threats[{i}]") from None
        seen = [(t.norm, t.eps) for t in self.threats]
        for i, key in enumerate(seen):
            if key in seen[:i]:
                raise InvalidValue(f"threats[{i}]", f"{key[0]} {key[1]}", "list each threat model once")
        super().check()
        check_choice("precision", self.precision, ("fp32", "bf16"))
        for key in ("n_examples", "seed"):
            check_min(key, getattr(self, key), 0)
        for key in ("batch_size", "chunk_size"):
            check_min(key, getattr(self, key), 1)
        for measurement in in_order():  # what depends on the threat model
            measurement.check(self)

    def validate(self, path: str = "evaluate") -> None:
        """Check every value a user can get wrong.

        Args:
            path: the key prefix used in messages (the section's place in the YAML).

        Raises:
            InvalidValue: a :class:`~pipeline.errors.UsageError` whose one-line message names the full
                key and the fix.
        """
        validation.validate(self, path)

    def sweep_radii(self) -> list[float]:
        """The radii the sweep runs: ``sweep.eps``, or the norm's defaults when it is empty. The one place
        they are resolved (chunks, merge, fingerprint and checks all call it)."""
        return self.sweep.radii(self.norm)

    def pgd_step_size(self) -> float:
        """PGD's per-iteration step: ``pgd.step_size``, or 2.5·eps/steps when it is 0."""
        return self.pgd.step(self.eps)

    def attack_batch_size(self) -> int:
        """pyautoattack's batch size: ``autoattack.batch_size``, 0 = ``batch_size``."""
        return self.autoattack.batch_size or self.batch_size
