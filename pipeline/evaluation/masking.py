"""Gradient-masking and consistency checks on merged per-sample results.

Each check encodes something that must hold for a sound evaluation; a violation means the attacks, not
the model, may be the reason for a high robust accuracy (Athalye et al., ICML 2018; Croce & Hein, ICML
2020). Violations become warnings and put a banner on the report; counts that can also occur by
chance in a sound evaluation become notes.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import torch
from pyautoattack import checks as aa_checks

from .autoattack_runner import AA_LOGGER, capture_autoattack_warnings
from .intervals import accuracy_interval


@dataclass
class CheckInput:
    """What the checks look at; tensors are per sample over the prefix each component covered."""

    label: torch.Tensor
    clean_pred: torch.Tensor
    num_classes: int
    norm: str
    eps: float
    grey_pred: int
    grey_dist: torch.Tensor
    pgd_pred: torch.Tensor | None = None
    aa_attacks: list[str] | None = None
    aa_pred_after: dict[str, torch.Tensor] | None = None
    aa_final: torch.Tensor | None = None
    first_broken_by: list[str] | None = None
    sweep_eps: list[float] | None = None
    sweep_pred: torch.Tensor | None = None  # (n_eps, n_sweep)


def library_warnings(chunk_messages: list[list[str]]) -> list[str]:
    """pyautoattack's own warnings, deduplicated, with the number of chunks that raised each."""
    counts = Counter(m for messages in chunk_messages for m in dict.fromkeys(messages))
    total = len(chunk_messages)
    return [f"{m} (in {c} of {total} chunks)" if total > 1 else m for m, c in counts.items()]


def square_check(d: CheckInput) -> tuple[list[str], list[str]]:
    """Square (black-box) must not beat the white-box attacks.

    pyautoattack's ``check_square_sr`` needs the accuracies after every attack of one run, which our
    one-attack-at-a-time runs never give it (each of its calls sees only clean and one attack), so we call
    it on the merged accuracies: its threshold and message, no second check of ours. The count of points
    only Square broke is a note.
    """
    if d.aa_attacks is None or "square" not in d.aa_attacks or d.first_broken_by is None:
        return [], []
    k = len(d.first_broken_by)
    n = max(k, 1)
    robust = int((d.clean_pred[:k] == d.label[:k]).sum())
    acc = {"clean": robust / n}
    for attack in d.aa_attacks:
        robust -= d.first_broken_by.count(attack)
        acc[attack] = robust / n
    with capture_autoattack_warnings() as messages:
        aa_checks.check_square_sr(acc, logger=logging.getLogger(AA_LOGGER))
    warnings = [f"[pyautoattack] {m}" for m in messages]
    by_square = sum(1 for b in d.first_broken_by if b == "square")
    notes = (
        [f"Square broke {by_square} point(s) that every white-box attack before it missed"]
        if by_square
        else []
    )
    return warnings, notes


def sweep_checks(d: CheckInput) -> tuple[list[str], list[str]]:
    """ε = 0 must reproduce the clean predictions (exactly); robust accuracy must not grow with ε beyond
    sampling noise (:func:`_rises`)."""
    if d.sweep_eps is None or d.sweep_pred is None or d.sweep_pred.shape[1] == 0:
        return [], []
    warnings, notes = [], []
    k = d.sweep_pred.shape[1]
    y = d.label[:k]
    robust = d.sweep_pred == y  # (n_eps, k)
    for j, eps in enumerate(d.sweep_eps):
        if eps == 0:
            diff = int((robust[j] != (d.clean_pred[:k] == y)).sum())
            if diff:
                warnings.append(
                    f"[check] at eps=0 the attacks changed {diff}/{k} correctness outcomes vs the clean "
                    "pass: the model is randomized or batch-dependent (eval mode? BatchNorm?)"
                )
    order = sorted(range(len(d.sweep_eps)), key=lambda j: d.sweep_eps[j])
    warnings += _rises(d.sweep_eps, order, robust.sum(dim=1).tolist(), k)
    for a, b in zip(order, order[1:], strict=False):
        flips = int((robust[b] & ~robust[a]).sum())
        if flips:
            notes.append(
                f"{flips} point(s) broken at eps={d.sweep_eps[a]:.4g} survive eps={d.sweep_eps[b]:.4g}"
            )
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


def _aa_name(d: CheckInput) -> str:
    """How the checks name the AutoAttack run: the fast version is not standard AutoAttack."""
    return "fast (not standard AutoAttack)" if "apgd-t-malt" in (d.aa_attacks or []) else "AutoAttack"


def grey_checks(d: CheckInput) -> list[str]:
    """Within reach of the all-grey image, a point whose label differs from f(grey) must be broken."""
    runs = []
    if d.aa_final is not None:
        runs.append((d.eps, d.aa_final, _aa_name(d)))
    if d.sweep_eps is not None and d.sweep_pred is not None:
        runs += [(e, d.sweep_pred[j], "sweep") for j, e in enumerate(d.sweep_eps)]
    warnings = []
    for eps, pred, name in runs:
        k = pred.shape[0]
        y = d.label[:k]
        # x in {0, 1} is exactly eps=0.5 away in Linf; allow float rounding of the distance (a point within
        # 1e-6 of grey is as good as grey for any classifier that is not pathological there)
        reachable = (d.grey_dist[:k] <= eps + 1e-6) & (y != d.grey_pred)
        survivors = int((reachable & (pred == y)).sum())
        if survivors:
            bound = 1.0 - reachable.float().mean().item()
            warnings.append(
                f"[check] {name} at eps={eps:.4g}: {survivors} point(s) survive although the grey image (predicted "
                f"class {d.grey_pred}) is within reach; robust accuracy must be <= {bound:.2%} (chance {1 / d.num_classes:.2%})"
            )
    return warnings


def pgd_vs_autoattack(d: CheckInput) -> tuple[list[str], list[str]]:
    """AutoAttack must be at least as strong as PGD-k (aggregate), ideally on every point."""
    if d.pgd_pred is None or d.aa_final is None:
        return [], []
    k = d.aa_final.shape[0]
    y = d.label[:k]
    pgd_robust, aa_robust = d.pgd_pred[:k] == y, d.aa_final == y
    warnings, notes = [], []
    if pgd_robust.float().mean() < aa_robust.float().mean():
        warnings.append(
            f"[check] PGD robust accuracy {pgd_robust.float().mean():.2%} is below {_aa_name(d)}'s "
            f"{aa_robust.float().mean():.2%} on the same points: {_aa_name(d)} underperforms"
        )
    only_pgd = int((aa_robust & ~pgd_robust).sum())
    if only_pgd:
        notes.append(f"{only_pgd} point(s) broken by PGD survive {_aa_name(d)}")
    return warnings, notes


def run_checks(d: CheckInput, chunk_messages: list[list[str]]) -> tuple[list[str], list[str]]:
    """All checks: returns ``(warnings, notes)``."""
    warnings, notes = library_warnings(chunk_messages), []
    for check in (square_check, sweep_checks, pgd_vs_autoattack):
        w, n = check(d)
        warnings += w
        notes += n
    warnings += grey_checks(d)
    return warnings, notes
