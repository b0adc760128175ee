"""Calibration on clean inputs and under AutoAttack: ECE and reliability diagrams (the statistics:
:mod:`pipeline.evaluation.calibration`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline.validation import check_min

from ..calibration import expected_calibration_error, mean_confidence_of_wrong, reliability_bins
from ..intervals import format_accuracy
from .base import ChunkWork, Measurement, Merged, figure_line, table

if TYPE_CHECKING:
    from ..config import EvaluateConfig
    from ..report import EvalReport

# the inputs calibrated: report.calibration's keys, and the chunk tensors holding their probabilities
INPUTS = (("clean", "probs_clean"), ("autoattack", "probs_adv"))


@dataclass
class CalibrationConfig:
    """Expected calibration error on clean and AutoAttack inputs."""

    enabled: bool = True  # compute ECE and reliability diagrams
    n_bins: int = 15  # equal-width confidence bins (torchmetrics, l1 norm)

    def check(self) -> None:
        check_min("n_bins", self.n_bins, 1)


@dataclass
class CalibrationChunk:
    """Class probabilities on one chunk; stored as the chunk tensors ``probs_clean`` and ``probs_adv``."""

    probs_clean: torch.Tensor  # (n, K) on the clean inputs
    probs_adv: (
        torch.Tensor | None
    )  # (k, K) on AutoAttack's final inputs (its prefix); None where it did not run

    def write(self, record: dict, tensors: dict) -> None:
        tensors["probs_clean"] = self.probs_clean
        if self.probs_adv is not None:
            tensors["probs_adv"] = self.probs_adv

    @classmethod
    def read(cls, record: dict, tensors: dict) -> CalibrationChunk | None:
        return cls(tensors["probs_clean"], tensors.get("probs_adv")) if "probs_clean" in tensors else None


class Calibration(Measurement):
    name = "calibration"
    section = "calibration"
    Record = CalibrationChunk

    def enabled(self, cfg: EvaluateConfig) -> bool:
        return cfg.calibration.enabled

    def run(self, work: ChunkWork) -> CalibrationChunk:
        probs_adv = None
        if work.adversarial is not None:
            with work.phase(self.name):
                probs_adv = work.logits(work.adversarial).float().softmax(dim=1)
        return CalibrationChunk(work.clean_logits.float().softmax(dim=1), probs_adv)

    def merge(self, parts: list[CalibrationChunk], merged: Merged, report: EvalReport) -> None:
        nb, y = merged.cfg.calibration.n_bins, merged.label
        out = {"n_bins": nb, "norm": "l1"}
        for name, attr in INPUTS:
            found = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
            if not found:
                continue
            probs = torch.cat(found)
            yy = y[: probs.shape[0]]
            out[name] = {
                "n_examples": int(probs.shape[0]),
                "ece": expected_calibration_error(probs, yy, merged.num_classes, nb),
                "mean_confidence": float(probs.max(dim=1).values.mean()),
                "mean_confidence_of_wrong": mean_confidence_of_wrong(probs, yy),
                "bins": reliability_bins(probs, yy, nb),
            }
        report.calibration = out

    def summary_rows(self, report: EvalReport) -> list[list]:
        c = report.calibration
        if c and "clean" in c and "autoattack" in c:
            fast = report.autoattack and report.autoattack.get("label")
            return [
                [
                    f"ECE clean / under {'the fast attacks' if fast else 'AutoAttack'}",
                    f"{format_accuracy(c['clean']['ece'])} / {format_accuracy(c['autoattack']['ece'])}",
                ]
            ]
        if c and "clean" in c:
            return [["ECE clean", format_accuracy(c["clean"]["ece"])]]
        return []

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        c = report.calibration
        if not c:
            return []
        rows = [
            [
                name,
                c[name]["n_examples"],
                format_accuracy(c[name]["ece"]),
                format_accuracy(c[name]["mean_confidence"]),
                format_accuracy(c[name]["mean_confidence_of_wrong"]),
            ]
            for name, _ in INPUTS
            if name in c
        ]
        header = ["inputs", "n", "ECE", "mean confidence", "mean confidence when wrong"]
        lines = [f"## Calibration ({c['n_bins']} bins, l1)", "", *table(header, rows), ""]
        for name, _ in INPUTS:
            lines += figure_line(figures, f"reliability_{name}", f"reliability diagram, reliability_{name}")
        return lines + [""]

    def figures(self, report: EvalReport, out: Path) -> dict[str, Path]:
        from pipeline import plots  # matplotlib is imported only when figures are written

        files = {}
        for name, _ in INPUTS:
            stats = (report.calibration or {}).get(name)
            if stats and stats["n_examples"]:
                path = out / f"reliability_{name}.png"
                files[f"reliability_{name}"] = plots.reliability_figure(stats, name, path)
        return files
