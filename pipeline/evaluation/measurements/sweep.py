"""The ε-sweep: robust accuracy as a function of the radius (pyautoattack attacks at each radius), the
curve and the masking checks it makes possible (ε = 0 is clean accuracy, no rise with ε, the grey bound)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline.attacks.threat import check_eps
from pipeline.validation import check_min

from ..autoattack_runner import ATTACKS, run_robust_flags
from ..intervals import accuracy_interval, format_accuracy
from ..sampling import first_n
from .autoattack import check_attacks, check_not_empty
from .base import ChunkWork, Measurement, Merged, accuracy, ci_list, figure_line, interval, padded, table

if TYPE_CHECKING:
    from ..config import EvaluateConfig
    from ..report import EvalReport

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
            check_not_empty("attacks", self.attacks, f"list some of: {', '.join(ATTACKS)}")
        # the radii depend on evaluate.norm: Sweep.check checks them
        check_attacks("attacks", self.attacks)

    def radii(self, norm: str) -> list[float]:
        """The radii the sweep runs: ``eps``, or the norm's defaults when it is empty."""
        return list(self.eps) if self.eps else list(DEFAULT_SWEEP_EPS.get(norm, []))


@dataclass
class SweepChunk:
    """The sweep on one chunk's first points; stored as the chunk record's ``sweep``."""

    eps: list[float]  # the radii, in the order run
    pred: list[list[int]]  # per radius: the final prediction per point

    def write(self, record: dict, tensors: dict) -> None:
        record["sweep"] = {"eps": self.eps, "pred": self.pred}

    @classmethod
    def read(cls, record: dict, tensors: dict) -> SweepChunk | None:
        d = record.get("sweep")
        return cls(d["eps"], d["pred"]) if d else None


@dataclass
class SweepResult:
    eps: list[float]
    pred: torch.Tensor  # (n_eps, n_sweep) final predictions over the sweep's prefix


class Sweep(Measurement):
    name = "sweep"
    section = "sweep"
    prefix = True
    Record = SweepChunk

    def enabled(self, cfg: EvaluateConfig) -> bool:
        return cfg.sweep.enabled

    def check(self, cfg: EvaluateConfig) -> None:
        for i, eps in enumerate(cfg.sweep_radii()):
            check_eps(f"sweep.eps[{i}]", eps, cfg.norm, allow_zero=True)

    def n_examples(self, cfg: EvaluateConfig, available: int) -> int:
        return first_n(cfg.sweep.n_examples, available) if cfg.sweep.enabled else 0

    def settings(self, cfg: EvaluateConfig) -> dict:
        return {**super().settings(cfg), "eps": cfg.sweep_radii()}

    def run(self, work: ChunkWork) -> SweepChunk:
        cfg, k = work.cfg, work.covered(self.name)
        x, y = work.x[:k], work.y[:k]
        preds, messages, radii = [], [], cfg.sweep_radii()
        for eps in radii:
            with work.phase(self.name):
                work.ctx.status(f"sweep eps={eps:.4g}")
                aa = work.ctx.autoattack(
                    "custom", list(cfg.sweep.attacks), work.seed(f"sweep:{eps!r}"), eps=eps
                )
                with work.low_precision():
                    y_adv, msgs = run_robust_flags(aa, x, y, cfg.attack_batch_size())
            preds.append(y_adv.tolist())
            messages += msgs
        work.warn([f"[pyautoattack, sweep] {m}" for m in dict.fromkeys(messages)])
        return SweepChunk(radii, preds)

    def merge(self, parts: list[SweepChunk], merged: Merged, report: EvalReport) -> SweepResult:
        cfg, y = merged.cfg, merged.label
        eps = cfg.sweep_radii()
        per_radius = [[v for p in parts for v in p.pred[j]] for j in range(len(eps))]
        pred = torch.tensor(per_radius).reshape(len(eps), -1)  # (n_eps, k); k = 0 keeps the shape
        k = pred.shape[1]
        report.sweep = {
            "eps": eps,
            "attacks": list(cfg.sweep.attacks),
            "n_examples": k,
            "robust_accuracy": [accuracy(p, y) for p in pred],
            "robust_accuracy_ci": [interval(p, y) for p in pred],
            "chance": 1.0 / merged.num_classes,
        }
        for j, e in enumerate(eps):
            report.per_sample[f"sweep_pred_eps={e:.6g}"] = padded(pred[j].tolist(), y.shape[0])
        return SweepResult(eps, pred)

    def checks(self, merged: Merged) -> tuple[list[str], list[str]]:
        return sweep_checks(merged.results["sweep"], merged.results["clean"].pred, merged.label)

    def grey_runs(self, result: SweepResult, cfg: EvaluateConfig) -> list[tuple[float, torch.Tensor, str]]:
        return [(e, result.pred[j], "sweep") for j, e in enumerate(result.eps)]

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        if not report.sweep:
            return []
        s = report.sweep
        cis = ci_list(s["robust_accuracy"], s.get("robust_accuracy_ci"))
        rows = [
            [f"{e:.4g}", f"{255 * e:.3g}", format_accuracy(a, c, s["n_examples"])]
            for e, a, c in zip(s["eps"], s["robust_accuracy"], cis, strict=True)
        ]
        lines = [
            f"## Robust accuracy vs epsilon ({', '.join(s['attacks'])}, n={s['n_examples']})",
            "",
            *table(["eps", "eps × 255", "robust accuracy"], rows),
        ]
        figure = figure_line(figures, "sweep", "robust accuracy vs epsilon")
        return lines + ([""] + figure if figure else []) + [""]

    def figures(self, report: EvalReport, out: Path) -> dict[str, Path]:
        if not (report.sweep and report.sweep["n_examples"]):
            return {}
        from pipeline import plots  # matplotlib is imported only when figures are written

        path = out / "robust_accuracy_vs_eps.png"
        return {"sweep": plots.sweep_figure(report.sweep, report.threat_model["norm"], path)}


def sweep_checks(
    sweep: SweepResult, clean_pred: torch.Tensor, label: torch.Tensor
) -> tuple[list[str], list[str]]:
    """ε = 0 must reproduce the clean predictions (exactly); robust accuracy must not grow with ε beyond
    sampling noise (:func:`_rises`)."""
    if sweep.pred.shape[1] == 0:
        return [], []
    warnings, notes = [], []
    k = sweep.pred.shape[1]
    y = label[:k]
    robust = sweep.pred == y  # (n_eps, k)
    for j, eps in enumerate(sweep.eps):
        if eps == 0:
            diff = int((robust[j] != (clean_pred[:k] == y)).sum())
            if diff:
                warnings.append(
                    f"[check] at eps=0 the attacks changed {diff}/{k} correctness outcomes vs the clean "
                    "pass: the model is randomized or batch-dependent (eval mode? BatchNorm?)"
                )
    order = sorted(range(len(sweep.eps)), key=lambda j: sweep.eps[j])
    warnings += _rises(sweep.eps, order, robust.sum(dim=1).tolist(), k)
    for a, b in zip(order, order[1:], strict=False):
        flips = int((robust[b] & ~robust[a]).sum())
        if flips:
            notes.append(f"{flips} point(s) broken at eps={sweep.eps[a]:.4g} survive eps={sweep.eps[b]:.4g}")
    return warnings, notes


def _rises(eps: list[float], order: list[int], correct: list[int], n: int) -> list[str]:
    """Warn where robust accuracy at a radius lies above the 95% interval of a smaller radius's.

    Each radius is attacked with its own seed, so two radii that the attack handles equally well differ
    by sampling noise; a one-point rise is no evidence. Comparing against the lowest accuracy at any
    smaller radius (not just the previous one) also catches a slow climb over several radii.
    """
    warnings, low = [], None  # low: index of the lowest accuracy so far
    for b in order:
        if low is not None and eps[b] > eps[low]:
            hi = accuracy_interval(correct[low], n)[1]
            if correct[b] / n > hi:
                warnings.append(
                    f"[check] robust accuracy rises from {correct[low] / n:.2%} at eps={eps[low]:.4g} to "
                    f"{correct[b] / n:.2%} at eps={eps[b]:.4g}, above that value's 95% interval (upper "
                    f"{hi:.2%}, n={n}): the attack is failing at the larger radius"
                )
        if low is None or correct[b] < correct[low]:
            low = b
    return warnings
