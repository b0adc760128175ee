"""Readers over webdataset shards.

* :func:`stream_loader` — an endless, resampled, seeded stream for training (pretrain views or
  augmented labeled samples). Each (process, worker) draws shards with its own seed, so several
  processes and workers never need a shared shard split; each sample's augmentation is seeded by
  (run seed, epoch, sample key), so a stream is reproducible whatever the worker count.
* :func:`load_labeled` — a finite split in deterministic order, as tensors (validation and test sets
  are small enough to hold: 10,000 CIFAR images are 30 MB as uint8).
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Callable

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from pipeline.errors import DataError

from .images import WrongSize, fit_image
from .spec import ShardSpec
from .urls import expand_urls as expand_urls  # re-exported: readers and URLs go together

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm")
MAX_CONSECUTIVE_BAD = 1000  # a stream that yields nothing but bad samples stops instead of spinning


def decode_image(data: bytes, size: int, wrong_size: str) -> Image.Image:
    """Bytes → RGB PIL image of ``size``×``size``. Raises ValueError for a wrong size (with
    ``wrong_size=error``), PIL's own error for bytes that do not decode."""
    try:
        return fit_image(data, size, wrong_size)[0]
    except WrongSize as exc:
        raise ValueError(f"{exc} (set data.wrong_size=resize to resize)") from None


def to_tensor(img: Image.Image) -> torch.Tensor:
    # (H, W, 3) uint8 -> (3, H, W) float in [0,1]
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def _parse_bytes(
    data: bytes, label: bytes | int | None, size: int, wrong_size: str, need_label: bool
) -> tuple[Image.Image, int]:
    """An image member's bytes and the ``.cls`` member (bytes, an int, or None) → (RGB image, label or −1)."""
    if label is None:
        if need_label:
            raise ValueError("labeled sample without .cls")
        value = -1
    else:
        value = int(label.decode().strip() if isinstance(label, bytes) else label)
    if need_label and value < 0:
        raise ValueError(f"negative label {value}")
    return decode_image(data, size, wrong_size), value


def _parse(sample: dict, size: int, wrong_size: str, need_label: bool) -> tuple[Image.Image, int]:
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise ValueError("no image (.png/.jpg/...) in the sample")
    return _parse_bytes(sample[key], sample.get("cls"), size, wrong_size, need_label)


def sample_seed(seed: int, epoch: int, key: str) -> int:
    return zlib.crc32(f"{seed}/{epoch}/{key}".encode())


def _seeded(fn: Callable, seed: int):
    """Run ``fn`` with torch/numpy/python RNGs seeded by ``seed``, restoring the callers' RNG state
    (the training loop's RNG must not depend on how many samples a worker decoded)."""
    t, n, p = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed), np.random.seed(seed % 2**32), random.seed(seed)
    try:
        return fn()
    finally:
        torch.set_rng_state(t), np.random.set_state(n), random.setstate(p)


def _transform_stream(
    src, transform, size, wrong_size, need_label, on_bad, seed, epoch, state, with_ids=False
):
    """Decode + transform; bad samples raise DataError or are dropped and counted (``bad`` rides on the
    next good sample, so the count reaches the main process even from DataLoader workers)."""
    bad = 0
    for sample in src:
        try:
            img, label = _parse(sample, size, wrong_size, need_label)
        except Exception as exc:
            where = f"sample {sample.get('__key__')} in {sample.get('__url__')}"
            if on_bad == "error":
                raise DataError(f"{where}: {exc}; fix the shard or set data.on_bad_sample=skip") from None
            bad += 1
            if bad + state["bad_shards"] >= MAX_CONSECUTIVE_BAD:
                raise DataError(
                    f"{MAX_CONSECUTIVE_BAD} bad samples in a row (last: {where}); the shards are unusable"
                ) from None
            continue
        out = _seeded(lambda img=img: transform(img), sample_seed(seed, epoch, sample["__key__"]))
        yield (*out, label, bad + state["bad_shards"], *([sample_id(sample)] if with_ids else []))
        bad, state["bad_shards"] = 0, 0


def _collate(batch):
    """[(t1, .., tk, label, bad)] -> (stacked t1, .., stacked tk, labels, bad count)."""
    cols = list(zip(*batch, strict=True))
    tensors = [torch.stack(c) for c in cols[:-2]]
    return (*tensors, torch.tensor(cols[-2], dtype=torch.long), int(sum(cols[-1])))


def _collate_with_ids(batch):
    """[(t1, .., tk, label, bad, id)] -> (stacked t1, .., stacked tk, labels, bad count, ids)."""
    return (*_collate([row[:-1] for row in batch]), [row[-1] for row in batch])


def _worker_seed(seed: int, epoch: int, rank: int) -> int:
    info = torch.utils.data.get_worker_info()
    return seed * 1_000_003 + epoch * 10_007 + rank * 101 + (info.id if info else 0)


def _shard_handler(on_bad: str, state: dict):
    def handle(exc):
        if on_bad == "error":
            raise DataError(
                f"unreadable shard data ({type(exc).__name__}: {str(exc)[:100]}); "
                "re-create the shard or set data.on_bad_sample=skip"
            ) from None
        state["bad_shards"] += 1
        return True

    return handle


def sample_id(sample: dict) -> str:
    """A sample's identity across shards: webdataset keys are unique within a tar only."""
    return f"{sample.get('__url__')}#{sample['__key__']}"


def _has_image(sample: dict) -> bool:
    return any(k in sample for k in IMAGE_KEYS)


def list_sample_ids(spec: ShardSpec) -> list[str]:
    """The ids (:func:`sample_id`) of the samples with an image member, in shard order; nothing is decoded."""
    state = {"bad_shards": 0}
    samples = wds.DataPipeline(
        wds.SimpleShardList(list(spec.urls)),
        wds.tarfile_to_samples(handler=_shard_handler(spec.on_bad, state)),
    )
    return [sample_id(s) for s in samples if _has_image(s)]


def _keep_only(src, keep: frozenset[str]):
    for sample in src:  # before decoding: a skipped sample costs its tar bytes only
        if sample_id(sample) in keep:
            yield sample


def keyed_pass(
    spec: ShardSpec,
    transform: Callable,
    keep: frozenset[str],
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle_buffer: int = 2000,
):
    """One finite pass over the samples in ``keep``, shuffled (seeded buffer of ``shuffle_buffer``; 1 = shard
    order), in batches ``(ids, *transform outputs)``; the last batch may be short. Coreset selection scores
    these batches."""
    state = {"bad_shards": 0}
    size, wrong_size = spec.image_size, spec.wrong_size
    samples = wds.DataPipeline(
        wds.SimpleShardList(list(spec.urls)),
        wds.tarfile_to_samples(handler=_shard_handler(spec.on_bad, state)),
        functools.partial(_keep_only, keep=keep),
        wds.shuffle(
            shuffle_buffer, initial=min(shuffle_buffer, 100), rng=random.Random(seed * 7919 + epoch * 31)
        ),
    )
    ids, rows = [], []
    for sample in samples:
        img, _ = _parse(sample, size, wrong_size, need_label=False)
        ids.append(sample_id(sample))
        rows.append(_seeded(lambda img=img: transform(img), sample_seed(seed, epoch, sample["__key__"])))
        if len(ids) == batch_size:
            yield ids, *(torch.stack(c) for c in zip(*rows, strict=True))
            ids, rows = [], []
    if ids:
        yield ids, *(torch.stack(c) for c in zip(*rows, strict=True))


def stream_loader(
    spec: ShardSpec,
    transform: Callable,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int,
    need_label: bool = False,
    keep: frozenset[str] | None = None,
    with_ids: bool = False,
) -> wds.WebLoader:
    """Endless batches ``(*transform outputs, labels, bad_count)`` for one process.

    ``transform(img) -> tuple of tensors`` (two SimCLR views, or one augmented image). ``keep``: only the
    samples with these ids (:func:`sample_id`; a coreset), filtered before decoding. ``with_ids``: each batch
    also carries its samples' ids (last).
    """
    state = {"bad_shards": 0}  # per worker process: counts unreadable tar members
    size, wrong_size, on_bad, num_workers = spec.image_size, spec.wrong_size, spec.on_bad, spec.num_workers
    pipeline = wds.DataPipeline(
        wds.ResampledShards(
            list(spec.urls),
            seed=0,
            deterministic=True,
            worker_seed=functools.partial(_worker_seed, seed, epoch, rank),
        ),
        wds.tarfile_to_samples(handler=_shard_handler(on_bad, state)),
        *([functools.partial(_keep_only, keep=keep)] if keep is not None else []),
        wds.shuffle(
            spec.shuffle_buffer,
            initial=min(spec.shuffle_buffer, 100),
            rng=random.Random(seed * 7919 + epoch * 31 + rank),
        ),
        functools.partial(
            _transform_stream,
            transform=transform,
            size=size,
            wrong_size=wrong_size,
            need_label=need_label,
            on_bad=on_bad,
            seed=seed,
            epoch=epoch,
            state=state,
            with_ids=with_ids,
        ),
        wds.batched(batch_size, collation_fn=_collate_with_ids if with_ids else _collate, partial=False),
    )
    # an own generator: creating the DataLoader iterator would otherwise draw from the global RNG, and a
    # resumed run (which creates it at another point of the RNG stream) would diverge
    return wds.WebLoader(
        pipeline,
        batch_size=None,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
    )


def load_labeled(
    spec: ShardSpec, *, num_classes: int, limit: int = 0, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A whole labeled split in shard order: (x uint8 (N,3,H,W), y long (N,), skipped count).

    ``keep``: positions (in shard order, counting usable samples) to return, in the order given; only
    those are held in memory. Positions beyond the split's end are dropped.
    """
    state, urls = {"bad_shards": 0}, list(spec.urls)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        wds.tarfile_to_samples(handler=_shard_handler(spec.on_bad, state)),
        functools.partial(
            _transform_stream,
            transform=lambda img: (torch.from_numpy(np.asarray(img).copy()),),
            size=spec.image_size,
            wrong_size=spec.wrong_size,
            need_label=True,
            on_bad=spec.on_bad,
            seed=0,
            epoch=0,
            state=state,
        ),
    )
    xs, ys, skipped = [], [], 0
    wanted = None if keep is None else {int(p): i for i, p in enumerate(keep.tolist())}
    kept: dict[int, tuple] = {}
    for position, (img, label, bad) in enumerate(pipeline):
        if label >= num_classes:
            raise DataError(
                f"label {label} in {urls[0]}... is >= data.num_classes={num_classes}; "
                "set data.num_classes to the real number of classes or fix the labels"
            )
        skipped += bad
        if wanted is not None:
            if position in wanted:
                kept[wanted[position]] = (img, label)
            continue
        xs.append(img)
        ys.append(label)
        if limit and len(xs) >= limit:
            break
    if wanted is not None:
        xs, ys = [kept[i][0] for i in sorted(kept)], [kept[i][1] for i in sorted(kept)]
    skipped += state["bad_shards"]
    if not xs:
        raise DataError(f"no usable samples in {urls[0]} ({len(urls)} shards); check the shards")
    x = torch.stack(xs).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)
    return x, torch.tensor(ys, dtype=torch.long), skipped


def held_out_images(spec: ShardSpec, n: int) -> torch.Tensor:
    """The first ``n`` images of ``spec`` in shard order, uint8 (N, 3, H, W): FARE's fixed report set."""
    keep = frozenset(list_sample_ids(spec)[:n]) if n else frozenset()
    as_uint8 = lambda img: (torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1),)  # noqa: E731
    batches = keyed_pass(spec, as_uint8, keep, batch_size=256, seed=0, epoch=0, shuffle_buffer=1)
    chunks = [x for _ids, x in batches]
    return (
        torch.cat(chunks)
        if chunks
        else torch.empty(0, 3, spec.image_size, spec.image_size, dtype=torch.uint8)
    )
