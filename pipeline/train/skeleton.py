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

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn

from data.epochs import epoch_steps, exact_loader, index_shards
from data.readers import stream_loader
from data.spec import ShardSpec

from ..errors import DataError
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

    def __init__(
        self,
        ctx: TrainingContext,
        loop: TrainLoopConfig,
        key: str,
        model: nn.Module,
        steps_per_epoch: int,
        *,
        folder: str,
        upstream: dict | None,
        fingerprint: tuple[str, dict],
        speed: RunConfig | None = None,
    ):
        self.ctx, self.loop, self.steps_per_epoch = ctx, loop, steps_per_epoch
        self.batch = per_process_batch(loop.batch_size, ctx.acc, f"{key}.batch_size")
        self.model, self.optimizer, self.scheduler, self.raw = prepare_training(
            ctx.acc, model, loop, steps_per_epoch, speed
        )
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

    def fit(
        self,
        make_batches: Callable[[int], Iterable],
        step_fn: Callable,
        *,
        desc: str,
        on_epoch_end: Callable[[int, TrainState], dict] | None = None,
        epoch_steps: Callable[[int], int] | None = None,
    ) -> TrainState:
        """Train ``loop.epochs`` epochs (resuming from the newest checkpoint). ``epoch_steps(epoch)``: epochs
        of different lengths (an RCS coreset); the LR schedule then follows the fraction of epochs done."""
        digest, settings = self.fingerprint
        coverage: EpochCoverage | None = getattr(make_batches, "coverage", None)
        if coverage is not None:  # every epoch's row says how many (distinct) samples it trained on
            stage_end = on_epoch_end

            def on_epoch_end(epoch: int, state: TrainState) -> dict:
                return {**coverage.metrics(self.ctx.acc), **(stage_end(epoch, state) if stage_end else {})}

        trainer = Trainer(
            self.ctx.acc,
            self.run,
            self.loop,
            models=[self.model],
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            steps_per_epoch=epoch_steps or self.steps_per_epoch,
            schedule_epoch_steps=self.steps_per_epoch if epoch_steps else 0,
            make_batches=make_batches,
            step_fn=step_fn,
            on_epoch_end=on_epoch_end,
            progress=self.ctx.progress,
            desc=desc,
            trackers=self.ctx.trackers,
            fingerprint=digest,
            fingerprint_config=settings,
        )
        self.state = trainer.fit()
        return self.state


class EpochCoverage:
    """Which samples an epoch trained on, for its row in ``metrics.jsonl``: ``samples`` (trained on, summed over
    processes; padding of the last batch counts) and ``distinct_samples`` (different samples among them). With
    exact epochs both equal the split's (or coreset's) size, which is how a user checks a run without code."""

    def __init__(self):
        self.epoch, self.seen = -1, []

    def start(self, epoch: int) -> None:
        self.epoch, self.seen = epoch, []

    def add(self, ids: torch.Tensor) -> None:
        self.seen.append(ids.detach().cpu().to(torch.int64))

    def metrics(self, acc: Accelerator) -> dict:
        mine = torch.cat(self.seen) if self.seen else torch.empty(0, dtype=torch.int64)
        every = torch.cat(gather_object([mine]) if acc.num_processes > 1 else [mine])
        return {"samples": int(every.numel()), "distinct_samples": int(torch.unique(every).numel())}


def _id_hash(sample_ids: list[str]) -> torch.Tensor:
    """64-bit hashes of sample ids (a resampled stream has no positions): distinct ids, distinct numbers."""
    return torch.tensor(
        [
            int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little", signed=True)
            for i in sample_ids
        ],
        dtype=torch.int64,
    )


class ShardBatches:
    """``epoch -> batches`` on ``acc.device`` from the training shards: the outputs of ``transform(epoch)`` (the
    epoch's augmentation: DynACL anneals it) for each image, with the labels last when ``labels``
    (pretraining never reads them).

    ``data.sampling=exact`` (default): each epoch visits every sample once (``keep(epoch)``: the sample ids of
    an RCS coreset instead), ``loop.drop_last`` decides the partial last batch (:mod:`data.epochs`);
    ``resampled``: the endless stream of :func:`data.readers.stream_loader`. Skipped bad samples are counted
    in ``self.skipped``; ``self.coverage`` records what each epoch trained on."""

    def __init__(
        self,
        spec: ShardSpec,
        transform: Callable[[int], Callable],
        *,
        batch: int,
        seed: int,
        acc: Accelerator,
        labels: bool,
        drop_last: bool = False,
        samples_per_epoch: int = 0,
        keep: Callable[[int], frozenset[str] | None] | None = None,
    ):
        self.spec, self.transform, self.batch, self.seed, self.acc = spec, transform, batch, seed, acc
        self.labels, self.drop_last, self.limit, self.keep = labels, drop_last, samples_per_epoch, keep
        self.skipped, self.coverage = 0, EpochCoverage()
        self.index = index_shards(spec) if spec.sampling == "exact" else None
        self._position = None  # sample id -> position in the index (built when a coreset first needs it)

    def _positions(self, keep: frozenset[str] | None) -> np.ndarray | None:
        if keep is None:
            return None
        if self._position is None:
            self._position = {sid: i for i, sid in enumerate(self.index.sample_ids())}
        return np.sort(np.fromiter((self._position[sid] for sid in keep), dtype=np.int64, count=len(keep)))

    def steps(self, n: int) -> int:
        """Steps of an exact epoch over ``n`` samples (a coreset's length)."""
        return epoch_steps(n, self.batch * self.acc.num_processes, self.acc.num_processes, self.drop_last)

    def __call__(self, epoch: int):
        self.coverage.start(epoch)
        keep = self.keep(epoch) if self.keep else None
        if self.index is None:
            yield from self._resampled(epoch, keep)
            return
        acc = self.acc
        loader = exact_loader(
            self.index,
            self.spec,
            self.transform(epoch),
            global_batch=self.batch * acc.num_processes,
            world=acc.num_processes,
            rank=acc.process_index,
            seed=self.seed,
            epoch=epoch,
            drop_last=self.drop_last,
            need_label=self.labels,
            positions=self._positions(keep),
            limit=self.limit,
        )
        for tensors, n_bad, positions in loader:
            self.skipped += n_bad
            self.coverage.add(positions)
            if tensors is None:  # a step must run on every process: an empty batch cannot be skipped
                raise DataError(
                    f"every sample of a training batch in epoch {epoch + 1} failed to decode "
                    f"({n_bad} skipped); the shards are unusable: re-create them"
                )
            yield self._to_device(tensors)

    def _resampled(self, epoch: int, keep):
        loader = stream_loader(
            self.spec,
            self.transform(epoch),
            batch_size=self.batch,
            seed=self.seed,
            epoch=epoch,
            rank=self.acc.process_index,
            need_label=self.labels,
            keep=keep,
            with_ids=True,
        )
        for *tensors, y, n_bad, ids in loader:
            self.skipped += n_bad
            self.coverage.add(_id_hash(ids))
            yield self._to_device((*tensors, y))

    def _to_device(self, tensors: tuple) -> tuple:
        *images, y = (t.to(self.acc.device, non_blocking=True) for t in tensors)
        return (*images, y) if self.labels else tuple(images)
