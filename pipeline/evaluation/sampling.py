"""The two rules every measurement shares: which examples ``n_examples`` selects, and where seeds come from."""

from __future__ import annotations

from pipeline.seeds import derive_seed as derive_seed  # the one seed rule (pipeline/seeds.py), re-exported


def first_n(requested: int, available: int) -> int:
    """How many of ``available`` examples an ``n_examples`` setting selects: 0 = all; never more than
    available. The one reading of every ``n_examples`` (evaluate, autoattack, sweep, smoothing)."""
    return available if requested == 0 else min(requested, available)
