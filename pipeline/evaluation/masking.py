"""Gradient-masking and consistency checks on the merged results.

Each check encodes something that must hold for a sound evaluation; a violation means the attacks, not
the model, may be the reason for a high robust accuracy (Athalye et al., ICML 2018; Croce & Hein, ICML
2020). Violations become warnings and put a banner on the report; counts that can also occur by
chance in a sound evaluation become notes.

A check that needs one measurement's results lives in that measurement's module (``Measurement.checks``:
the sweep's ε = 0 and monotonicity checks, AutoAttack's Square check); this module holds pyautoattack's
own warnings and the checks that compare measurements: AutoAttack against PGD, and every attack that
declares ``grey_runs`` against the grey-image bound — at every threat model of ``evaluate.threats``.
"""

from __future__ import annotations

from collections import Counter

from .measurements import Merged, in_order


def library_warnings(chunk_messages: list[list[str]]) -> list[str]:
    """pyautoattack's own warnings, deduplicated, with the number of chunks that raised each."""
    counts = Counter(m for messages in chunk_messages for m in dict.fromkeys(messages))
    total = len(chunk_messages)
    return [f"{m} (in {c} of {total} chunks)" if total > 1 else m for m, c in counts.items()]


def grey_checks(merged: Merged) -> list[str]:
    """Within reach of the all-grey image, a point whose label differs from f(grey) must be broken."""
    clean = merged.results["clean"]
    runs = [
        run
        for m in in_order()
        if m.name in merged.results
        for run in m.grey_runs(merged.results[m.name], merged.cfg)
    ]
    warnings = []
    for eps, pred, name in runs:
        k = pred.shape[0]
        y = merged.label[:k]
        # x in {0, 1} is exactly eps=0.5 away in Linf; allow float rounding of the distance (a point within
        # 1e-6 of grey is as good as grey for any classifier that is not pathological there)
        reachable = (clean.grey_dist[:k] <= eps + 1e-6) & (y != clean.grey_pred)
        survivors = int((reachable & (pred == y)).sum())
        if survivors:
            bound = 1.0 - reachable.float().mean().item()
            warnings.append(
                f"[check] {name} at eps={eps:.4g}: {survivors} point(s) survive although the grey image (predicted "
                f"class {clean.grey_pred}) is within reach; robust accuracy must be <= {bound:.2%} "
                f"(chance {1 / merged.num_classes:.2%})"
            )
    return warnings


def pgd_vs_autoattack(merged: Merged) -> tuple[list[str], list[str]]:
    """AutoAttack must be at least as strong as PGD-k (aggregate), ideally on every point."""
    pgd, aa = merged.results.get("pgd"), merged.results.get("autoattack")
    if pgd is None or aa is None:
        return [], []
    k = aa.final.shape[0]
    y = merged.label[:k]
    pgd_robust, aa_robust = pgd.pred[:k] == y, aa.final == y
    warnings, notes = [], []
    if pgd_robust.float().mean() < aa_robust.float().mean():
        warnings.append(
            f"[check] PGD robust accuracy {pgd_robust.float().mean():.2%} is below {aa.short_name}'s "
            f"{aa_robust.float().mean():.2%} on the same points: {aa.short_name} underperforms"
        )
    only_pgd = int((aa_robust & ~pgd_robust).sum())
    if only_pgd:
        notes.append(f"{only_pgd} point(s) broken by PGD survive {aa.short_name}")
    return warnings, notes


def run_checks(merged: Merged, chunk_messages: list[list[str]]) -> tuple[list[str], list[str]]:
    """All checks: pyautoattack's warnings, each measurement's own, then the comparisons; ``(warnings, notes)``."""
    warnings, notes = library_warnings(chunk_messages), []
    own = [m.checks(merged) for m in in_order() if m.name in merged.results]
    for w, n in [*own, pgd_vs_autoattack(merged)]:
        warnings += w
        notes += n
    warnings += grey_checks(merged)
    for tag, other in merged.other_threats.items():  # the checks that apply to each further threat model
        w, n = run_checks(other, [])
        warnings += [f"[{tag}] {m}" for m in w]
        notes += [f"[{tag}] {m}" for m in n]
    return warnings, notes
