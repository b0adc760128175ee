"""AutoAttack at the threat model's radius, with the sub-attack that first broke each point.

Its versions are :data:`AUTOATTACK_VERSIONS`: pyautoattack's own (standard, plus, rand, custom — run
through :func:`~pipeline.evaluation.autoattack_runner.run_attributed`) and ``fast``
(:mod:`pipeline.evaluation.fast_autoattack`). Every version fills the same per-attack bookkeeping
(:class:`~pipeline.evaluation.autoattack_runner.AttributedResult`). A version that is not standard
AutoAttack has a ``label``, printed wherever its number is, keeps its number under its own key of
``robust_accuracy`` and must check itself against standard AutoAttack (its record's ``cross_check``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from pyautoattack import checks as aa_checks

from pipeline.registry import Registry
from pipeline.validation import InvalidValue, check, check_choice, check_min

from ..autoattack_runner import (
    AA_LOGGER,
    ATTACKS,
    NOT_RUN,
    AttributedResult,
    capture_autoattack_warnings,
    run_attributed,
)
from ..fast_autoattack import LABEL as FAST_LABEL
from ..fast_autoattack import REVISION as FAST_REVISION
from ..fast_autoattack import CrossCheck, merge_cross_checks, run_fast
from ..intervals import format_accuracy, interval_of
from ..sampling import first_n
from .base import ChunkWork, Measurement, Merged, accuracy, interval, padded, table

if TYPE_CHECKING:
    from ..config import EvaluateConfig
    from ..report import EvalReport


@dataclass(frozen=True)
class Version:
    """One way of running AutoAttack on a chunk's prefix."""

    # (work, x, y) -> (the attribution, the cross-check where the version has one)
    run: Callable[[ChunkWork, torch.Tensor, torch.Tensor], tuple[AttributedResult, CrossCheck | None]]
    key: str = "autoattack"  # its key in report.robust_accuracy and robust_accuracy_ci
    label: str | None = None  # set for a version that is not standard AutoAttack: its name wherever printed
    short_name: str = "AutoAttack"  # how the masking checks name it


def _run_library(work: ChunkWork, x: torch.Tensor, y: torch.Tensor) -> tuple[AttributedResult, None]:
    a = work.cfg.autoattack
    aa = work.ctx.autoattack(a.version, list(a.attacks), work.seed("autoattack"))
    res = run_attributed(
        aa,
        work.counter,
        x,
        y,
        work.cfg.attack_batch_size(),
        on_attack=_status(work),
        on_finish=_finished(work),
    )
    return res, None


def _run_fast(work: ChunkWork, x: torch.Tensor, y: torch.Tensor) -> tuple[AttributedResult, CrossCheck]:
    a = work.cfg.autoattack
    return run_fast(
        work.ctx.autoattack,
        work.counter,
        x,
        y,
        work.ctx.num_classes,
        work.cfg.attack_batch_size(),
        a.fast_targets,
        a.cross_check,
        lambda purpose: work.seed(f"autoattack:{purpose}"),
        _status(work),
        first_index=work.chunk.start,
        on_finish=_finished(work),
    )


def _status(work: ChunkWork) -> Callable[[str], None]:
    return lambda attack: work.ctx.status(f"autoattack:{attack}")


def _finished(work: ChunkWork) -> Callable[[str, float, int, int], None]:
    return lambda attack, seconds, robust, n: work.ctx.finished(f"autoattack:{attack}", seconds, robust, n)


# The settings only version=fast reads, at the values every chunk written before issue 22 was fingerprinted
# with (the defaults then): the other versions fingerprint these, so changing the settings (or their
# defaults) reuses their chunks
FAST_ONLY = {"fast_targets": 3, "cross_check": 0.1}

AUTOATTACK_VERSIONS = Registry[Version]("autoattack version")
for _name in ("standard", "plus", "rand", "custom"):  # pyautoattack's own versions
    AUTOATTACK_VERSIONS.add(_name, Version(run=_run_library))
# fast: APGD-CE + MALT-targeted APGD-T + a standard-AutoAttack cross-check (evaluation/fast_autoattack.py);
# not standard AutoAttack, and labelled so wherever its number is printed
AUTOATTACK_VERSIONS.add(
    "fast",
    Version(
        run=_run_fast, key="autoattack_fast", label=FAST_LABEL, short_name="fast (not standard AutoAttack)"
    ),
)


def check_attacks(key: str, attacks: list[str]) -> None:
    for i, name in enumerate(attacks):
        check_choice(f"{key}[{i}]", name, ATTACKS)


def check_not_empty(key: str, values: list, fix: str) -> None:
    if not values:
        raise InvalidValue(key, values, message=f"{{key}} is empty; {fix}")


@dataclass
class AutoAttackConfig:
    """The reference evaluation, run through ``pyautoattack``."""

    enabled: bool = True  # run AutoAttack at evaluate.eps
    version: str = (
        "standard"  # standard | plus | rand | custom | fast (not standard AutoAttack: see fast_targets)
    )
    attacks: list[str] = field(
        default_factory=list
    )  # version=custom only: subset of apgd-ce apgd-dlr fab square apgd-t fab-t
    n_examples: int = 0  # attack the first k evaluated examples; 0 = all of evaluate.n_examples
    batch_size: int = 0  # pyautoattack batch size; 0 = evaluate.batch_size
    fast_targets: int = (
        9  # version=fast: MALT-ranked targets per point for targeted APGD (9 as in MALT's code)
    )
    # version=fast: share of the points the fast attacks leave robust that standard AutoAttack re-attacks
    # (its breaks count and are reported); 0 = no cross-check
    cross_check: float = 0.1

    def check(self) -> None:
        check_choice("version", self.version, AUTOATTACK_VERSIONS)
        check_min("n_examples", self.n_examples, 0)
        check_min("batch_size", self.batch_size, 0)
        check_min("fast_targets", self.fast_targets, 1)
        check(
            0 <= self.cross_check <= 1,
            "cross_check",
            self.cross_check,
            "use a fraction in [0, 1] (0.1 = 10%)",
        )
        if self.version == "custom":
            check_not_empty(
                "attacks", self.attacks, f"with {{at}}version=custom list some of: {', '.join(ATTACKS)}"
            )
            check_attacks("attacks", self.attacks)
        elif self.attacks:
            fix = "it is used only with version=custom; set {at}version=custom or {at}attacks=[]"
            raise InvalidValue("attacks", list(self.attacks), fix)


@dataclass
class AutoAttackChunk:
    """AutoAttack on one chunk's first points; stored as the chunk record's ``autoattack``."""

    attacks: list[str]  # sub-attacks in the order they ran
    pred_after: dict[str, list[int]]  # per sub-attack: prediction on its output; NOT_RUN where it did not run
    final_pred: list[
        int
    ]  # prediction on the final input: the clean one where misclassified, the label if unbroken
    cross_check: CrossCheck | None = None  # a version that is not standard AutoAttack: its check

    def write(self, record: dict, tensors: dict) -> None:
        record["autoattack"] = {
            "attacks": self.attacks,
            "pred_after": self.pred_after,
            "final_pred": self.final_pred,
        }
        if self.cross_check is not None:
            record["autoattack"]["cross_check"] = self.cross_check.to_json()

    @classmethod
    def read(cls, record: dict, tensors: dict) -> AutoAttackChunk | None:
        d = record.get("autoattack")
        if not d:
            return None
        cross = CrossCheck.from_json(d["cross_check"]) if "cross_check" in d else None
        return cls(d["attacks"], d["pred_after"], d["final_pred"], cross)


@dataclass
class AutoAttackResult:
    attacks: list[str]
    pred_after: dict[str, torch.Tensor]  # over the attacked prefix; NOT_RUN where an attack did not run
    final: torch.Tensor  # final prediction over the attacked prefix
    first_broken_by: list[str]  # per point: "clean", the first sub-attack that broke it, or "" (never broken)
    short_name: str  # how the checks name the version


# With version=rand every sub-attack's run repeats pyautoattack's (noisy) clean pass on the points still
# robust: we keep the attribution but say what it means.
RAND_CAVEAT = (
    "version=rand: each sub-attack re-runs the randomized model's clean pass on the points still robust, "
    "so a point misclassified by the noise alone is counted as broken by that sub-attack; the per-attack "
    "split is noisy and the robust accuracy can be slightly lower than one uninterrupted run would give"
)


def first_broken_by(
    clean_pred: torch.Tensor, y: torch.Tensor, attacks: list[str], pred_after: dict[str, torch.Tensor]
) -> list[str]:
    """Per point: 'clean' if misclassified without attack, else the first sub-attack that broke it, else ''."""
    after = {a: pred_after[a].tolist() for a in attacks}
    out = []
    for i, (label, clean) in enumerate(zip(y.tolist(), clean_pred.tolist(), strict=True)):
        if clean != label:
            out.append("clean")
            continue
        out.append(next((a for a in attacks if after[a][i] not in (NOT_RUN, label)), ""))
    return out


class AutoAttack(Measurement):
    name = "autoattack"
    section = "autoattack"
    prefix = True
    headline = "autoattack"
    Record = AutoAttackChunk

    def enabled(self, cfg: EvaluateConfig) -> bool:
        return cfg.autoattack.enabled

    def check(self, cfg: EvaluateConfig) -> None:
        if cfg.autoattack.enabled and cfg.autoattack.version == "fast" and cfg.norm not in ("Linf", "L2"):
            # standard AutoAttack runs L1 with its large-epsilon schedule, which the MALT stage does not copy
            raise InvalidValue(
                "autoattack.version",
                "fast",
                f"it supports Linf and L2, not {{at}}norm={cfg.norm}; "
                "use {at}autoattack.version=standard for L1",
            )

    def n_examples(self, cfg: EvaluateConfig, available: int) -> int:
        return first_n(cfg.autoattack.n_examples, available) if cfg.autoattack.enabled else 0

    def settings(self, cfg: EvaluateConfig) -> dict:
        if cfg.autoattack.version == "fast":
            return {**super().settings(cfg), "fast_revision": FAST_REVISION}
        return {**super().settings(cfg), **FAST_ONLY}

    def notes(self, cfg: EvaluateConfig, num_classes: int) -> list[str]:
        if cfg.autoattack.enabled and num_classes < 10:
            return [
                f"with {num_classes} classes the targeted attacks use {num_classes - 1} target classes, not 9"
            ]
        return []

    def run(self, work: ChunkWork) -> AutoAttackChunk:
        k = work.covered(self.name)
        x, y = work.x[:k], work.y[:k]
        res, cross = AUTOATTACK_VERSIONS.get(work.cfg.autoattack.version).run(work, x, y)
        wrong = work.clean_pred[:k] != y
        for name in res.attacks:
            res.pred_after[name][wrong] = NOT_RUN  # misclassified points are never attacked
            work.add_cost(f"autoattack:{name}", res.seconds[name], res.passes[name])
        work.warn([f"[pyautoattack] {m}" for m in dict.fromkeys(res.warnings)])
        work.adversarial = res.x_adv
        return AutoAttackChunk(
            res.attacks, {a: p.tolist() for a, p in res.pred_after.items()}, res.final_pred.tolist(), cross
        )

    def merge(self, parts: list[AutoAttackChunk], merged: Merged, report: EvalReport) -> AutoAttackResult:
        cfg, y = merged.cfg, merged.label
        version = AUTOATTACK_VERSIONS.get(cfg.autoattack.version)
        clean_pred = merged.results["clean"].pred
        attacks = parts[0].attacks if parts else []
        final = torch.tensor([v for p in parts for v in p.final_pred])
        k = final.shape[0]
        pred_after = {a: torch.tensor([v for p in parts for v in p.pred_after[a]]) for a in attacks}
        broken_by = first_broken_by(clean_pred[:k], y[:k], attacks, pred_after)
        robust = accuracy(final, y)
        # a version that is not standard AutoAttack never puts its number under the "autoattack" key: whatever
        # reads that key (summaries, the model card) then shows no AutoAttack number instead of a wrong one
        report.robust_accuracy[version.key] = robust
        report.robust_accuracy_ci[version.key] = interval(final, y)
        after, left = {}, int((clean_pred[:k] == y[:k]).sum())
        for a in attacks:
            left -= broken_by.count(a)
            after[a] = left / k if k else math.nan
        report.autoattack = {
            "version": cfg.autoattack.version,
            "attacks": attacks,
            "n_examples": k,
            "batch_size": cfg.attack_batch_size(),
            "clean_accuracy": accuracy(clean_pred[:k], y),
            "clean_accuracy_ci": interval(clean_pred[:k], y),
            "robust_accuracy": robust,
            "robust_accuracy_ci": report.robust_accuracy_ci[version.key],
            "robust_accuracy_after": after,
            "robust_accuracy_after_ci": {a: interval_of(v, k) for a, v in after.items()},
            "first_broken_by": {name: broken_by.count(name) for name in ["clean", *attacks, ""]},
            "seed_rule": "derive_seed(seed, chunk_index, 'autoattack') per chunk",
            "attribution_caveat": RAND_CAVEAT if cfg.autoattack.version == "rand" else None,
        }
        report.autoattack["first_broken_by"]["none"] = report.autoattack["first_broken_by"].pop("")
        if version.label is not None:
            report.autoattack.update(
                label=version.label,
                standard_autoattack=False,
                cross_check=merge_cross_checks([p.cross_check for p in parts]),
            )
        n = y.shape[0]
        for a in attacks:
            column = [None if v == NOT_RUN else v for v in pred_after[a].tolist()]  # empty cell: did not run
            report.per_sample[f"aa_{a}_pred"] = padded(column, n)
        report.per_sample["aa_final_pred"] = padded(final.tolist(), n)
        report.per_sample["first_broken_by"] = padded([b or "none" for b in broken_by], n)
        return AutoAttackResult(attacks, pred_after, final, broken_by, version.short_name)

    def checks(self, merged: Merged) -> tuple[list[str], list[str]]:
        return square_check(merged.results["autoattack"], merged.results["clean"].pred, merged.label)

    def grey_runs(
        self, result: AutoAttackResult, cfg: EvaluateConfig
    ) -> list[tuple[float, torch.Tensor, str]]:
        return [(cfg.eps, result.final, result.short_name)]

    def summary_rows(self, report: EvalReport) -> list[list]:
        aa = report.autoattack
        if not aa:
            return []
        name = (
            f"{aa['label']} robust accuracy"
            if aa.get("label")
            else f"AutoAttack ({aa['version']}) robust accuracy"
        )
        rows = [
            [name, format_accuracy(aa["robust_accuracy"], aa.get("robust_accuracy_ci"), aa["n_examples"])]
        ]
        if aa.get("cross_check"):
            rows.append(["cross-check: standard AutoAttack broke", cross_check_text(aa["cross_check"])])
        return rows

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        if not report.autoattack:
            return []
        aa, n = report.autoattack, report.autoattack["n_examples"]
        after_ci = aa.get("robust_accuracy_after_ci") or {}
        rows = [
            [
                "clean",
                format_accuracy(aa["clean_accuracy"], aa.get("clean_accuracy_ci"), n),
                aa["first_broken_by"]["clean"],
            ]
        ]
        rows += [
            [a, format_accuracy(aa["robust_accuracy_after"][a], after_ci.get(a), n), aa["first_broken_by"][a]]
            for a in aa["attacks"]
        ]
        caveat = [f"**Caveat:** {aa['attribution_caveat']}.", ""] if aa.get("attribution_caveat") else []
        if aa.get("cross_check"):
            caveat += [
                f"**This is not standard AutoAttack.** Cross-check: standard AutoAttack re-attacked a random "
                "subset of the points the fast attacks left robust and broke "
                f"{cross_check_text(aa['cross_check'])}; those points count as broken above.",
                "",
            ]
        return [
            f"## {aa['label']}" if aa.get("label") else f"## AutoAttack ({aa['version']}, pyautoattack)",
            "",
            *table(["after attack", "robust accuracy", "first broken here"], rows),
            "",
            *caveat,
            f"Per-sample predictions: `per_sample.csv` ({n} attacked points).",
            "",
        ]


def cross_check_text(cc: dict) -> str:
    """``2 of 14 checked (14.3% [1.8, 42.8]) of 140 left robust``: the fast version's cross-check."""
    rate = format_accuracy(cc["miss_rate"], cc.get("miss_rate_ci")) if cc["checked"] else "none checked"
    return f"{cc['broken']} of {cc['checked']} checked ({rate}) of {cc['robust_before']} left robust"


def square_check(
    aa: AutoAttackResult, clean_pred: torch.Tensor, label: torch.Tensor
) -> tuple[list[str], list[str]]:
    """Square (black-box) must not beat the white-box attacks.

    pyautoattack's ``check_square_sr`` needs the accuracies after every attack of one run, which our
    one-attack-at-a-time runs never give it (each of its calls sees only clean and one attack), so we call
    it on the merged accuracies: its threshold and message, no second check of ours. The count of points
    only Square broke is a note.
    """
    if "square" not in aa.attacks:
        return [], []
    k = len(aa.first_broken_by)
    n = max(k, 1)
    robust = int((clean_pred[:k] == label[:k]).sum())
    acc = {"clean": robust / n}
    for attack in aa.attacks:
        robust -= aa.first_broken_by.count(attack)
        acc[attack] = robust / n
    with capture_autoattack_warnings() as messages:
        aa_checks.check_square_sr(acc, logger=logging.getLogger(AA_LOGGER))
    warnings = [f"[pyautoattack] {m}" for m in messages]
    by_square = aa.first_broken_by.count("square")
    if not by_square:
        return warnings, []
    return warnings, [f"Square broke {by_square} point(s) that every white-box attack before it missed"]
