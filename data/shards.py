"""Writing image shards (webdataset tar files) and their ``dataset.json`` manifest.

A shard sample is ``{"__key__": "<split>_<index>", "<ext>": image bytes, "cls": label}`` (no ``cls`` for
unlabeled images). Images that are already RGB at the target size, in a format the readers decode, keep
their original encoded bytes (no re-encoding loss); anything else is converted and stored as lossless PNG.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import webdataset as wds

from pipeline.errors import DataError
from pipeline.io import sha256_file

from .images import WrongSize, fit_image

READABLE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm")  # what the readers decode (readers.IMAGE_KEYS)
MAX_LISTED_SKIPS = 20  # dataset.json lists this many skipped files by name (all are counted)


@dataclass
class RawSample:
    """One image before it is written: encoded bytes (with their format) or a decoded array."""

    label: int | None  # None: unlabeled
    data: bytes | None = None  # encoded image (jpeg/png) as found in the source
    ext: str = "png"  # extension of ``data``
    array: np.ndarray | None = None  # (H, W) or (H, W, C) uint8, when the source is decoded already
    source: str = ""  # where it came from (a file name), for reports of skipped files


@dataclass
class SplitStats:
    count: int = 0
    converted: Counter = field(default_factory=Counter)  # why images were re-encoded: mode / size
    class_counts: Counter = field(default_factory=Counter)
    unlabeled: int = 0
    skipped: list = field(default_factory=list)  # [(source, why)] of images that could not be used


def _normalise(
    sample: RawSample, size: int, wrong_size: str, where: str, stats: SplitStats
) -> tuple[bytes, str]:
    """Return (bytes, ext) of an RGB ``size``×``size`` image, re-encoding only when needed."""
    try:
        img, reasons = fit_image(sample.array if sample.array is not None else sample.data, size, wrong_size)
    except WrongSize as exc:
        raise DataError(
            f"{where}: {exc}; set data.wrong_size=resize or data.image_size={exc.width}"
        ) from None
    except Exception as exc:
        raise DataError(
            f"{where}: not a decodable image ({type(exc).__name__}); remove it from the source"
        ) from None
    if sample.data is not None and sample.ext not in READABLE_EXTS:
        reasons.append(f"format {sample.ext}->png")  # e.g. gif / tiff: the readers would not find an image
    if not reasons and sample.data is not None:
        return sample.data, sample.ext
    for r in reasons:
        stats.converted[r] += 1
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), "png"


def write_split(
    samples: Iterable[RawSample],
    out_dir: Path,
    split: str,
    image_size: int,
    shard_size: int,
    wrong_size: str = "resize",
    on_bad: str = "error",
) -> dict:
    """Write ``samples`` as ``<out_dir>/<split>-NNNNNN.tar`` shards; return the split's manifest entry.

    ``on_bad="skip"``: an image that does not decode is left out, counted and listed (by its source name)
    instead of stopping the conversion."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{split}-*.tar"):  # a re-conversion must not leave stale shards behind
        old.unlink()
    stats = SplitStats()
    pattern = str(out_dir / f"{split}-%06d.tar")
    # fixed mtime: the same source gives byte-identical shards (stable checksums in dataset.json)
    with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0, mtime=0.0) as sink:
        for i, sample in enumerate(samples):
            where = f"{split} sample {i}" + (f" ({sample.source})" if sample.source else "")
            try:
                data, ext = _normalise(sample, image_size, wrong_size, where, stats)
            except DataError as exc:
                if on_bad == "error":
                    raise
                stats.skipped.append((sample.source or where, str(exc).split(": ", 1)[-1]))
                continue
            _write_sample(sink, f"{split}_{stats.count:07d}", data, ext, sample.label, stats)
    shards = sorted(out_dir.glob(f"{split}-*.tar"))
    if not shards or not stats.count:
        raise DataError(f"the {split} split is empty; check the converter's source")
    entry = {
        "count": stats.count,
        "labeled": stats.unlabeled == 0,
        "class_counts": {str(k): v for k, v in sorted(stats.class_counts.items())},
        "converted": dict(stats.converted),
        "urls": str(out_dir / f"{split}-{{{0:06d}..{len(shards) - 1:06d}}}.tar"),
        "shards": [{"file": s.name, "sha256": sha256_file(s)} for s in shards],
    }
    if stats.skipped:
        entry["skipped"] = {
            "count": len(stats.skipped),
            "files": [{"file": f, "why": why} for f, why in stats.skipped[:MAX_LISTED_SKIPS]],
        }
    return entry


def _write_sample(sink, key: str, data: bytes, ext: str, label: int | None, stats: SplitStats) -> None:
    # key: no dots (webdataset splits keys from extensions at the first dot)
    sample = {"__key__": key, ext: data}
    if label is None:
        stats.unlabeled += 1
    else:
        sample["cls"] = str(int(label)).encode()
        stats.class_counts[int(label)] += 1
    sink.write(sample)
    stats.count += 1


def dataset_info(name: str, classes: list[str], image_size: int, splits: dict) -> dict:
    """The ``dataset.json`` content: classes, counts, image size and, per split, its URLs (and, for
    converted shards, the shard list with checksums)."""
    return {
        "name": name,
        "classes": classes,
        "num_classes": len(classes),
        "image_size": image_size,
        "splits": splits,
    }
