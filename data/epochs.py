"""Exact epochs over local shards: every sample of a split (or of a coreset) exactly once per epoch, in an
order seeded by (run seed, epoch), as every reference's ``DataLoader(train_set, shuffle=True)`` does.

How: the shards are indexed once (tar headers only: each sample's key and the offset and size of its image
and label members; nothing is decoded), so a sample is random access (``os.pread``). An epoch is one seeded
permutation of the whole split — mixed across shards completely, where a streaming shuffle buffer mixes
only within its window — cut into global batches; each process takes its contiguous share of every global
batch, so a step sees the same samples whatever the process count. The last partial batch is kept
(``drop_last=False``, the references') or dropped; kept, it is padded with the epoch's first samples to equal
shares of at least two samples per process, so that every process runs the same number of steps (DDP must never wait on
a process that ran out) — the only samples seen twice, and the per-epoch ``samples`` / ``distinct_samples``
metrics say so.

Why not webdataset's ``wids``: its samplers shuffle within chunks of consecutive samples (not a full
permutation), and its dataset keeps a small LRU of open shards that it re-indexes when it reopens one —
with a full permutation that is a re-index per sample. The index here is a few numbers per sample, held
once per process.

Remote or ``pipe:`` shards cannot be read by offset: they use the resampled stream
(``data.sampling=resampled``, :func:`data.readers.stream_loader`).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.errors import DataError
from pipeline.seeds import derive_seed

from .index import IMAGE_EXTS
from .readers import _parse_bytes, _seeded, sample_seed
from .spec import ShardSpec


@dataclass(frozen=True)
class SampleIndex:
    """Where each sample of a split is: ``shard[i]`` (into ``urls``), ``key[i]``, image member
    ``(image_offset[i], image_size[i], image_ext[i])`` and label member ``(label_offset[i], label_size[i])``
    (size −1: no label). Positions are in shard order."""

    urls: tuple[str, ...]
    shard: np.ndarray
    key: tuple[str, ...]
    image_offset: np.ndarray
    image_size: np.ndarray
    image_ext: tuple[str, ...]
    label_offset: np.ndarray
    label_size: np.ndarray

    def __len__(self) -> int:
        return len(self.key)

    def sample_ids(self) -> list[str]:
        """The ids :func:`data.readers.sample_id` gives the same samples (``<url>#<key>``)."""
        return [f"{self.urls[s]}#{k}" for s, k in zip(self.shard.tolist(), self.key, strict=True)]


def index_shards(spec: ShardSpec) -> SampleIndex:
    """Read the tar headers of every shard (member data is skipped, not read). A shard that cannot be read to
    its end is a one-line error, or with ``data.on_bad_sample=skip`` indexed up to where it breaks."""
    rows: list[tuple] = []
    for s, url in enumerate(spec.urls):
        members: dict[str, dict] = {}
        try:
            with tarfile.open(url, mode="r:") as tf:  # random-access mode: headers only
                for m in tf:
                    if m.isfile():
                        directory, _, base = m.name.rpartition("/")
                        stem, _, ext = base.partition(".")
                        key = f"{directory}/{stem}" if directory else stem
                        members.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
        except (tarfile.TarError, OSError) as exc:
            if spec.on_bad == "error":
                raise DataError(
                    f"shard {url} cannot be indexed ({type(exc).__name__}: {str(exc)[:80]}); re-create it "
                    "or set data.on_bad_sample=skip"
                ) from None
        for key, exts in members.items():
            image = next((e for e in IMAGE_EXTS if e in exts), None)
            if image is None:
                continue
            label = exts.get("cls", (0, -1))
            rows.append((s, key, *exts[image], image, *label))
    if not rows:
        raise DataError(
            f"no samples with an image in {spec.urls[0]} ({len(spec.urls)} shards); check the shards"
        )
    shard, key, off, size, ext, loff, lsize = zip(*rows, strict=True)
    return SampleIndex(
        spec.urls,
        np.asarray(shard, np.int32),
        key,
        np.asarray(off, np.int64),
        np.asarray(size, np.int64),
        ext,
        np.asarray(loff, np.int64),
        np.asarray(lsize, np.int64),
    )


def epoch_steps(n: int, global_batch: int, world: int, drop_last: bool) -> int:
    """Steps of an exact epoch over ``n`` samples: full batches, plus the partial last one when kept."""
    full, rest = divmod(n, global_batch)
    return full + int(not drop_last and rest > 0)


def epoch_plan(
    n: int,
    *,
    global_batch: int,
    world: int,
    rank: int,
    seed: int,
    epoch: int,
    drop_last: bool,
    positions: np.ndarray | None = None,
    limit: int = 0,
) -> list[np.ndarray]:
    """This process's batches (positions into the index) of one epoch.

    ``positions``: the samples the epoch visits (a coreset; default all ``n``); ``limit``: only the first
    ``limit`` of the epoch's permutation (``samples_per_epoch``)."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, "epoch-order"))
    pool = np.arange(n) if positions is None else np.asarray(positions)
    order = pool[torch.randperm(len(pool), generator=g).numpy()]
    return split_batches(
        order[:limit] if limit else order,
        global_batch=global_batch,
        world=world,
        rank=rank,
        drop_last=drop_last,
    )


def split_batches(
    order: np.ndarray, *, global_batch: int, world: int, rank: int, drop_last: bool
) -> list[np.ndarray]:
    """An epoch's order cut into global batches, this process's contiguous share of each (module docstring)."""
    batches = []
    for step in range(epoch_steps(len(order), global_batch, world, drop_last)):
        b = order[step * global_batch : (step + 1) * global_batch]
        # the partial last batch: padded with the epoch's first samples to equal shares of at least 2
        # (BatchNorm cannot train on a single sample)
        share = max(-(-len(b) // world), min(2, global_batch // world))
        if len(b) < share * world:
            b = np.concatenate([b, order[: share * world - len(b)]])
        batches.append(b[rank * share : (rank + 1) * share])
    return batches


class IndexedShards(torch.utils.data.Dataset):
    """Random access to an indexed split: item ``i`` is ``(*transform(image), label, bad, i)``; ``bad`` = 1
    (and no tensors) for a sample that does not decode under ``data.on_bad_sample=skip``."""

    def __init__(
        self,
        index: SampleIndex,
        spec: ShardSpec,
        transform: Callable,
        *,
        seed: int,
        epoch: int,
        need_label: bool,
    ):
        self.index, self.spec, self.transform = index, spec, transform
        self.seed, self.epoch, self.need_label = seed, epoch, need_label
        self._fds: dict[int, int] = {}  # per worker process: open shard files

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, shard: int, offset: int, size: int) -> bytes:
        fd = self._fds.get(shard)
        if fd is None:
            if len(self._fds) >= 64:  # bounded: a split may have thousands of shards
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = self._fds[shard] = os.open(self.index.urls[shard], os.O_RDONLY)
        return os.pread(fd, size, offset)

    def __getitem__(self, i: int):
        ix, spec = self.index, self.spec
        shard = int(ix.shard[i])
        try:
            data = self._read(shard, int(ix.image_offset[i]), int(ix.image_size[i]))
            label_bytes = (
                self._read(shard, int(ix.label_offset[i]), int(ix.label_size[i]))
                if ix.label_size[i] >= 0
                else None
            )
            img, label = _parse_bytes(data, label_bytes, spec.image_size, spec.wrong_size, self.need_label)
        except Exception as exc:
            if spec.on_bad == "error":
                raise DataError(
                    f"sample {ix.key[i]} in {ix.urls[shard]}: {exc}; fix the shard or set "
                    "data.on_bad_sample=skip"
                ) from None
            return None, i
        out = _seeded(lambda: self.transform(img), sample_seed(self.seed, self.epoch, ix.key[i]))
        return (*out, label), i

    def __del__(self):
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass


def _collate(items):
    """[(sample | None, position)] -> (*stacked tensors, labels, bad count, positions of the good samples)."""
    good = [(s, i) for s, i in items if s is not None]
    bad = len(items) - len(good)
    if not good:
        return None, bad, torch.empty(0, dtype=torch.long)
    cols = list(zip(*[s for s, _ in good], strict=True))
    tensors = [torch.stack(c) for c in cols[:-1]]
    labels = torch.tensor(cols[-1], dtype=torch.long)
    return (*tensors, labels), bad, torch.tensor([i for _, i in good], dtype=torch.long)


def exact_loader(
    index: SampleIndex,
    spec: ShardSpec,
    transform: Callable,
    *,
    global_batch: int,
    world: int,
    rank: int,
    seed: int,
    epoch: int,
    drop_last: bool,
    need_label: bool = False,
    positions: np.ndarray | None = None,
    limit: int = 0,
):
    """One exact epoch for this process: batches ``((*transform outputs, labels), bad count, positions)``
    (``None`` instead of the tensors when every sample of a batch was bad and skipped)."""
    plan = epoch_plan(
        len(index),
        global_batch=global_batch,
        world=world,
        rank=rank,
        seed=seed,
        epoch=epoch,
        drop_last=drop_last,
        positions=positions,
        limit=limit,
    )
    dataset = IndexedShards(index, spec, transform, seed=seed, epoch=epoch, need_label=need_label)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[b.tolist() for b in plan],
        collate_fn=_collate,
        num_workers=spec.num_workers,
        generator=torch.Generator().manual_seed(
            seed
        ),  # creating the iterator must not draw from the global RNG
        prefetch_factor=4 if spec.num_workers else None,
        persistent_workers=False,
    )
