"""Randomized-smoothing certificates (CERTIFY, :mod:`pipeline.evaluation.smoothing`): certified accuracy
at L2 radii on the first ``smoothing.n_examples`` points."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.validation import check, check_min

from ..intervals import format_accuracy, interval_of
from ..sampling import first_n
from ..smoothing import ABSTAIN, certified_accuracy, certify
from .base import ChunkWork, Measurement, Merged, ci_list, concat, figure_line, padded, table

if TYPE_CHECKING:
    from ..config import EvaluateConfig
    from ..report import EvalReport


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
class SmoothingChunk:
    """Certificates of one chunk's first points; stored as the chunk record's ``smoothing``."""

    prediction: list[int]  # the smoothed class, or ABSTAIN (-1)
    radius: list[float]  # certified L2 radius; 0.0 when abstaining
    p_lower: list[float]  # Clopper–Pearson lower bound on the top class's probability
    n_top: list[int]  # count of the top class among the n estimation draws

    def write(self, record: dict, tensors: dict) -> None:
        record["smoothing"] = {
            "prediction": self.prediction,
            "radius": self.radius,
            "p_lower": self.p_lower,
            "n_top": self.n_top,
        }

    @classmethod
    def read(cls, record: dict, tensors: dict) -> SmoothingChunk | None:
        d = record.get("smoothing")
        return cls(d["prediction"], d["radius"], d["p_lower"], d["n_top"]) if d else None


class Smoothing(Measurement):
    name = "smoothing"
    section = "smoothing"
    prefix = True
    Record = SmoothingChunk

    def enabled(self, cfg: EvaluateConfig) -> bool:
        return cfg.smoothing.enabled

    def n_examples(self, cfg: EvaluateConfig, available: int) -> int:
        return first_n(cfg.smoothing.n_examples, available) if cfg.smoothing.enabled else 0

    def run(self, work: ChunkWork) -> SmoothingChunk:
        x = work.x[: work.covered(self.name)]
        with work.phase(self.name):
            certs = certify(work.counter, x, work.cfg.smoothing, work.ctx.num_classes, work.seed("smoothing"))
        return SmoothingChunk(
            [c.prediction for c in certs],
            [c.radius for c in certs],
            [c.p_lower for c in certs],
            [c.n_top for c in certs],
        )

    def merge(self, parts: list[SmoothingChunk], merged: Merged, report: EvalReport) -> None:
        sm, y = merged.cfg.smoothing, merged.label
        pred, radius = concat(parts, "prediction"), concat(parts, "radius").double()
        k = pred.shape[0]
        certified = certified_accuracy(pred, radius, y[:k], list(sm.radii))
        report.smoothing = {
            "sigma": sm.sigma,
            "n0": sm.n0,
            "n": sm.n,
            "alpha": sm.alpha,
            "n_examples": k,
            "radii": list(sm.radii),
            "certified_accuracy": certified,
            "certified_accuracy_ci": [interval_of(a, k) for a in certified],
            "abstain_rate": float((pred == ABSTAIN).float().mean()) if k else math.nan,
            "mean_certified_radius_of_correct": float(radius[pred == y[:k]].mean())
            if (pred == y[:k]).any()
            else math.nan,
        }
        n = y.shape[0]
        report.per_sample["smooth_pred"] = padded(pred.tolist(), n)
        report.per_sample["smooth_radius"] = padded(radius.tolist(), n)

    def summary_rows(self, report: EvalReport) -> list[list]:
        s = report.smoothing
        if not s:
            return []
        cis = ci_list(s["certified_accuracy"], s.get("certified_accuracy_ci"))
        return [
            [
                f"certified accuracy (sigma={s['sigma']}, n={s['n_examples']}) at r={s['radii']}",
                " / ".join(format_accuracy(a, c) for a, c in zip(s["certified_accuracy"], cis, strict=True)),
            ]
        ]

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        s = report.smoothing
        if not s:
            return []
        cis = ci_list(s["certified_accuracy"], s.get("certified_accuracy_ci"))
        rows = [
            [f"{rad:.3g}", format_accuracy(a, c, s["n_examples"])]
            for rad, a, c in zip(s["radii"], s["certified_accuracy"], cis, strict=True)
        ]
        lines = [
            f"## Randomized smoothing (sigma={s['sigma']}, n0={s['n0']}, n={s['n']}, alpha={s['alpha']}, "
            f"n_examples={s['n_examples']})",
            "",
            *table(["L2 radius", "certified accuracy"], rows),
            "",
            f"Abstained on {format_accuracy(s['abstain_rate'])} of the points.",
            "",
        ]
        figure = figure_line(figures, "certified", "certified accuracy")
        return lines + (figure + [""] if figure else [])

    def figures(self, report: EvalReport, out: Path) -> dict[str, Path]:
        if not (report.smoothing and report.smoothing["n_examples"]):
            return {}
        from pipeline import plots  # matplotlib is imported only when figures are written

        return {"certified": plots.certified_figure(report.smoothing, out / "certified_accuracy.png")}
