"""PGD-k with cross-entropy (our ``pipeline.attacks.pgd``) at the threat model's radius: the cheap first look."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pipeline.attacks.pgd import AttackConfig, cross_entropy_pgd
from pipeline.validation import InvalidValue, check, check_min

from ..intervals import format_accuracy
from .base import ChunkWork, Measurement, Merged, accuracy, concat, interval

if TYPE_CHECKING:
    from ..config import EvaluateConfig
    from ..report import EvalReport

# PGD's default step: 2.5·eps/steps (Madry et al., 2018), so that the iterates can cross the ball and back
# whatever the norm and radius; a fixed 2/255 moved L2 PGD-20 at most 0.16 of eps=0.5.
PGD_STEP_FACTOR = 2.5


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

    def step(self, eps: float) -> float:
        """The per-iteration step used at radius ``eps``: ``step_size``, or 2.5·eps/steps when it is 0."""
        if self.step_size > 0:
            return self.step_size
        return PGD_STEP_FACTOR * eps / max(self.steps, 1)


@dataclass
class PGDChunk:
    """PGD's predictions on one chunk; stored as the chunk record's ``pgd_pred``."""

    pgd_pred: list[int]  # prediction after the attack; the clean prediction where the point was misclassified

    def write(self, record: dict, tensors: dict) -> None:
        record["pgd_pred"] = self.pgd_pred

    @classmethod
    def read(cls, record: dict, tensors: dict) -> PGDChunk | None:
        return cls(record["pgd_pred"]) if record.get("pgd_pred") is not None else None


@dataclass
class PGDResult:
    pred: torch.Tensor  # prediction after PGD of every evaluated point


class PGD(Measurement):
    name = "pgd"
    section = "pgd"
    headline = "pgd"
    Record = PGDChunk

    def enabled(self, cfg: EvaluateConfig) -> bool:
        return cfg.pgd.steps > 0

    def check(self, cfg: EvaluateConfig) -> None:
        if cfg.pgd.steps > 0 and cfg.norm not in ("Linf", "L2"):
            raise InvalidValue(
                "pgd.steps",
                cfg.pgd.steps,
                f"our PGD supports only Linf and L2, not {{at}}norm={cfg.norm}; "
                "set {at}pgd.steps=0 for L1 (AutoAttack still runs)",
            )

    def settings(self, cfg: EvaluateConfig) -> dict:
        return {**super().settings(cfg), "step_size": cfg.pgd_step_size()}

    def run(self, work: ChunkWork) -> PGDChunk:
        with work.phase(self.name) as tally, work.low_precision():
            pred = self._predictions(work)
            tally.count(pred == work.y)
            return PGDChunk(pred.tolist())

    def _predictions(self, work: ChunkWork) -> torch.Tensor:
        """Predictions after PGD-k; misclassified points are not attacked (as in AutoAttack).

        Each restart only attacks the points still robust, so a point counts as broken if any restart broke it.
        """
        cfg, x, y = work.cfg, work.x, work.y
        atk = AttackConfig(
            norm=cfg.norm, eps=cfg.eps, step_size=cfg.pgd_step_size(), steps=cfg.pgd.steps, start="uniform"
        )
        pred = work.clean_pred.clone()
        todo = (work.clean_pred == y).nonzero().squeeze(1)
        torch.manual_seed(work.seed("pgd"))
        for _ in range(cfg.pgd.restarts):
            for s in range(0, todo.numel(), cfg.batch_size):
                idx = todo[s : s + cfg.batch_size]
                x_adv = cross_entropy_pgd(work.counter, x[idx], y[idx], atk)
                pred[idx] = work.logits(x_adv).argmax(dim=1)
            todo = todo[pred[todo] == y[todo]]
            if todo.numel() == 0:
                break
        return pred

    def merge(self, parts: list[PGDChunk], merged: Merged, report: EvalReport) -> PGDResult:
        cfg, y = merged.cfg, merged.label
        pred = concat(parts, "pgd_pred")
        report.per_sample["pgd_pred"] = pred.tolist()
        report.robust_accuracy["pgd"] = accuracy(pred, y)
        report.robust_accuracy_ci["pgd"] = interval(pred, y)
        report.pgd = {
            "steps": cfg.pgd.steps,
            "step_size": cfg.pgd_step_size(),  # the step used (resolved when the setting is 0)
            "step_size_rule": "explicit" if cfg.pgd.step_size > 0 else "2.5*eps/steps",
            "restarts": cfg.pgd.restarts,
            "n_examples": int(y.shape[0]),
            "robust_accuracy": report.robust_accuracy["pgd"],
            "robust_accuracy_ci": report.robust_accuracy_ci["pgd"],
        }
        return PGDResult(pred)

    def summary_rows(self, report: EvalReport) -> list[list]:
        if not report.pgd:
            return []
        ci = (report.robust_accuracy_ci or {}).get("pgd")
        return [
            [
                f"PGD-{report.pgd['steps']} robust accuracy",
                format_accuracy(report.robust_accuracy["pgd"], ci, report.pgd["n_examples"]),
            ]
        ]
