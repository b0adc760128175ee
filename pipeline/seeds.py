"""Seeds derived from the run seed: one rule for every random stream that must not depend on the process
count or on what ran before it (evaluation chunks, RCS candidates, exact-epoch orders)."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, index: int, purpose: str) -> int:
    """A 31-bit seed from the run seed, an index (a chunk, an epoch, a candidate batch) and what it is for.

    Hashing (rather than ``seed + index``) keeps seeds of different indices, purposes and run seeds from
    colliding. The AutoAttack seed of evaluation chunk ``i`` is ``derive_seed(cfg.seed, i, "autoattack")``.
    """
    digest = hashlib.sha256(f"{seed}:{index}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
