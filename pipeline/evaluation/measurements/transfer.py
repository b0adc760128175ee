"""The transfer-attack check: adversarial examples crafted on a surrogate model (pyautoattack's attacks,
white-box on the surrogate) and evaluated on the model, at the threat model's norm and radius.

A transfer attack is strictly weaker than a working white-box attack on the model itself, so a point it
breaks while white-box AutoAttack did not is a sign that the model's gradients mislead the white-box
attacks (gradient masking; Athalye et al., ICML 2018; Carlini et al., "On Evaluating Adversarial
Robustness", 2019, §4). The count of such points is reported with its interval; a warning is raised when
the interval's lower end exceeds ``transfer.tolerance`` (so more than sampling noise around what a sound
evaluation may miss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from pipeline.errors import UsageError
from pipeline.validation import check, check_min

from ..autoattack_runner import ATTACKS, make_autoattack, run_attributed
from ..counting import PassCount
from ..intervals import accuracy_interval, format_accuracy
from ..sampling import first_n
from .autoattack import check_attacks, check_not_empty
from .base import ChunkWork, EvalContext, Measurement, Merged, accuracy, concat, interval, padded

if TYPE_CHECKING:
    from ..config import EvaluateConfig
    from ..report import EvalReport

SURROGATE_FORMS = "'' (the run's other fine-tuning checkpoint), finetune:best, finetune:final, local-dir:<folder> or timm:<name>@<weights>"


@dataclass
class TransferConfig:
    """Transfer attack from a surrogate model (a gradient-masking check)."""

    enabled: bool = False  # run it
    # the model the attack is crafted on: "" = this run's other fine-tuning checkpoint (final/ when evaluating
    # best/, best/ when evaluating final/); finetune:best | finetune:final | local-dir:<folder> |
    # timm:<name>@<weights> (what evaluate.model accepts). Python API: evaluate_model(..., surrogate=module)
    surrogate: str = ""
    attacks: list[str] = field(default_factory=lambda: ["apgd-ce", "apgd-t"])  # pyautoattack attacks on it
    n_examples: int = 0  # first k evaluated examples; 0 = all of evaluate.n_examples
    # the share of points a sound white-box evaluation may miss that a transfer attack breaks: warn when the
    # 95% interval of the transfer-only share lies entirely above it
    tolerance: float = 0.01

    def check(self) -> None:
        check_min("n_examples", self.n_examples, 0)
        check(0 <= self.tolerance < 1, "tolerance", self.tolerance, "use a fraction in [0, 1) (0.01 = 1%)")
        if self.enabled:
            check_not_empty("attacks", self.attacks, f"list some of: {', '.join(ATTACKS)}")
        check_attacks("attacks", self.attacks)
        s = self.surrogate
        check(
            s in ("", "finetune:best", "finetune:final")
            or s.startswith("local-dir:")
            or (s.startswith("timm:") and "@" in s),
            "surrogate",
            s,
            f"use {SURROGATE_FORMS}",
        )


@dataclass
class TransferChunk:
    """The model's predictions on the surrogate's adversarial inputs; the record's ``transfer_pred``."""

    transfer_pred: list[int]  # the clean prediction where the point was misclassified

    def write(self, record: dict, tensors: dict) -> None:
        record["transfer_pred"] = self.transfer_pred

    @classmethod
    def read(cls, record: dict, tensors: dict) -> TransferChunk | None:
        return cls(record["transfer_pred"]) if record.get("transfer_pred") is not None else None


@dataclass
class TransferResult:
    pred: torch.Tensor  # over the transfer prefix
    only_transfer: (
        torch.Tensor | None
    )  # per point of the compared prefix: broken by transfer, not by AutoAttack


class Transfer(Measurement):
    name = "transfer"
    section = "transfer"
    prefix = True
    fingerprint_when_off = False  # added with issue 24; when on, the surrogate's weights enter it (runner)
    Record = TransferChunk

    def enabled(self, cfg: EvaluateConfig) -> bool:
        return cfg.transfer.enabled

    def n_examples(self, cfg: EvaluateConfig, available: int) -> int:
        return first_n(cfg.transfer.n_examples, available) if self.enabled(cfg) else 0

    def check_inputs(self, ctx: EvalContext, x: torch.Tensor, y: torch.Tensor) -> None:
        if ctx.surrogate is None:
            raise UsageError(
                "evaluate.transfer.enabled=true needs a surrogate model: set evaluate.transfer.surrogate "
                "(the stage loads it) or pass surrogate= to evaluate_model"
            )
        with torch.no_grad():
            classes = ctx.surrogate(x[:1].to(ctx.device)).shape[-1]
        if classes != ctx.num_classes:
            raise UsageError(
                f"the transfer surrogate has {classes} outputs but the model {ctx.num_classes}; "
                "use a surrogate trained on the same classes"
            )

    def run(self, work: ChunkWork) -> TransferChunk:
        k, cfg, surrogate = work.covered(self.name), work.cfg, work.ctx.surrogate
        x, y = work.x[:k], work.y[:k]
        aa = make_autoattack(
            surrogate,
            eps=cfg.eps,
            norm=cfg.norm,
            version="custom",
            attacks=list(cfg.transfer.attacks),
            seed=work.seed("transfer"),
            device=work.ctx.device,
            num_classes=work.ctx.num_classes,
        )
        work.ctx.status(f"{self.name}:surrogate")
        res = run_attributed(aa, surrogate, x, y, cfg.attack_batch_size())
        spent = sum(res.passes.values(), PassCount())
        work.add_cost(f"{self.name}:surrogate", sum(res.seconds.values()), spent)
        with work.phase(self.name):
            pred = work.logits(res.x_adv).argmax(dim=1)
        wrong = work.clean_pred[:k] != y
        pred[wrong] = work.clean_pred[:k][wrong]  # misclassified points stay as they are (as in AutoAttack)
        return TransferChunk(pred.tolist())

    def merge(self, parts: list[TransferChunk], merged: Merged, report: EvalReport) -> TransferResult:
        cfg, y = merged.cfg, merged.label
        pred = concat(parts, "transfer_pred")
        k = pred.shape[0]
        aa = merged.results.get("autoattack")
        section = {
            "surrogate": cfg.transfer.surrogate
            or "the surrogate passed to evaluate_model",  # the stage: its origin
            "attacks": list(cfg.transfer.attacks),
            "norm": cfg.norm,
            "eps": cfg.eps,
            "n_examples": k,
            "robust_accuracy": accuracy(pred, y),
            "robust_accuracy_ci": interval(pred, y),
            "tolerance": cfg.transfer.tolerance,
        }
        only = None
        if aa is not None:
            m = min(k, aa.final.shape[0])
            only = (aa.final[:m] == y[:m]) & (pred[:m] != y[:m])
            count = int(only.sum())
            section.update(
                compared_with=aa.short_name,
                n_compared=m,
                broken_only_by_transfer=count,
                broken_only_by_transfer_rate=count / m if m else None,
                broken_only_by_transfer_ci=accuracy_interval(count, m),
            )
        report.sections[self.name] = section
        report.per_sample["transfer_pred"] = padded(pred.tolist(), y.shape[0])
        return TransferResult(pred, only)

    def checks(self, merged: Merged) -> tuple[list[str], list[str]]:
        result = merged.results[self.name]
        if result.only_transfer is None:
            return [], ["the transfer check had no white-box AutoAttack to compare with"]
        count, m = int(result.only_transfer.sum()), result.only_transfer.numel()
        ci = accuracy_interval(count, m)
        tolerance = merged.cfg.transfer.tolerance
        if ci is not None and ci[0] > tolerance:
            return [
                f"[check] the transfer attack broke {count} of {m} point(s) that white-box AutoAttack left "
                f"robust ({format_accuracy(count / m, ci)}, above the tolerance {tolerance:.0%}): the model's "
                "gradients may be masked, so its white-box robust accuracy may be too high"
            ], []
        if count:
            return [], [
                f"the transfer attack broke {count} point(s) that white-box AutoAttack left robust (within noise)"
            ]
        return [], []

    def summary_rows(self, report: EvalReport) -> list[list]:
        s = report.sections.get(self.name)
        if not s:
            return []
        rows = [
            [
                "transfer attack robust accuracy",
                format_accuracy(s["robust_accuracy"], s["robust_accuracy_ci"], s["n_examples"]),
            ]
        ]
        if "n_compared" in s:
            rows.append(["transfer: broken only by transfer", only_text(s)])
        return rows

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        s = report.sections.get(self.name)
        if not s:
            return []
        lines = [
            "## Transfer attack (masking check)",
            "",
            f"{', '.join(s['attacks'])} (pyautoattack) crafted on the surrogate ({s['surrogate']}) at "
            f"{s['norm']} eps={s['eps']:.4g}, evaluated on the model: robust accuracy "
            f"{format_accuracy(s['robust_accuracy'], s['robust_accuracy_ci'], s['n_examples'])}.",
            "",
        ]
        if "n_compared" in s:
            lines += [
                f"Points the transfer attack broke but white-box {s['compared_with']} did not: {only_text(s)} "
                f"— a masking signal when the interval lies above the tolerance ({s['tolerance']:.0%}).",
                "",
            ]
        return lines


def only_text(s: dict) -> str:
    rate = format_accuracy(s["broken_only_by_transfer_rate"], s.get("broken_only_by_transfer_ci"))
    return f"{s['broken_only_by_transfer']} of {s['n_compared']} ({rate})"
