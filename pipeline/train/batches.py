"""How many samples a process takes per step, and how many steps an epoch has."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from accelerate import Accelerator

from data.epochs import epoch_steps

from ..errors import UsageError

if TYPE_CHECKING:
    from data.spec import ShardSpec

    from .loop import TrainLoopConfig


def per_process_batch(global_batch: int, accelerator: Accelerator, key: str) -> int:
    world = accelerator.num_processes
    if global_batch % world:
        fix = math.ceil(global_batch / world) * world
        raise UsageError(f"{key}={global_batch} is not divisible by {world} processes; use {fix}")
    return global_batch // world


def steps_per_epoch(
    loop: TrainLoopConfig, spec: ShardSpec, world_batch: int, key: str, world: int = 1
) -> int:
    """Steps per epoch: an exact epoch's batches (the partial last one kept unless ``loop.drop_last``), or,
    streaming with replacement, the epoch length in samples over the global batch (full batches only)."""
    samples = loop.samples_per_epoch or spec.count
    if not samples:
        why = spec.size_unknown or "the training split holds no readable samples"
        raise UsageError(
            f"the size of the training split is unknown: {why}; set data.train_size=N "
            f"(or {key}.samples_per_epoch=N) to the number of training samples"
        )
    if spec.sampling == "exact" and spec.count and samples > spec.count:
        raise UsageError(
            f"{key}.samples_per_epoch={samples} exceeds the training split's {spec.count} samples: an "
            "exact epoch visits each sample once; lower it, or set data.sampling=resampled"
        )
    exact = spec.sampling == "exact"
    steps = epoch_steps(samples, world_batch, world, loop.drop_last) if exact else samples // world_batch
    if steps < 1:
        raise UsageError(
            f"{key}.batch_size={world_batch} is larger than an epoch ({samples} samples); lower it"
        )
    return steps
