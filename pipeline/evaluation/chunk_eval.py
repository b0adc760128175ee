"""One chunk through every measurement, in registry order (what each one does: ``measurements/``).

The result is a JSON-able record — the chunk's frame (``index``, ``start``, ``stop``, ``label``,
``seconds``, ``passes``, ``warnings``) plus what each measurement writes — and a few tensors
(probabilities for calibration).
"""

from __future__ import annotations

import torch

from .chunks import Chunk
from .measurements import ChunkWork, EvalContext, in_order

__all__ = ["EvalContext", "evaluate_chunk"]


def evaluate_chunk(
    ctx: EvalContext, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Measure one chunk.

    Args:
        ctx: shared settings and the counting model (already in eval mode).
        x: the chunk's images in [0, 1].
        y: the chunk's labels.
        chunk: which chunk this is (index for seeds, coverage of each prefix measurement).

    Returns:
        ``(record, tensors)``: the JSON-able record and the tensors to store next to it.
    """
    x, y = x.to(ctx.device), y.to(ctx.device)
    record: dict = {
        "index": chunk.index,
        "start": chunk.start,
        "stop": chunk.stop,
        "label": y.tolist(),
        "seconds": {},
        "passes": {},
        "warnings": [],
    }
    work = ChunkWork(ctx, chunk, x, y, record, tensors={})
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeding inside must not disturb the caller's RNG
        for measurement in in_order():
            if measurement.runs_on(chunk, ctx.cfg):
                measurement.run(work).write(record, work.tensors)
    return record, work.tensors
