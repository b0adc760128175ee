"""Training: the one loop (``loop``) inside the one skeleton every training stage and phase runs (``skeleton``),
optimisers and schedules (``optim``), model selection on a held-out split (``selection``), and the procedures
built of several trainings or passes: LP-AFT's phases (``lpaft``) and RCS's coreset schedule (``coreset``)."""

from .batches import per_process_batch, steps_per_epoch
from .loop import Trainer, TrainLoopConfig, TrainState, checkpoint_dirs, truncate_metrics
from .optim import (
    OPTIMIZERS,
    SCHEDULES,
    OptimConfig,
    build_optimizer,
    build_scheduler,
    lr_factor,
    prepare_training,
)
from .skeleton import EpochCoverage, ShardBatches, TrainingContext, TrainingRun

__all__ = [
    "EpochCoverage",
    "ShardBatches",
    "TrainingContext",
    "TrainingRun",
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimConfig",
    "TrainLoopConfig",
    "TrainState",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "checkpoint_dirs",
    "lr_factor",
    "per_process_batch",
    "prepare_training",
    "steps_per_epoch",
    "truncate_metrics",
]
