"""The one training loop that pretrain and finetune share, and the loop settings both take.

It owns what both need and nothing else: accelerate (devices, processes, bf16, gradient accumulation),
epoch/step bookkeeping, checkpoints every N steps and at epoch ends (``save_state`` into a temp directory
renamed into place, the last K kept), automatic resume from the newest checkpoint, metrics and progress.
What a step computes is the objective's business (``step_fn``), what happens at epoch ends the stage's.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

from ..errors import UsageError
from ..io import atomic_write_text, read_jsonl
from ..run import StageRun
from ..validation import check
from .epoch_log import EpochMeter, epoch_line
from .optim import OptimConfig


@dataclass
class TrainLoopConfig:
    """What pretrain and finetune share: budget, batching, checkpoints, logging."""

    epochs: int = 1
    samples_per_epoch: int = 0  # 0 = the training split's size
    batch_size: int = 128  # global batch, split evenly over processes
    # the partial last batch of an exact epoch: kept (the references' DataLoader default) or dropped
    drop_last: bool = False
    grad_accum_steps: int = 1
    # fingerprint False: a checkpoint does not depend on these (they may change between a kill and a resume)
    checkpoint_every_steps: int = field(default=0, metadata={"fingerprint": False})  # 0 = only at epoch ends
    keep_checkpoints: int = field(default=2, metadata={"fingerprint": False})  # most recent ones kept on disk
    log_every_steps: int = field(default=1, metadata={"fingerprint": False})
    # deprecated spelling of run.log_with=[tensorboard] (still honoured, with a note)
    tensorboard: bool = field(default=False, metadata={"fingerprint": False})
    optim: OptimConfig = field(default_factory=OptimConfig)

    def check(self) -> None:
        check(self.epochs >= 0, "epochs", self.epochs, "use 0 or more epochs")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "use a batch size of at least 1")
        check(
            self.samples_per_epoch >= 0,
            "samples_per_epoch",
            self.samples_per_epoch,
            "use 0 (= split size) or more",
        )
        check(self.grad_accum_steps >= 1, "grad_accum_steps", self.grad_accum_steps, "use 1 or more")
        check(
            self.checkpoint_every_steps >= 0,
            "checkpoint_every_steps",
            self.checkpoint_every_steps,
            "use 0 or more",
        )
        check(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "keep at least 1")
        check(self.log_every_steps >= 1, "log_every_steps", self.log_every_steps, "use 1 or more")
        if self.tensorboard:
            import importlib.util

            check(
                importlib.util.find_spec("tensorboard") is not None,
                "tensorboard",
                True,
                "install it first: pip install -e '.[tensorboard]' (or pip install tensorboard)",
            )


@dataclass
class TrainState:
    """Where training is; saved with every checkpoint as JSON (``trainer_state.json``)."""

    epoch: int = 0
    step_in_epoch: int = 0  # batches of ``epoch`` already consumed
    global_step: int = 0
    extra: dict = field(default_factory=dict)  # stage-specific (best validation score, history)

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "extra": self.extra,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step, self.extra = int(state["global_step"]), dict(state["extra"])


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows logged after the checkpoint we resume from (they will be logged again) and any line
    a kill cut in half, so metrics.jsonl reads as one uninterrupted run."""
    if not path.is_file():
        return
    keep = [row for row in read_jsonl(path) if row.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(row, default=float) + "\n" for row in keep))


TRAINER_STATE = "trainer_state.json"  # the loop's position and the LR schedule, next to accelerate's files


def _no_objects(obj):
    raise TypeError(f"{type(obj).__name__} in the trainer state is not JSON; keep it to numbers and strings")


def _changed_keys(saved: dict, now: dict) -> list[str]:
    """Flat keys whose values differ between two (nested) settings dicts."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(saved), flat(now)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


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

    def __init__(
        self,
        accelerator: Accelerator,
        run: StageRun,
        loop_cfg: TrainLoopConfig,
        *,
        models,
        optimizer,
        scheduler,
        steps_per_epoch: int | Callable[[int], int],
        make_batches: Callable[[int], Iterable],
        step_fn: Callable,
        on_epoch_end: Callable[[int, TrainState], dict] | None = None,
        progress: bool = True,
        desc: str = "train",
        fingerprint: str = "",
        fingerprint_config: dict | None = None,
        trackers: bool = False,
        schedule_epoch_steps: int = 0,
    ):
        self.acc, self.run, self.cfg = accelerator, run, loop_cfg
        self.models, self.optimizer, self.scheduler = models, optimizer, scheduler
        # steps_per_epoch as a function of the epoch: epochs of different lengths (RCS trains on a coreset);
        # the LR schedule then follows the fraction of epochs done, counted in schedule_epoch_steps per epoch
        # (ACL_RCS.py rebuilds its cosine schedule for each epoch's loader length: the same positions)
        self.epoch_steps = steps_per_epoch if callable(steps_per_epoch) else (lambda _epoch: steps_per_epoch)
        self.schedule_epoch_steps = schedule_epoch_steps if callable(steps_per_epoch) else 0
        self.steps_per_epoch, self.make_batches, self.step_fn = 0, make_batches, step_fn
        self.on_epoch_end, self.progress, self.desc = on_epoch_end, progress, desc
        # the settings a checkpoint depends on travel with it, so a refusal to resume can name what changed
        self.state = TrainState(
            extra={"fingerprint": fingerprint, "fingerprint_config": fingerprint_config or {}}
        )
        self.fingerprint, self.fingerprint_config = fingerprint, fingerprint_config or {}
        self.trackers, self.meter = trackers, EpochMeter()
        # nothing is registered with accelerate for checkpointing: it would store such objects as pickles
        # and load them with code execution allowed, so a crafted checkpoint folder could run code on
        # resume. The loop's state and the LR schedule are plain numbers: they go through JSON.

    # -- checkpoints -------------------------------------------------------------------------------
    def resume(self) -> bool:
        """Load the newest complete checkpoint, if any. Returns whether it did."""
        found = checkpoint_dirs(self.run.checkpoints)
        if not found:
            return False
        self._load(found[-1])
        self.steps_per_epoch = self.epoch_steps(self.state.epoch) if self.state.epoch < self.cfg.epochs else 0
        # harmless settings (logging, trackers, checkpoint retention) may differ: the new ones apply from here
        self.state.extra["fingerprint_config"] = self.fingerprint_config
        if self.acc.is_main_process:
            truncate_metrics(self.run.metrics.path, self.state.global_step)
        self.acc.print(
            f"[{self.run.stage}] resumed from {found[-1]} (epoch {self.state.epoch}, "
            f"step {self.state.step_in_epoch}/{self.steps_per_epoch})"
        )
        return True

    def _check_fingerprint(self, saved: dict) -> None:
        if saved.get("fingerprint") != self.fingerprint:
            changed = _changed_keys(saved.get("fingerprint_config", {}), self.fingerprint_config)
            what = (
                f" (changed: {', '.join(changed[:6])}{', …' if len(changed) > 6 else ''})" if changed else ""
            )
            raise UsageError(
                f"{self.run.checkpoints} holds checkpoints of a different {self.run.stage} configuration"
                f"{what}; resume with the same settings, or use a new run.name"
            )

    def save_checkpoint(self) -> None:
        final = self.run.checkpoints / f"step_{self.state.global_step:08d}"
        tmp = self.run.checkpoints / f".tmp_step_{self.state.global_step:08d}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp), safe_serialization=True)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            state = {
                "trainer": self.state.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            }
            atomic_write_text(tmp / TRAINER_STATE, json.dumps(state, default=_no_objects))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)  # atomic: a checkpoint directory is either complete or absent
            for old in checkpoint_dirs(self.run.checkpoints)[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()

    def _load(self, folder: Path) -> None:
        """Weights (safetensors), optimiser and RNG states (accelerate, ``weights_only`` loads) and our
        JSON state. Nothing in a checkpoint folder is unpickled with code execution allowed."""
        state_file = folder / TRAINER_STATE
        if not state_file.is_file():
            raise UsageError(
                f"{folder} has no {TRAINER_STATE} (a checkpoint from an older version, or not ours); "
                "it cannot be resumed safely: delete the checkpoints folder or use a new run.name"
            )
        try:
            state = json.loads(state_file.read_text())
            # the settings first, then the weights: another method's weights would not even fit the model
            self._check_fingerprint(state["trainer"]["extra"])
            self.acc.load_state(str(folder))
        except (pickle.UnpicklingError, RuntimeError, ValueError, OSError, KeyError, TypeError) as exc:
            raise UsageError(
                f"cannot resume from {folder}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}; "
                "delete the checkpoint folder (or use a new run.name)"
            ) from None
        self.state.load_state_dict(state["trainer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        self.resume()
        every = self.cfg.checkpoint_every_steps
        while self.state.epoch < self.cfg.epochs:
            epoch = self.state.epoch
            self.steps_per_epoch = self.epoch_steps(epoch)
            batches = iter(self.make_batches(epoch))
            for _ in range(
                self.state.step_in_epoch
            ):  # replay the deterministic stream up to the resume point
                next(batches)
            bar = tqdm(
                total=self.steps_per_epoch,
                initial=self.state.step_in_epoch,
                leave=False,
                desc=f"{self.desc} epoch {epoch + 1}/{self.cfg.epochs}",
                disable=not (self.progress and self.acc.is_local_main_process),
            )
            self.meter.start_epoch_clock()
            while self.state.step_in_epoch < self.steps_per_epoch:
                self._one_step(next(batches), bar)
                if (
                    every
                    and self.state.global_step % every == 0
                    and self.state.step_in_epoch < self.steps_per_epoch
                ):
                    self.save_checkpoint()
            bar.close()
            metrics = self.on_epoch_end(epoch, self.state) if self.on_epoch_end else {}
            self._report_epoch(epoch, metrics)
            self.state.epoch, self.state.step_in_epoch = epoch + 1, 0
            self.save_checkpoint()
        self.acc.print(
            f"[{self.run.stage}] done: {self.cfg.epochs} epochs, {self.state.global_step} steps in "
            f"{sum(self.meter.epoch_seconds):.1f} s of training in this run"
        )
        return self.state

    def _report_epoch(self, epoch: int, metrics: dict) -> None:
        """The epoch's row in metrics.jsonl, its line in the log, and its metrics to the trackers."""
        seconds, images_per_s = self.meter.end_epoch()
        means = self.meter.means()
        row = {
            **{f"mean_{k}": v for k, v in means.items() if k in ("loss", "loss_clean", "loss_adv")},
            **metrics,
        }
        if metrics:  # epoch rows exist only where an epoch has something of its own (validation, skips)
            self.run.metrics.log(kind="epoch", epoch=epoch + 1, step=self.state.global_step, **metrics)
        best = {
            k: self.state.extra[k] for k in ("best_val_robust_acc", "best_epoch") if k in self.state.extra
        }
        self.acc.print(
            epoch_line(
                self.run.stage,
                epoch + 1,
                self.cfg.epochs,
                means,
                self.optimizer.param_groups[0]["lr"],
                images_per_s * self.acc.num_processes,
                self.meter.eta(self.cfg.epochs - epoch - 1),
                metrics,
                best,
            )
        )
        if self.trackers:
            scalars = {
                f"epoch/{k}": v
                for k, v in {**row, **best, "epoch_seconds": seconds}.items()
                if isinstance(v, (int, float))
            }
            self.acc.log(scalars, step=self.state.global_step)

    def _one_step(self, batch, bar) -> None:
        t0 = time.perf_counter()
        for m in self.models:
            m.train()
        with self.acc.accumulate(*self.models), self.acc.autocast():
            loss, metrics = self.step_fn(batch, self.state)
            if not torch.isfinite(loss):
                raise UsageError(
                    f"[{self.run.stage}] loss is {loss.item()} at step {self.state.global_step}; "
                    "lower the learning rate (the last good checkpoint is kept in "
                    f"{self.run.checkpoints})"
                )
            self.acc.backward(loss)
            self.optimizer.step()
            if self.scheduler is not None and self.acc.sync_gradients:
                if self.schedule_epoch_steps:  # position = epochs done (fractional) in full-epoch steps
                    done = self.state.epoch + (self.state.step_in_epoch + 1) / self.steps_per_epoch
                    self.scheduler.last_epoch = (
                        int(done * self.schedule_epoch_steps) // self.cfg.grad_accum_steps - 1
                    )
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.state.step_in_epoch += 1
        self.state.global_step += 1
        dt = time.perf_counter() - t0
        images_raw = metrics.pop("images", 0)  # this process's images in the step
        if self.state.global_step % self.cfg.log_every_steps == 0:
            images = images_raw * self.acc.num_processes
            row = {
                "kind": "step",
                "epoch": self.state.epoch + 1,
                "step": self.state.global_step,
                "loss": float(loss.detach()),
                "lr": self.optimizer.param_groups[0]["lr"],
                "step_time_s": dt,
                "images_per_s": images / dt if dt > 0 else 0.0,
                **metrics,
            }
            self.run.metrics.log(**row)
            if self.trackers:
                self.acc.log(
                    {k: v for k, v in row.items() if isinstance(v, (int, float))}, step=self.state.global_step
                )
        self.meter.add(float(loss.detach()), metrics, int(images_raw))
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        bar.update(1)
