"""The evaluation report: a dataclass and its JSON form (the files it becomes: :mod:`.writers`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EvalReport:
    """Results of :func:`pipeline.evaluation.evaluate_model`. Accuracies are fractions in [0, 1]."""

    n_examples: int  # examples evaluated (clean and PGD); AutoAttack/sweep/smoothing record their own
    num_classes: int  # number of logits
    clean_accuracy: float  # top-1 accuracy on clean inputs
    robust_accuracy: dict[str, float | None]  # {"pgd": ..., "autoattack": ...}; None when not run
    threat_model: dict[str, Any]  # {"norm": "Linf", "eps": 0.0314}
    seed: int  # the run seed every chunk seed derives from
    clean_accuracy_ci: list[float] | None = None  # [lo, hi], 95% Clopper–Pearson over n_examples
    robust_accuracy_ci: dict[str, list[float] | None] = field(
        default_factory=dict
    )  # {"pgd": [lo, hi], "autoattack": [lo, hi]}, each over the points that component attacked
    intervals: dict = field(default_factory=dict)  # {"method": "clopper-pearson", "level": 0.95}
    # every accuracy below carries a matching "<name>_ci" ([lo, hi] or a list/dict of them)
    pgd: dict | None = None  # PGD-k settings and result
    autoattack: dict | None = None  # version, attacks, accuracy after each attack, first_broken_by counts
    sweep: dict | None = None  # eps list and robust accuracy at each
    calibration: dict | None = None  # ECE, mean confidence (of wrong predictions), reliability bins
    smoothing: dict | None = None  # certified accuracy at each radius
    # the section of each measurement without a field above, by its registry name; report.json has them as
    # top-level keys after the others
    sections: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # failed checks: the report gets a banner
    notes: list[str] = field(default_factory=list)  # facts worth knowing that are not failures
    # what was evaluated, when the caller knows (the evaluate stage): architecture, mean, std, normalization_source
    model: dict = field(default_factory=dict)
    timings: dict = field(
        default_factory=dict
    )  # compute seconds per phase (summed over chunks) and wall time
    passes: dict = field(default_factory=dict)  # per phase: images forwarded / back-propagated to the input
    distributed: dict = field(default_factory=dict)  # world size, chunks, chunks reused from an earlier run
    versions: dict = field(default_factory=dict)  # torch / pyautoattack versions
    per_sample: dict[str, list] = field(default_factory=dict, repr=False)  # columns of per_sample.csv

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything except the per-sample columns (NaN becomes None)."""
        d = asdict(self)
        d.pop("per_sample")
        sections = d.pop("sections")
        return _json_safe({**d, **sections})


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
