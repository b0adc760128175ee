"""Clean accuracy, and the all-grey image whose prediction bounds every attacked accuracy (the grey check).

Always measured, and first: the other measurements read its predictions (PGD and AutoAttack do not attack
a misclassified point) and its logits (calibration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..intervals import format_accuracy
from .base import ChunkWork, Measurement, Merged, accuracy, concat, interval, logits_of

if TYPE_CHECKING:
    from ..report import EvalReport


def distance_to_grey(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample distance from each image to the all-0.5 image in the threat model's norm.

    Within that distance the attacker can submit the grey image itself, whose prediction is one fixed
    class: this gives an exact upper bound on what robust accuracy any working attack must reach.
    """
    d = (x - 0.5).flatten(1)
    if norm == "Linf":
        return d.abs().amax(dim=1)
    return d.norm(p=2 if norm == "L2" else 1, dim=1)


@dataclass
class CleanChunk:
    """Clean predictions on one chunk; stored at the top level of the chunk record, under these names."""

    grey_pred: int  # f(the all-0.5 image), the same in every chunk
    clean_pred: list[int]  # prediction per point
    grey_dist: list[float]  # distance per point to the grey image, in the threat model's norm

    def write(self, record: dict, tensors: dict) -> None:
        record.update(grey_pred=self.grey_pred, clean_pred=self.clean_pred, grey_dist=self.grey_dist)

    @classmethod
    def read(cls, record: dict, tensors: dict) -> CleanChunk | None:
        if record.get("clean_pred") is None:
            return None
        return cls(record["grey_pred"], record["clean_pred"], record["grey_dist"])


@dataclass
class CleanResult:
    pred: torch.Tensor  # clean prediction of every evaluated point
    grey_pred: int
    grey_dist: torch.Tensor


class Clean(Measurement):
    name = "clean"
    Record = CleanChunk

    def run(self, work: ChunkWork) -> CleanChunk:
        with work.phase(self.name) as tally:
            logits = work.logits(work.x)
            grey = torch.full_like(work.x[:1], 0.5)
            grey_pred = int(logits_of(work.counter, grey, 1).argmax(dim=1))
            tally.count(logits.argmax(dim=1) == work.y, what="accuracy")
        work.clean_logits, work.clean_pred = logits, logits.argmax(dim=1)
        return CleanChunk(
            grey_pred, work.clean_pred.tolist(), distance_to_grey(work.x, work.cfg.norm).tolist()
        )

    def merge(self, parts: list[CleanChunk], merged: Merged, report: EvalReport) -> CleanResult:
        pred, y = concat(parts, "clean_pred"), merged.label
        report.clean_accuracy, report.clean_accuracy_ci = accuracy(pred, y), interval(pred, y)
        report.per_sample["clean_pred"] = pred.tolist()
        return CleanResult(pred, parts[0].grey_pred, concat(parts, "grey_dist"))

    def summary_rows(self, report: EvalReport) -> list[list]:
        r, tm = report, report.threat_model
        return [
            ["examples", r.n_examples],
            ["threat model", f"{tm['norm']} eps={tm['eps']:.4g}"],
            ["clean accuracy", format_accuracy(r.clean_accuracy, r.clean_accuracy_ci, r.n_examples)],
        ]
