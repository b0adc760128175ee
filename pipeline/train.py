"""The one training loop that pretrain and finetune share.

It owns what both need and nothing else: accelerate (devices, processes, bf16, gradient accumulation),
epoch/step bookkeeping, checkpoints every N steps and at epoch ends (``save_state`` into a temp directory
renamed into place, the last K kept), automatic resume from the newest checkpoint, metrics and progress.
What a step computes is the objective's business (``step_fn``), what happens at epoch ends the stage's.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from omegaconf import OmegaConf
from tqdm import tqdm

from .errors import UsageError
from .run import StageRun, atomic_write_text


@dataclass
class TrainState:
    """Where training is; saved with every checkpoint (accelerate ``register_for_checkpointing``)."""

    epoch: int = 0
    step_in_epoch: int = 0  # batches of ``epoch`` already consumed
    global_step: int = 0
    extra: dict = field(default_factory=dict)  # stage-specific (best validation score, history)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                "extra": self.extra}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step, self.extra = int(state["global_step"]), dict(state["extra"])


def make_accelerator(cfg, grad_accum_steps: int = 1, log_dir: Path | None = None) -> Accelerator:
    """``log_dir`` given: accelerate's TensorBoard tracker writes there (``<run>/<stage>/tensorboard``)."""
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    kwargs: dict[str, Any] = {}
    if log_dir is not None:
        kwargs = {"log_with": "tensorboard", "project_dir": str(log_dir)}
    # cpu=True is needed on a CPU-only machine even under torchrun: with cpu=False and no CUDA, accelerate
    # 1.15 ignores the torchrun environment and every process believes it is alone (checked here)
    cpu = cfg.run.device == "cpu" or (cfg.run.device == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, mixed_precision=cfg.run.mixed_precision,
                       gradient_accumulation_steps=grad_accum_steps, step_scheduler_with_optimizer=False, **kwargs)


def open_stage(cfg, stage: str, grad_accum_steps: int = 1, tensorboard: bool = False, seed: int | None = None):
    """What every compute stage starts with: the accelerator, seeded RNGs, the resolved config (YAML) and
    the data manifest (the data stage runs first when needed, on the main process only)."""
    from accelerate.utils import set_seed

    from data.prepare import ensure_data

    from .config import to_yaml
    from .run import stage_dir

    acc = make_accelerator(cfg, grad_accum_steps, stage_dir(cfg, stage) if tensorboard else None)
    if tensorboard:
        # the stage's settings as TensorBoard hparams (scalars only; lists become strings)
        acc.init_trackers("tensorboard", config=_flat_scalars(OmegaConf.to_container(OmegaConf.structured(getattr(cfg, stage)))))
    set_seed(cfg.run.seed if seed is None else seed)
    yaml = to_yaml(cfg)
    with acc.main_process_first():
        data = ensure_data(cfg, yaml, cfg.run.progress and acc.is_main_process)
    return acc, yaml, data


def _flat_scalars(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_scalars(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def per_process_batch(global_batch: int, accelerator: Accelerator, key: str) -> int:
    world = accelerator.num_processes
    if global_batch % world:
        fix = math.ceil(global_batch / world) * world
        raise UsageError(f"{key}={global_batch} is not divisible by {world} processes; use {fix}")
    return global_batch // world


def config_fingerprint(cfg, section: str) -> str:
    """What a checkpoint depends on: the stage's section, the model, the data and the seed."""
    from .config import to_yaml_section

    return hashlib.sha256(to_yaml_section(cfg, (section, "model", "data"), cfg.run.seed).encode()).hexdigest()[:16]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows logged after the checkpoint we resume from (they will be logged again) and any line
    a kill cut in half, so metrics.jsonl reads as one uninterrupted run."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def steps_per_epoch(loop, split: dict, world_batch: int, key: str) -> int:
    """Optimiser steps per epoch: the epoch length in samples over the global batch."""
    samples = loop.samples_per_epoch or split.get("count", 0)
    if not samples:
        raise UsageError(f"the size of the training split is unknown (pipe: URLs); set {key}.samples_per_epoch")
    steps = samples // world_batch
    if steps < 1:
        raise UsageError(f"{key}.batch_size={world_batch} is larger than an epoch ({samples} samples); lower it")
    return steps


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp directories start with '.' and are ignored)."""
    return sorted(p for p in run_dir.glob("step_*") if p.is_dir())


class Trainer:
    """Runs ``epochs × steps_per_epoch`` optimiser steps of ``step_fn``, resumable at any checkpoint.

    Args:
        make_batches: ``epoch -> iterable of batches`` (rebuilt every epoch; must be deterministic given
            the epoch, so that a resumed epoch can skip the batches it already consumed).
        step_fn: ``(batch, state) -> (loss, metrics)``; called inside autocast and gradient accumulation.
        on_epoch_end: ``(epoch, state) -> metrics`` (validation, schedules); runs on every process.
        objects: extra checkpointed objects (with ``state_dict``/``load_state_dict``).
    """

    def __init__(self, accelerator: Accelerator, run: StageRun, loop_cfg, *, models, optimizer, scheduler,
                 steps_per_epoch: int, make_batches: Callable[[int], Iterable], step_fn: Callable,
                 on_epoch_end: Callable[[int, TrainState], dict] | None = None, progress: bool = True,
                 desc: str = "train", fingerprint: str = ""):
        self.acc, self.run, self.cfg = accelerator, run, loop_cfg
        self.models, self.optimizer, self.scheduler = models, optimizer, scheduler
        self.steps_per_epoch, self.make_batches, self.step_fn = steps_per_epoch, make_batches, step_fn
        self.on_epoch_end, self.progress, self.desc = on_epoch_end, progress, desc
        self.state = TrainState(extra={"fingerprint": fingerprint})
        self.fingerprint = fingerprint
        accelerator.register_for_checkpointing(self.state)
        if scheduler is not None:
            accelerator.register_for_checkpointing(scheduler)

    # -- checkpoints -------------------------------------------------------------------------------
    def resume(self) -> bool:
        """Load the newest complete checkpoint, if any. Returns whether it did."""
        found = checkpoint_dirs(self.run.checkpoints)
        if not found:
            return False
        self.acc.load_state(str(found[-1]))
        saved = self.state.extra.get("fingerprint")
        if saved != self.fingerprint:
            raise UsageError(f"{self.run.checkpoints} holds checkpoints of a different {self.run.stage} configuration; "
                             f"resume with the same settings, or use a new run.name")
        if self.acc.is_main_process:
            truncate_metrics(self.run.metrics.path, self.state.global_step)
        self.acc.print(f"[{self.run.stage}] resumed from {found[-1]} (epoch {self.state.epoch}, "
                       f"step {self.state.step_in_epoch}/{self.steps_per_epoch})")
        return True

    def save_checkpoint(self) -> None:
        final = self.run.checkpoints / f"step_{self.state.global_step:08d}"
        tmp = self.run.checkpoints / f".tmp_step_{self.state.global_step:08d}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp), safe_serialization=True)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)  # atomic: a checkpoint directory is either complete or absent
            for old in checkpoint_dirs(self.run.checkpoints)[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        self.resume()
        every = self.cfg.checkpoint_every_steps
        while self.state.epoch < self.cfg.epochs:
            epoch = self.state.epoch
            batches = iter(self.make_batches(epoch))
            for _ in range(self.state.step_in_epoch):  # replay the deterministic stream up to the resume point
                next(batches)
            bar = tqdm(total=self.steps_per_epoch, initial=self.state.step_in_epoch, leave=False,
                       desc=f"{self.desc} epoch {epoch + 1}/{self.cfg.epochs}",
                       disable=not (self.progress and self.acc.is_local_main_process))
            while self.state.step_in_epoch < self.steps_per_epoch:
                self._one_step(next(batches), bar)
                if every and self.state.global_step % every == 0 and self.state.step_in_epoch < self.steps_per_epoch:
                    self.save_checkpoint()
            bar.close()
            metrics = self.on_epoch_end(epoch, self.state) if self.on_epoch_end else {}
            if metrics:
                self.run.metrics.log(kind="epoch", epoch=epoch + 1, step=self.state.global_step, **metrics)
            self.state.epoch, self.state.step_in_epoch = epoch + 1, 0
            self.save_checkpoint()
        return self.state

    def _one_step(self, batch, bar) -> None:
        t0 = time.perf_counter()
        for m in self.models:
            m.train()
        with self.acc.accumulate(*self.models), self.acc.autocast():
            loss, metrics = self.step_fn(batch, self.state)
            if not torch.isfinite(loss):
                raise UsageError(f"[{self.run.stage}] loss is {loss.item()} at step {self.state.global_step}; "
                                 "lower the learning rate (the last good checkpoint is kept in "
                                 f"{self.run.checkpoints})")
            self.acc.backward(loss)
            self.optimizer.step()
            if self.scheduler is not None and self.acc.sync_gradients:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.state.step_in_epoch += 1
        self.state.global_step += 1
        dt = time.perf_counter() - t0
        if self.state.global_step % self.cfg.log_every_steps == 0:
            images = metrics.pop("images", 0) * self.acc.num_processes
            row = {"kind": "step", "epoch": self.state.epoch + 1, "step": self.state.global_step,
                   "loss": float(loss.detach()), "lr": self.optimizer.param_groups[0]["lr"],
                   "step_time_s": dt, "images_per_s": images / dt if dt > 0 else 0.0, **metrics}
            self.run.metrics.log(**row)
            if self.cfg.tensorboard:
                self.acc.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=self.state.global_step)
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        bar.update(1)
