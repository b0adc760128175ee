"""Training: the one loop pretrain and finetune share (``loop``), optimisers and schedules (``optim``),
and model selection on a held-out split (``selection``)."""

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

__all__ = ["OPTIMIZERS", "SCHEDULES", "OptimConfig", "TrainLoopConfig", "TrainState", "Trainer",
           "build_optimizer", "build_scheduler", "checkpoint_dirs", "lr_factor", "per_process_batch", "prepare_training",
           "steps_per_epoch", "truncate_metrics"]
