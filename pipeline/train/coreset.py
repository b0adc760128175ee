"""RCS for the pretrain stage: which samples each epoch streams, and when a selection runs
(``pretrain.rcs``; the selection itself is ``pipeline/objectives/rcs.py``).

The coreset is a list of sample ids applied to the streaming reader (``stream_loader(keep=...)``), not a
materialised copy: the shards stay the one copy of the data, a selection costs a JSON file, and skipped
samples are dropped before decoding (their cost is reading the tar bytes). A selection is saved as
``<run>/pretrain/coreset/selection_epoch_NNNN.json`` before the epoch trains, so a resumed run streams exactly
the same subset. Under several processes the candidate batches are split over the ranks, their gradient
summaries gathered, and every rank runs the same greedy search (seeded by run seed and epoch, on the same
validation images), so all ranks agree without another exchange.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from data.epochs import epoch_steps
from data.readers import keyed_pass, list_sample_ids, to_tensor
from data.spec import ShardSpec

from ..errors import UsageError
from ..io import atomic_write_text
from ..objectives.rcs import CoresetSelector, RCSConfig
from ..seeds import derive_seed


class Coreset:
    """The RCS schedule of one pretraining run. ``steps(epoch)`` (the trainer's steps per epoch) runs the
    epoch's selection when one is due and not saved yet; ``keep(epoch)`` is what the epoch streams."""

    def __init__(
        self,
        cfg: RCSConfig,
        spec: ShardSpec,
        ids: list[str],
        *,
        seed: int,
        world_batch: int,
        folder: Path,
        acc: Accelerator,
        drop_last: bool = False,
    ):
        self.cfg, self.spec, self.seed, self.world_batch, self.acc = cfg, spec, seed, world_batch, acc
        self.drop_last = drop_last
        self.folder = Path(folder)
        order = np.random.default_rng(seed).permutation(len(ids))
        n_val = max(1, round(len(ids) * cfg.val_fraction))  # the reference's 1% of the training set
        self.val_ids = frozenset(ids[i] for i in order[:n_val])
        # what full epochs train on and selections pick from: the rest (ACL_RCS.py), or every sample
        # (DynACL_RCS.py, cfg.train_on_validation); the budget counts the rest either way (RCS.py:169 sizes it
        # from the 99% set the Coreset is built with)
        held_out = frozenset(ids) - self.val_ids
        self.train_ids = frozenset(ids) if cfg.train_on_validation else held_out
        self.budget = int(len(held_out) * cfg.fraction)
        self.n_pick = self.budget // world_batch  # RCS.py: batch_num = int(budget / batch_size)
        if self.n_pick < 1 or len(self.train_ids) // world_batch < 1:
            raise UsageError(
                f"pretrain.rcs.fraction={cfg.fraction} of {len(self.train_ids)} samples is less than one "
                f"batch of pretrain.batch_size={world_batch}; raise the fraction or lower the batch size"
            )
        # the reference's Coreset starts from a random subset (used between warm-up and the first selection)
        pick = np.random.default_rng(seed + 1).choice(sorted(self.train_ids), size=self.budget, replace=False)
        self.subset, self.subset_epoch = frozenset(pick.tolist()), -1
        self.selector_args: tuple | None = None
        if acc.is_main_process:  # the validation images (also trained on under train_on_validation)
            atomic_write_text(self.folder / "validation.json", json.dumps(sorted(self.val_ids)))

    @classmethod
    def open(cls, cfg: RCSConfig, spec: ShardSpec, **kwargs) -> Coreset:
        return cls(cfg, spec, list_sample_ids(spec), **kwargs)

    def _steps(self, n: int) -> int:
        """Steps of an epoch over ``n`` samples: exact (the partial last batch kept unless drop_last), or full
        batches of the resampled stream."""
        if self.spec.sampling == "exact":
            return epoch_steps(n, self.world_batch, self.acc.num_processes, self.drop_last)
        return n // self.world_batch

    @property
    def full_steps(self) -> int:
        return self._steps(len(self.train_ids))

    def bind(self, backbone, head, attack, temperature: float, views) -> None:
        """What a selection needs once the model exists; ``views(epoch)`` is the epoch's two-view transform."""
        self.selector_args, self.views = (backbone, head, attack, self.cfg, temperature), views

    def keep(self, epoch: int) -> frozenset[str]:
        return self._subset(epoch) if self.cfg.on_subset(epoch) else self.train_ids

    def steps(self, epoch: int) -> int:
        return max(1, self._steps(len(self.keep(epoch))))

    def _file(self, epoch: int) -> Path:
        return self.folder / f"selection_epoch_{epoch + 1:04d}.json"

    def _subset(self, epoch: int) -> frozenset[str]:
        last = max((e for e in range(epoch + 1) if self.cfg.selects(e)), default=None)
        if last is None or last == self.subset_epoch:
            return self.subset
        if self._file(last).is_file():  # selected before (this run, or before a resume): stream the same
            self.subset = frozenset(json.loads(self._file(last).read_text())["ids"])
        else:
            self.subset = self._select(last)
        self.subset_epoch = last
        return self.subset

    def _select(self, epoch: int) -> frozenset[str]:
        t0, device = time.perf_counter(), self.acc.device
        selector = CoresetSelector(*self.selector_args)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the training RNG stream does not see the selection
            mine = []
            for i, (ids, v1, v2) in enumerate(self._candidates(epoch)):
                if i % self.acc.num_processes == self.acc.process_index:
                    # seeded per candidate: the same selection whatever the number of processes
                    torch.manual_seed(derive_seed(self.seed, epoch * 1_000_003 + i, "rcs"))
                    grads = selector.gradients(v1.to(device), v2.to(device))
                    mine.append((i, ids, [g.cpu() for g in grads]))
            every = sorted(gather_object(mine) if self.acc.num_processes > 1 else mine, key=lambda t: t[0])
            torch.manual_seed(derive_seed(self.seed, epoch, "rcs-val"))
            val = self._validation().to(device)
            picked = selector.select_from([[g.to(device) for g in t[2]] for t in every], val, self.n_pick)
        ids = [s for c in picked for s in every[c][1]]
        if self.acc.is_main_process:
            atomic_write_text(
                self._file(epoch),
                json.dumps(
                    {
                        "epoch": epoch + 1,
                        "candidates": len(every),
                        "picked": picked,
                        "seconds": time.perf_counter() - t0,
                        "gains": [g.tolist() for g in selector.gains],
                        "ids": ids,
                    }
                ),
            )
        self.acc.print(
            f"[pretrain] RCS epoch {epoch + 1}: {len(ids)} of {len(self.train_ids)} samples from "
            f"{len(picked)}/{len(every)} batches in {time.perf_counter() - t0:.1f} s"
        )
        self.acc.wait_for_everyone()
        return frozenset(ids)

    def _candidates(self, epoch: int):
        """Full batches only. The reference's DataLoader keeps the short last batch as a candidate; its
        gradient summary is a mean over fewer pairs, larger, and the greedy search then favours it — on a
        small set one pick of 23 images instead of fraction·N (seen on the quickstart's digits). A short
        remainder is still trained on in every full epoch."""
        batches = keyed_pass(
            self.spec,
            self.views(epoch),
            self.train_ids,
            batch_size=self.world_batch,
            seed=self.seed,
            epoch=epoch,
        )
        return (b for b in batches if len(b[0]) == self.world_batch)

    def _validation(self) -> torch.Tensor:
        batches = keyed_pass(
            self.spec,
            lambda img: (to_tensor(img),),
            self.val_ids,
            batch_size=len(self.val_ids),
            seed=self.seed,
            epoch=0,
        )
        return next(iter(batches))[1]  # un-augmented, as the reference's tfs_test


def open_coreset(
    cfg: RCSConfig,
    spec: ShardSpec,
    model,
    views,
    *,
    attack,
    temperature: float,
    seed: int,
    world_batch: int,
    acc: Accelerator,
    folder: Path,
    drop_last: bool = False,
) -> Coreset | None:
    """The run's coreset schedule, or None when ``cfg.fraction`` is 0. ``model``: the
    :class:`ContrastiveModel` (its backbone and head are scored in place, also once ``accelerate`` wraps it);
    ``views(epoch)``: the epoch's two-view transform; ``attack``/``temperature``: the pretraining's."""
    if not cfg.fraction:
        return None
    coreset = Coreset.open(
        cfg, spec, seed=seed, world_batch=world_batch, acc=acc, folder=folder, drop_last=drop_last
    )
    coreset.bind(model.backbone, model.head, attack, temperature, views)
    return coreset
