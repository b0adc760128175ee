"""The ``evaluate:`` section of the experiment YAML.

Plain dataclasses so that ``OmegaConf.structured(EvaluateConfig)`` can type-check user overrides
(omegaconf 2.3 has no ``Literal``: choices are ``str`` fields checked by :meth:`EvaluateConfig.validate`).
All radii are in pixel units of images scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.errors import UsageError

# What pyautoattack 0.2 accepts (AutoAttack.__init__ asserts the norm; unknown attacks raise in the loop).
NORMS = ("Linf", "L2", "L1")
VERSIONS = ("standard", "plus", "rand", "custom")
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


@dataclass
class PGDEvalConfig:
    """PGD-k with cross-entropy (our ``pipeline.attacks.pgd``), the cheap first look."""

    steps: int = 20  # iterations; 0 disables the PGD evaluation
    step_size: float = 2 / 255  # per-iteration step, pixel units (Linf: sign step)
    restarts: int = 1  # random starts; a point is broken if any restart breaks it


@dataclass
class AutoAttackConfig:
    """The reference evaluation, run through ``pyautoattack``."""

    enabled: bool = True  # run AutoAttack at evaluate.eps
    version: str = "standard"  # standard | plus | rand | custom
    attacks: list[str] = field(
        default_factory=list
    )  # version=custom only: subset of apgd-ce apgd-dlr fab square apgd-t fab-t
    n_examples: int = 0  # attack the first k evaluated examples; 0 = all of evaluate.n_examples
    batch_size: int = 0  # pyautoattack batch size; 0 = evaluate.batch_size


@dataclass
class SweepConfig:
    """Robust accuracy as a function of the radius (masking check and curve)."""

    enabled: bool = True  # run the sweep
    eps: list[float] = field(
        default_factory=lambda: [0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.5]
    )  # radii, pixel units; keep 0 and a large one for the checks
    attacks: list[str] = field(
        default_factory=lambda: ["apgd-ce", "apgd-t"]
    )  # pyautoattack attacks run at each radius
    n_examples: int = 0  # first k evaluated examples; 0 = all of evaluate.n_examples


@dataclass
class CalibrationConfig:
    """Expected calibration error on clean and AutoAttack inputs."""

    enabled: bool = True  # compute ECE and reliability diagrams
    n_bins: int = 15  # equal-width confidence bins (torchmetrics, l1 norm)


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


@dataclass
class EvaluateConfig:
    """Everything the evaluate stage measures and how; see ``validate`` for the allowed values."""

    n_examples: int = 0  # first k test examples; 0 = the whole test split
    batch_size: int = 256  # forward/attack batch size
    norm: str = "Linf"  # threat model: Linf | L2 | L1
    eps: float = 8 / 255  # radius of the threat model, pixel units
    seed: int = 0  # every attack/noise seed derives from (seed, chunk index)
    chunk_size: int = 100  # examples per unit of work (distribution and resume granularity)
    pgd: PGDEvalConfig = field(default_factory=PGDEvalConfig)  # PGD-k settings
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)  # AutoAttack settings
    sweep: SweepConfig = field(default_factory=SweepConfig)  # epsilon sweep settings
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)  # ECE settings
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)  # certification settings
    masking_checks: bool = True  # run the gradient-masking sanity checks

    def validate(self, path: str = "evaluate") -> None:
        """Check every value a user can get wrong.

        Args:
            path: the key prefix used in messages (the section's place in the YAML).

        Raises:
            UsageError: with a one-line message naming the key and the fix.
        """
        _check_choice(f"{path}.norm", self.norm, NORMS)
        _check_eps(f"{path}.eps", self.eps, self.norm, allow_zero=False)
        for key in ("n_examples", "seed"):
            _check_int(f"{path}.{key}", getattr(self, key), minimum=0)
        for key in ("batch_size", "chunk_size"):
            _check_int(f"{path}.{key}", getattr(self, key), minimum=1)
        _check_int(f"{path}.pgd.steps", self.pgd.steps, minimum=0)
        _check_int(f"{path}.pgd.restarts", self.pgd.restarts, minimum=1)
        _check_positive(f"{path}.pgd.step_size", self.pgd.step_size)
        if self.pgd.steps > 0 and self.norm not in ("Linf", "L2"):
            raise UsageError(
                f"{path}.pgd.steps={self.pgd.steps} but our PGD supports only Linf and L2, not "
                f"norm={self.norm}; set {path}.pgd.steps=0 for L1 (AutoAttack still runs)"
            )
        self._validate_autoattack(f"{path}.autoattack")
        self._validate_sweep(f"{path}.sweep")
        _check_int(f"{path}.calibration.n_bins", self.calibration.n_bins, minimum=1)
        self._validate_smoothing(f"{path}.smoothing")

    def _validate_autoattack(self, path: str) -> None:
        aa = self.autoattack
        _check_choice(f"{path}.version", aa.version, VERSIONS)
        _check_int(f"{path}.n_examples", aa.n_examples, minimum=0)
        _check_int(f"{path}.batch_size", aa.batch_size, minimum=0)
        if aa.version == "custom":
            if not aa.attacks:
                raise UsageError(
                    f"{path}.attacks is empty but {path}.version=custom; list some of {', '.join(ATTACKS)}"
                )
            _check_attacks(f"{path}.attacks", aa.attacks)
        elif aa.attacks:
            raise UsageError(
                f"{path}.attacks={list(aa.attacks)} is only used with version=custom; "
                f"set {path}.version=custom or {path}.attacks=[]"
            )

    def _validate_sweep(self, path: str) -> None:
        sw = self.sweep
        _check_int(f"{path}.n_examples", sw.n_examples, minimum=0)
        if sw.enabled and not sw.eps:
            raise UsageError(
                f"{path}.eps is empty; list radii such as [0, 0.0157, 0.0314] or set {path}.enabled=false"
            )
        for i, eps in enumerate(sw.eps):
            _check_eps(f"{path}.eps[{i}]", eps, self.norm, allow_zero=True)
        if sw.enabled and not sw.attacks:
            raise UsageError(f"{path}.attacks is empty; list some of {', '.join(ATTACKS)}")
        _check_attacks(f"{path}.attacks", sw.attacks)

    def _validate_smoothing(self, path: str) -> None:
        sm = self.smoothing
        _check_positive(f"{path}.sigma", sm.sigma)
        for key in ("n0", "n", "batch_size"):
            _check_int(f"{path}.{key}", getattr(sm, key), minimum=1)
        _check_int(f"{path}.n_examples", sm.n_examples, minimum=0)
        if not 0.0 < sm.alpha < 1.0:
            raise UsageError(f"{path}.alpha={sm.alpha} is out of range; use a value in (0, 1) such as 0.001")
        for i, r in enumerate(sm.radii):
            if r < 0:
                raise UsageError(f"{path}.radii[{i}]={r} is negative; use radii >= 0 (L2, pixel units)")


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{key}={value!r} is not known; use one of {', '.join(allowed)}")


def _check_attacks(key: str, attacks: list[str]) -> None:
    for name in attacks:
        if name not in ATTACKS:
            raise UsageError(f"{key} contains unknown attack {name!r}; use names from {', '.join(ATTACKS)}")


def _check_int(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UsageError(f"{key}={value} is too small; use an integer >= {minimum}")


def _check_positive(key: str, value: float) -> None:
    if not value > 0:
        raise UsageError(f"{key}={value} must be positive; use a value > 0 (pixel units)")


def _check_eps(key: str, value: float, norm: str, allow_zero: bool) -> None:
    low = "[0" if allow_zero else "(0"
    too_low = value < 0 or (value == 0 and not allow_zero)
    # Linf radii live in [0, 1] for [0,1] images; L2/L1 radii grow with the image size, so only the sign is checked.
    if norm == "Linf" and (too_low or value > 1):
        raise UsageError(
            f"{key}={value} is out of range; use a value in {low}, 1] (pixel units: 8/255 = 0.0314)"
        )
    if too_low:
        raise UsageError(
            f"{key}={value} is out of range; use a value {'>=' if allow_zero else '>'} 0 ({norm}, pixel units)"
        )
