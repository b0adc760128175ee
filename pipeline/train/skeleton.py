"""The one training skeleton that every training stage and phase runs (pretrain, finetune, LP-AFT's two
phases): this process's share of the batch → ``accelerate`` prepares model, optimiser and LR schedule →
the stage's run folder (``StageRun``) → the resumable :class:`~pipeline.train.loop.Trainer` → fit → wait
for every process. A stage then says only what differs: the model, the batches, the step function and
what it saves.

    ctx = TrainingContext(acc, run_dir, config_yaml, run_cfg, progress, trackers)
    with TrainingRun(ctx, cfg.finetune, "finetune", model, steps, folder="finetune",
                     upstream=..., fingerprint=checkpoint_fingerprint(cfg, "finetune")) as job:
        objective = SupervisedObjective(..., job.model, job.raw, ...)
        state = job.fit(make_batches, objective.step, desc="finetune[aff/trades]")
        ...save into job.run.dir
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from accelerate import Accelerator
from torch import nn

from data.readers import stream_loader
from data.spec import ShardSpec

from ..run import RunConfig, RunDir, StageRun
from .batches import per_process_batch
from .loop import Trainer, TrainLoopConfig, TrainState
from .optim import prepare_training


@dataclass(frozen=True)
class TrainingContext:
    """What every training run of a stage shares: where it runs and how it reports."""

    acc: Accelerator
    run_dir: RunDir
    config_yaml: str  # the resolved experiment config, written into each run folder
    seed: int  # run.seed: data order, augmentation, attacks
    progress: bool = True  # tqdm bars (only on a terminal)
    trackers: bool = False  # experiment trackers are on


class TrainingRun:
    """One resumable training run in its own folder ``<run>/<folder>/``.

    Args:
        loop: the run's loop settings (epochs, global batch, optimiser and schedule).
        key: the config section, for messages (``pretrain.batch_size=…``).
        model: the network to train (prepared here; ``self.model`` is the wrapped one, ``self.raw`` the
            unwrapped one that attacks use).
        steps_per_epoch: full-epoch steps, which the LR schedule is laid out in.
        fingerprint: ``(digest, settings)`` a checkpoint depends on (resume refuses other settings).
        speed: the ``run:`` section whose ``channels_last`` / ``compile`` apply to ``model`` (None: neither).
    """

    def __init__(self, ctx: TrainingContext, loop: TrainLoopConfig, key: str, model: nn.Module,
                 steps_per_epoch: int, *, folder: str, upstream: dict | None, fingerprint: tuple[str, dict],
                 speed: RunConfig | None = None):
        self.ctx, self.loop, self.steps_per_epoch = ctx, loop, steps_per_epoch
        self.batch = per_process_batch(loop.batch_size, ctx.acc, f"{key}.batch_size")
        self.model, self.optimizer, self.scheduler, self.raw = prepare_training(
            ctx.acc, model, loop, steps_per_epoch, speed)
        self.fingerprint = fingerprint
        self.run = StageRun(ctx.run_dir, folder, ctx.config_yaml, upstream, ctx.acc.is_main_process)
        self.state: TrainState | None = None

    def __enter__(self) -> TrainingRun:
        self.run.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.ctx.acc.wait_for_everyone()
        finally:
            self.run.__exit__(*exc)

    def fit(self, make_batches: Callable[[int], Iterable], step_fn: Callable, *, desc: str,
            on_epoch_end: Callable[[int, TrainState], dict] | None = None,
            epoch_steps: Callable[[int], int] | None = None) -> TrainState:
        """Train ``loop.epochs`` epochs (resuming from the newest checkpoint). ``epoch_steps(epoch)``: epochs
        of different lengths (an RCS coreset); the LR schedule then follows the fraction of epochs done."""
        digest, settings = self.fingerprint
        trainer = Trainer(self.ctx.acc, self.run, self.loop, models=[self.model], optimizer=self.optimizer,
                          scheduler=self.scheduler, steps_per_epoch=epoch_steps or self.steps_per_epoch,
                          schedule_epoch_steps=self.steps_per_epoch if epoch_steps else 0,
                          make_batches=make_batches, step_fn=step_fn, on_epoch_end=on_epoch_end,
                          progress=self.ctx.progress, desc=desc, trackers=self.ctx.trackers,
                          fingerprint=digest, fingerprint_config=settings)
        self.state = trainer.fit()
        return self.state


def shard_batches(spec: ShardSpec, transform: Callable[[int], Callable], *, batch: int, seed: int,
                  acc: Accelerator, labels: bool, keep: Callable[[int], frozenset[str] | None] | None = None,
                  skipped: dict | None = None) -> Callable[[int], Iterable]:
    """``epoch -> batches`` on ``acc.device`` from the training shards: the outputs of ``transform(epoch)``
    (the epoch's augmentation: DynACL anneals it) for each image, with the labels last when ``labels``
    (pretraining never reads them). ``keep(epoch)``: the sample ids an epoch streams (an RCS coreset;
    None = all). Skipped bad samples are added to ``skipped["skipped"]``."""

    def make_batches(epoch: int):
        loader = stream_loader(spec, transform(epoch), batch_size=batch, seed=seed, epoch=epoch, rank=acc.process_index,
                               need_label=labels, keep=keep(epoch) if keep else None)
        for *tensors, y, n_bad in loader:
            if skipped is not None:
                skipped["skipped"] = skipped.get("skipped", 0) + n_bad
            out = tuple(t.to(acc.device, non_blocking=True) for t in tensors)
            yield (*out, y.to(acc.device, non_blocking=True)) if labels else out

    return make_batches
