"""Writing labeled image shards (webdataset tar files) and their ``dataset.json`` manifest.

A shard sample is ``{"__key__": "<split>_<index>", "<ext>": image bytes, "cls": label}``. Images that
are already RGB at the target size keep their original encoded bytes (no re-encoding loss); anything
else is converted and stored as lossless PNG.
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


@dataclass
class RawSample:
    """One image before it is written: encoded bytes (with their format) or a decoded array."""

    label: int
    data: bytes | None = None  # encoded image (jpeg/png) as found in the source
    ext: str = "png"  # extension of ``data``
    array: np.ndarray | None = None  # (H, W) or (H, W, C) uint8, when the source is decoded already


@dataclass
class SplitStats:
    count: int = 0
    converted: Counter = field(default_factory=Counter)  # why images were re-encoded: mode / size
    class_counts: Counter = field(default_factory=Counter)


def _normalise(sample: RawSample, size: int, wrong_size: str, where: str, stats: SplitStats) -> tuple[bytes, str]:
    """Return (bytes, ext) of an RGB ``size``×``size`` image, re-encoding only when needed."""
    try:
        img, reasons = fit_image(sample.array if sample.array is not None else sample.data, size, wrong_size)
    except WrongSize as exc:
        raise DataError(f"{where}: {exc}; set data.wrong_size=resize or data.image_size={exc.width}") from None
    except Exception as exc:
        raise DataError(f"{where}: not a decodable image ({type(exc).__name__}); remove it from the source") from None
    if not reasons and sample.data is not None:
        return sample.data, sample.ext
    for r in reasons:
        stats.converted[r] += 1
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), "png"


def write_split(samples: Iterable[RawSample], out_dir: Path, split: str, image_size: int,
                shard_size: int, wrong_size: str = "resize") -> dict:
    """Write ``samples`` as ``<out_dir>/<split>-NNNNNN.tar`` shards; return the split's manifest entry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{split}-*.tar"):  # a re-conversion must not leave stale shards behind
        old.unlink()
    stats = SplitStats()
    pattern = str(out_dir / f"{split}-%06d.tar")
    # fixed mtime: the same source gives byte-identical shards (stable checksums in dataset.json)
    with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0, mtime=0.0) as sink:
        for i, sample in enumerate(samples):
            key = f"{split}_{i:07d}"  # no dots: webdataset splits keys from extensions at the first dot
            data, ext = _normalise(sample, image_size, wrong_size, f"{split} sample {i}", stats)
            sink.write({"__key__": key, ext: data, "cls": str(int(sample.label)).encode()})
            stats.count += 1
            stats.class_counts[int(sample.label)] += 1
    shards = sorted(out_dir.glob(f"{split}-*.tar"))
    if not shards:
        raise DataError(f"the {split} split is empty; check the converter's source")
    return {
        "count": stats.count,
        "class_counts": {str(k): v for k, v in sorted(stats.class_counts.items())},
        "converted": dict(stats.converted),
        "urls": str(out_dir / f"{split}-{{{0:06d}..{len(shards) - 1:06d}}}.tar"),
        "shards": [{"file": s.name, "sha256": sha256_file(s)} for s in shards],
    }


def dataset_info(name: str, classes: list[str], image_size: int, splits: dict) -> dict:
    """The ``dataset.json`` content: classes, counts, image size and, per split, its URLs (and, for
    converted shards, the shard list with checksums)."""
    return {"name": name, "classes": classes, "num_classes": len(classes), "image_size": image_size,
            "splits": splits}
