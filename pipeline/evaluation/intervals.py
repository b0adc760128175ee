"""Exact (Clopper–Pearson) confidence intervals for every accuracy the evaluation reports.

An accuracy over n points is a binomial proportion; with the few hundred or thousand points an
evaluation affords, its sampling error is often larger than the differences people read into it, so every
number in report.json / report.md / the summary / the model card carries its interval and n. Exact
rather than normal-approximation intervals: they stay valid at 0% and 100% and for small n, where robust
accuracies often sit.
"""

from __future__ import annotations

import math

from scipy.stats import beta

LEVEL = 0.95  # two-sided confidence level of every reported interval
METHOD = "clopper-pearson"


def accuracy_interval(correct: int, n: int, level: float = LEVEL) -> list[float] | None:
    """The two-sided exact interval ``[lo, hi]`` for ``correct`` successes out of ``n``; ``None`` if n = 0.

    Same values as ``scipy.stats.binomtest(correct, n).proportion_ci(level, method="exact")``; the ends
    are pinned to 0 and 1 at k = 0 and k = n, where the beta quantile is undefined.
    """
    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} must lie in [0, n={n}]")
    tail = (1.0 - level) / 2
    lo = 0.0 if correct == 0 else float(beta.ppf(tail, correct, n - correct + 1))
    hi = 1.0 if correct == n else float(beta.ppf(1 - tail, correct + 1, n - correct))
    return [lo, hi]


def interval_of(accuracy: float | None, n: int) -> list[float] | None:
    """The interval of an accuracy stored as a fraction of ``n`` (it is ``correct / n`` exactly, so
    rounding recovers ``correct``); ``None`` when there is no number."""
    if accuracy is None or n <= 0 or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return None
    return accuracy_interval(round(accuracy * n), n)


def format_accuracy(v: float | None, ci: list[float] | None = None, n: int | None = None) -> str:
    """``51.00% [40.8, 61.1] (n=100)``: the accuracy, its interval in percent, and n (parts present)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    out = f"{100 * v:.2f}%"
    if ci is not None:
        out += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    if n is not None:
        out += f" (n={n})"
    return out
