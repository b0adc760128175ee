"""Kept for existing imports: the optimisers and schedules live in :mod:`pipeline.train.optim`."""

from .train.optim import OPTIMIZERS, SCHEDULES, OptimConfig, build_optimizer, build_scheduler, lr_factor

__all__ = ["OPTIMIZERS", "SCHEDULES", "OptimConfig", "build_optimizer", "build_scheduler", "lr_factor"]
