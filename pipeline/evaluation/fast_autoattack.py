"""``evaluate.autoattack.version=fast``: an AutoAttack-grade evaluation that checks itself. **It is not
standard AutoAttack**, and every place that prints its number says so.

1. APGD-CE, exactly as standard AutoAttack runs it (pyautoattack, standard settings: 100 iterations).
2. Targeted APGD on the points still robust, with ``fast_targets`` (9) targets per point chosen by MALT
   (:mod:`.malt`) instead of AutoAttack's nine logit-ranked ones; same loss, iterations and step rules.
3. Cross-check: standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) on a seeded random subset — a fraction
   ``cross_check`` — of the points the first two left robust. A point it breaks counts as broken (the
   fast version never scores robust a point its own check broke) and is reported: the count, and the
   miss rate on the checked points with its exact interval, which bounds what the unchecked points hide.

Cost per robust point: ~100 + 100·c + K input gradients (c targets, K classes) plus the cross-check's
share, against ~1,900 input gradients and ~5,900 forwards of standard AutoAttack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from .autoattack_runner import AttributedResult, capture_autoattack_warnings, run_attributed
from .counting import PassCounter
from .intervals import accuracy_interval
from .malt import MALTTargetedAPGD, malt_targets

FAST_ATTACKS = ("apgd-ce", "apgd-t-malt", "cross-check")
# enters the chunk fingerprint of version=fast: bump when what it computes changes meaning, so that chunks
# of the earlier computation are not reused (2: MALT's own target ranking, issue 22)
REVISION = 2
LABEL = "fast (APGD-CE + MALT-targeted APGD-T, cross-checked) — not standard AutoAttack"


@dataclass
class CrossCheck:
    """What the cross-check did on one chunk; stored as the chunk record's ``autoattack.cross_check``."""

    robust_before: int  # points the fast attacks left robust
    checked: int  # of those, re-attacked by standard AutoAttack
    broken: int  # of those, broken by it (they count as broken)
    broken_index: list[int]  # their positions in the evaluated set, ascending

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> CrossCheck:
        return cls(d["robust_before"], d["checked"], d["broken"], d["broken_index"])


def merge_cross_checks(parts: list[CrossCheck]) -> dict:
    """The cross-check over all chunks, as report.json's ``autoattack.cross_check``: how many points the
    fast attacks left robust, how many standard AutoAttack re-attacked, which it broke, and the miss rate
    with its exact interval."""
    total = {k: sum(getattr(p, k) for p in parts) for k in ("robust_before", "checked", "broken")}
    total["broken_index"] = sorted(i for p in parts for i in p.broken_index)
    total["miss_rate"] = total["broken"] / total["checked"] if total["checked"] else None
    total["miss_rate_ci"] = accuracy_interval(total["broken"], total["checked"])
    return total


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _cat(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else like[:0]  # no batch ran: an empty tensor of the right kind


def run_fast(
    make_aa: Callable,
    counter: PassCounter,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    batch_size: int,
    n_targets: int,
    fraction: float,
    seeds: Callable[[str], int],
    on_attack: Callable[[str], None] = lambda _: None,
    first_index: int = 0,
    on_finish: Callable[[str, float, int, int], None] | None = None,
) -> tuple[AttributedResult, CrossCheck]:
    """The fast version on ``x``/``y`` (see the module docstring).

    Args:
        make_aa: ``(version, attacks, seed) -> AutoAttack`` with the standard settings (``make_autoattack``).
        n_targets: MALT targets per point (capped at ``num_classes - 1``).
        fraction: share of the points left robust that standard AutoAttack re-attacks (at least one when
            any is left and ``fraction > 0``).
        seeds: ``purpose -> seed`` for the three stages (reproducible per chunk).
        first_index: the position of ``x[0]`` in the evaluated set (the cross-check's ``broken_index``
            counts from it).

    Returns:
        ``(result, cross_check)``: the per-stage attribution, as for the other versions (its attack names
        are :data:`FAST_ATTACKS`), and what the cross-check did.
    """
    res = run_attributed(
        make_aa("custom", ["apgd-ce"], seeds("apgd-ce")), counter, x, y, batch_size, on_attack, on_finish
    )

    on_attack(FAST_ATTACKS[1])
    with res.attack(FAST_ATTACKS[1], counter):
        todo = res.robust()  # after APGD-CE: correct and not broken
        ref = make_aa("standard", None, seeds("apgd-t-malt")).apgd_targeted
        malt = MALTTargetedAPGD.like(ref, counter, seeds("apgd-t-malt"))
        preds, advs = [], []
        with capture_autoattack_warnings() as messages:
            for s in range(0, todo.numel(), batch_size):
                idx = todo[s : s + batch_size]
                targets = malt_targets(counter, x[idx], y[idx], ref.norm, min(n_targets, num_classes - 1))
                adv = malt.perturb_targets(x[idx], y[idx], targets)
                advs.append(adv)
                preds.append(_predict(counter, adv))
        todo = res.record(FAST_ATTACKS[1], todo, _cat(preds, y), _cat(advs, x))

    on_attack(FAST_ATTACKS[2])
    with res.attack(FAST_ATTACKS[2], counter):
        m = min(todo.numel(), math.ceil(fraction * todo.numel()))
        pick = torch.randperm(todo.numel(), generator=torch.Generator().manual_seed(seeds("cross-check")))[:m]
        checked = todo[pick.to(todo.device)].sort().values
        x_std, y_std = x[:0], y[:0]
        if m:
            with capture_autoattack_warnings() as more:
                x_std, y_std = make_aa("standard", None, seeds("cross-check")).run_standard_evaluation(
                    x[checked], y[checked], batch_size=batch_size
                )
            messages += more
        still = res.record(FAST_ATTACKS[2], checked, y_std, x_std)
    res.warnings += list(messages)
    broken = sorted(set(checked.tolist()) - set(still.tolist()))
    return res, CrossCheck(int(todo.numel()), int(m), len(broken), [first_index + i for i in broken])
