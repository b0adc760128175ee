"""The two rules every measurement shares: which examples ``n_examples`` selects, and where seeds come from."""

from __future__ import annotations

import hashlib


def first_n(requested: int, available: int) -> int:
    """How many of ``available`` examples an ``n_examples`` setting selects: 0 = all; never more than
    available. The one reading of every ``n_examples`` (evaluate, autoattack, sweep, smoothing)."""
    return available if requested == 0 else min(requested, available)


def derive_seed(seed: int, chunk: int, purpose: str) -> int:
    """A 31-bit seed from the run seed, a chunk index and what it is used for.

    Hashing (rather than ``seed + chunk``) keeps seeds of different chunks, purposes and run seeds from
    colliding. The AutoAttack seed of chunk ``i`` is ``derive_seed(cfg.seed, i, "autoattack")``.
    """
    digest = hashlib.sha256(f"{seed}:{chunk}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
