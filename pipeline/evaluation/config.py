"""The ``evaluate:`` section of the experiment YAML, and the one rule for "the first k examples".

Plain dataclasses so that ``OmegaConf.structured(EvaluateConfig)`` can type-check user overrides
(omegaconf 2.3 has no ``Literal``: choices are ``str`` fields checked in ``check``). Every config checks
its own fields with keys relative to itself; :meth:`EvaluateConfig.validate` walks the tree
(:func:`pipeline.validation.validate`) so a message names the full YAML key. All radii are in pixel units
of images scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import validation
from pipeline.attacks.threat import ThreatModel, check_eps
from pipeline.validation import InvalidValue, check, check_choice, check_min

# fast: APGD-CE + MALT-targeted APGD-T + a standard-AutoAttack cross-check (evaluation/fast_autoattack.py);
# not standard AutoAttack, and labelled so wherever its number is printed
VERSIONS = ("standard", "plus", "rand", "custom", "fast")
# pyautoattack's own attack names (external: its loop raises on anything else)
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


# Default sweep radii per norm. Each list ends at a radius that puts the all-grey image within reach of
# every 3×32×32 image in [0,1] (half the diameter of the pixel cube: Linf 0.5, L2 0.5·√3072 ≈ 27.7,
# L1 0.5·3072), so an attack that works must bring robust accuracy to at most f(grey)'s share, about
# chance: the grey check (masking.grey_checks) then has teeth for every norm. Larger images need a larger
# last radius for L2/L1: list the radii explicitly. The middle radii bracket the usual CIFAR-10 budgets
# (Linf 8/255, L2 0.5, L1 12).
DEFAULT_SWEEP_EPS = {
    "Linf": [0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.5],
    "L2": [0.0, 0.25, 0.5, 1.0, 2.0, 28.0],
    "L1": [0.0, 3.0, 6.0, 12.0, 24.0, 1536.0],
}
# PGD's default step: 2.5·eps/steps (Madry et al., 2018), so that the iterates can cross the ball and back
# whatever the norm and radius; a fixed 2/255 moved L2 PGD-20 at most 0.16 of eps=0.5.
PGD_STEP_FACTOR = 2.5


def first_n(requested: int, available: int) -> int:
    """How many of ``available`` examples an ``n_examples`` setting selects: 0 = all; never more than
    available. The one reading of every ``n_examples`` (evaluate, autoattack, sweep, smoothing)."""
    return available if requested == 0 else min(requested, available)


def _check_not_empty(key: str, values: list, fix: str) -> None:
    if not values:
        raise InvalidValue(key, values, message=f"{{key}} is empty; {fix}")


def _check_attacks(key: str, attacks: list[str]) -> None:
    for i, name in enumerate(attacks):
        check_choice(f"{key}[{i}]", name, ATTACKS)


@dataclass
class PGDEvalConfig:
    """PGD-k with cross-entropy (our ``pipeline.attacks.pgd``), the cheap first look."""

    steps: int = 20  # iterations; 0 disables the PGD evaluation
    step_size: float = 0.0  # per-iteration step, pixel units (Linf: sign step); 0 = 2.5·eps/steps
    restarts: int = 1  # random starts; a point is broken if any restart breaks it

    def check(self) -> None:
        check_min("steps", self.steps, 0)
        check_min("restarts", self.restarts, 1)
        check(
            self.step_size >= 0,
            "step_size",
            self.step_size,
            "use a value > 0 (pixel units), or 0 for 2.5·eps/steps",
        )


@dataclass
class AutoAttackConfig:
    """The reference evaluation, run through ``pyautoattack``."""

    enabled: bool = True  # run AutoAttack at evaluate.eps
    version: str = "standard"  # standard | plus | rand | custom | fast (not standard AutoAttack: see fast_targets)
    attacks: list[str] = field(
        default_factory=list
    )  # version=custom only: subset of apgd-ce apgd-dlr fab square apgd-t fab-t
    n_examples: int = 0  # attack the first k evaluated examples; 0 = all of evaluate.n_examples
    batch_size: int = 0  # pyautoattack batch size; 0 = evaluate.batch_size
    fast_targets: int = 3  # version=fast: MALT-chosen targets per point for targeted APGD (standard: 9 by logit)
    # version=fast: share of the points the fast attacks leave robust that standard AutoAttack re-attacks
    # (its breaks count and are reported); 0 = no cross-check
    cross_check: float = 0.1

    def check(self) -> None:
        check_choice("version", self.version, VERSIONS)
        check_min("n_examples", self.n_examples, 0)
        check_min("batch_size", self.batch_size, 0)
        check_min("fast_targets", self.fast_targets, 1)
        check(0 <= self.cross_check <= 1, "cross_check", self.cross_check, "use a fraction in [0, 1] (0.1 = 10%)")
        if self.version == "custom":
            _check_not_empty(
                "attacks", self.attacks, f"with {{at}}version=custom list some of: {', '.join(ATTACKS)}"
            )
            _check_attacks("attacks", self.attacks)
        elif self.attacks:
            fix = "it is used only with version=custom; set {at}version=custom or {at}attacks=[]"
            raise InvalidValue("attacks", list(self.attacks), fix)


@dataclass
class SweepConfig:
    """Robust accuracy as a function of the radius (masking check and curve)."""

    enabled: bool = True  # run the sweep
    eps: list[float] = field(
        default_factory=list
    )  # radii, pixel units; [] = the norm's defaults (DEFAULT_SWEEP_EPS); keep 0 and a large one for the checks
    attacks: list[str] = field(
        default_factory=lambda: ["apgd-ce", "apgd-t"]
    )  # pyautoattack attacks run at each radius
    n_examples: int = 0  # first k evaluated examples; 0 = all of evaluate.n_examples

    def check(self) -> None:
        check_min("n_examples", self.n_examples, 0)
        if self.enabled:
            _check_not_empty("attacks", self.attacks, f"list some of: {', '.join(ATTACKS)}")
        # the radii depend on evaluate.norm: EvaluateConfig.check checks them
        _check_attacks("attacks", self.attacks)


@dataclass
class CalibrationConfig:
    """Expected calibration error on clean and AutoAttack inputs."""

    enabled: bool = True  # compute ECE and reliability diagrams
    n_bins: int = 15  # equal-width confidence bins (torchmetrics, l1 norm)

    def check(self) -> None:
        check_min("n_bins", self.n_bins, 1)


@dataclass
class SmoothingConfig:
    """Randomized-smoothing certification (Cohen et al., ICML 2019), L2 radii."""

    enabled: bool = False  # off by default: n forward passes per image
    sigma: float = 0.25  # std of the Gaussian noise added in pixel space
    n0: int = 100  # noise samples used to pick the top class
    n: int = 100_000  # noise samples used to bound its probability
    alpha: float = 0.001  # failure probability of the certificate
    batch_size: int = 1000  # noisy copies per forward pass
    radii: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0]
    )  # L2 radii for certified accuracy
    n_examples: int = 100  # certify the first k evaluated examples; 0 = all of evaluate.n_examples

    def check(self) -> None:
        check(self.sigma > 0, "sigma", self.sigma, "use a value > 0 (pixel units)")
        for key in ("n0", "n", "batch_size"):
            check_min(key, getattr(self, key), 1)
        check_min("n_examples", self.n_examples, 0)
        check(0.0 < self.alpha < 1.0, "alpha", self.alpha, "use a value in (0, 1) such as 0.001")
        for i, r in enumerate(self.radii):
            check(r >= 0, f"radii[{i}]", r, "use radii >= 0 (L2, pixel units)")


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
    masking_checks: bool = True  # run the gradient-masking sanity checks
    # fp32 | bf16: autocast for the PGD attack and its predictions and for the sweep's attacks. Clean
    # accuracy and AutoAttack stay fp32 whatever this says (the reference number is never a bf16 one)
    precision: str = "fp32"

    def check(self) -> None:
        """This node's fields and what depends on the norm (the sections check their own fields)."""
        super().check()
        check_choice("precision", self.precision, ("fp32", "bf16"))
        for key in ("n_examples", "seed"):
            check_min(key, getattr(self, key), 0)
        for key in ("batch_size", "chunk_size"):
            check_min(key, getattr(self, key), 1)
        for i, eps in enumerate(self.sweep_radii()):
            check_eps(f"sweep.eps[{i}]", eps, self.norm, allow_zero=True)
        if self.pgd.steps > 0 and self.norm not in ("Linf", "L2"):
            raise InvalidValue(
                "pgd.steps",
                self.pgd.steps,
                f"our PGD supports only Linf and L2, not {{at}}norm={self.norm}; "
                "set {at}pgd.steps=0 for L1 (AutoAttack still runs)",
            )
        if self.autoattack.enabled and self.autoattack.version == "fast" and self.norm not in ("Linf", "L2"):
            # standard AutoAttack runs L1 with its large-epsilon schedule, which the MALT stage does not copy
            raise InvalidValue("autoattack.version", "fast", f"it supports Linf and L2, not {{at}}norm={self.norm}; "
                               "use {at}autoattack.version=standard for L1")

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
        return list(self.sweep.eps) if self.sweep.eps else list(DEFAULT_SWEEP_EPS.get(self.norm, []))

    def pgd_step_size(self) -> float:
        """PGD's per-iteration step: ``pgd.step_size``, or 2.5·eps/steps when it is 0."""
        if self.pgd.step_size > 0:
            return self.pgd.step_size
        return PGD_STEP_FACTOR * self.eps / max(self.pgd.steps, 1)

    def attack_batch_size(self) -> int:
        """pyautoattack's batch size: ``autoattack.batch_size``, 0 = ``batch_size``."""
        return self.autoattack.batch_size or self.batch_size
