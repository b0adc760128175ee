"""``evaluate.autoattack.version=fast``: an AutoAttack-grade evaluation that checks itself. **It is not
standard AutoAttack**, and every place that prints its number says so.

1. APGD-CE, exactly as standard AutoAttack runs it (pyautoattack, standard settings: 100 iterations).
2. Targeted APGD on the points still robust, with ``fast_targets`` targets per point chosen by MALT
   (:mod:`.malt`) instead of AutoAttack's nine logit-ranked ones; same loss, iterations and step rules.
3. Cross-check: standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) on a seeded random subset — a fraction
   ``cross_check`` — of the points the first two left robust. A point it breaks counts as broken (the
   fast version never scores robust a point its own check broke) and is reported: the count, and the
   miss rate on the checked points with its exact interval, which bounds what the unchecked points hide.

Cost per robust point: ~100 + 100·c + K + 1 input gradients (c targets, K classes) plus the cross-check's
share, against ~1,900 input gradients and ~5,900 forwards of standard AutoAttack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .autoattack_runner import AttributedResult, capture_autoattack_warnings, run_attributed
from .counting import PassCounter
from .malt import MALTTargetedAPGD, malt_targets

FAST_ATTACKS = ("apgd-ce", "apgd-t-malt", "cross-check")
LABEL = "fast (APGD-CE + MALT-targeted APGD-T, cross-checked) — not standard AutoAttack"


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _cat(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else like[:0]  # no batch ran: an empty tensor of the right kind


def _record(res: AttributedResult, counter: PassCounter, name: str, before, start: float,
            idx: torch.Tensor, pred: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Store one stage's predictions on ``idx``; returns the points of ``idx`` still robust."""
    res.attacks.append(name)
    res.pred_after[name] = torch.full_like(y, -1)
    res.pred_after[name][idx] = pred
    broken = pred != y[idx]
    res.final_pred[idx[broken]] = pred[broken]
    res.x_adv[idx[broken]] = x_adv[broken]
    res.seconds[name] = time.perf_counter() - start
    res.passes[name] = counter.snapshot() - before
    res.robust_after[name] = int((res.final_pred == y).sum()) / max(len(y), 1)
    return idx[~broken]


def run_fast(make_aa: Callable, counter: PassCounter, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             batch_size: int, n_targets: int, fraction: float, seeds: Callable[[str], int],
             on_attack: Callable[[str], None] = lambda _: None) -> tuple[AttributedResult, dict]:
    """The fast version on ``x``/``y`` (see the module docstring).

    Args:
        make_aa: ``(version, attacks, seed) -> AutoAttack`` with the standard settings (``make_autoattack``).
        n_targets: MALT targets per point (capped at ``num_classes - 1``).
        fraction: share of the points left robust that standard AutoAttack re-attacks (at least one when
            any is left and ``fraction > 0``).
        seeds: ``purpose -> seed`` for the three stages (reproducible per chunk).

    Returns:
        ``(result, cross_check)``: the per-stage attribution, as for the other versions (its attack names
        are :data:`FAST_ATTACKS`), and ``{"robust_before", "checked", "broken", "broken_index"}``.
    """
    res = run_attributed(make_aa("custom", ["apgd-ce"], seeds("apgd-ce")), counter, x, y, batch_size, on_attack)
    todo = (res.final_pred == y).nonzero().squeeze(1)  # after APGD-CE: correct and not broken

    on_attack(FAST_ATTACKS[1])
    before, start = counter.snapshot(), time.perf_counter()
    ref = make_aa("standard", None, seeds("apgd-t-malt")).apgd_targeted
    malt = MALTTargetedAPGD.like(ref, counter, seeds("apgd-t-malt"))
    preds, advs = [], []
    with capture_autoattack_warnings() as messages:
        for s in range(0, todo.numel(), batch_size):
            idx = todo[s: s + batch_size]
            targets = malt_targets(counter, x[idx], y[idx], ref.norm, min(n_targets, num_classes - 1))
            adv = malt.perturb_targets(x[idx], y[idx], targets)
            advs.append(adv)
            preds.append(_predict(counter, adv))
    todo = _record(res, counter, FAST_ATTACKS[1], before, start, todo, _cat(preds, y), _cat(advs, x), y)

    on_attack(FAST_ATTACKS[2])
    before, start = counter.snapshot(), time.perf_counter()
    m = min(todo.numel(), math.ceil(fraction * todo.numel()))
    pick = torch.randperm(todo.numel(), generator=torch.Generator().manual_seed(seeds("cross-check")))[:m]
    checked = todo[pick.to(todo.device)].sort().values
    x_std, y_std = x[:0], y[:0]
    if m:
        with capture_autoattack_warnings() as more:
            x_std, y_std = make_aa("standard", None, seeds("cross-check")).run_standard_evaluation(
                x[checked], y[checked], batch_size=batch_size)
        messages += more
    still = _record(res, counter, FAST_ATTACKS[2], before, start, checked, y_std, x_std, y)
    res.warnings += list(messages)
    broken = sorted(set(checked.tolist()) - set(still.tolist()))
    return res, {"robust_before": int(todo.numel()), "checked": int(m), "broken": len(broken), "broken_index": broken}
