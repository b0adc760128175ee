"""How many samples a split holds, without opening every shard when we can avoid it.

In order of preference, for each shard of a split:
1. ``data.train_size`` declared by the user (the whole training split; nothing is opened);
2. a shard index ``shards.index.json`` next to the shards (written once by ``make index``), whose entry
   still matches the shard's size in bytes;
3. the ``dataset.json`` our converters write, when the split's URLs are exactly one of its splits;
4. a scan: the shard is streamed once (a progress bar says so) and its samples are counted *by key*
   (a sample is a key with an image member; labels are not needed). A truncated or unreadable shard is a
   one-line error, or with ``data.on_bad_sample=skip`` its readable samples are counted and the shard is
   reported as damaged.
Remote URLs (``pipe:``, ``http://`` …) cannot be counted without streaming them: their size stays
unknown and the stages say what to set.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import DataError
from pipeline.io import atomic_write_json

INDEX_NAME = "shards.index.json"
INDEX_FORMAT = 1
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm")  # what the readers decode (readers.IMAGE_KEYS)
REMOTE = ("pipe:", "http://", "https://", "gs://", "s3://")


@dataclass
class ShardCount:
    count: int = 0  # samples with an image
    labeled: int = 0  # of which with a .cls label
    error: str = ""  # why the shard could not be read to its end ("" = read completely)


@dataclass
class SplitCount:
    count: int = 0
    labeled: int = 0
    sources: dict = field(default_factory=dict)  # where the counts came from: index / dataset.json / scan / …
    damaged: list = field(default_factory=list)  # [{"file", "error", "readable"}] (with on_bad_sample=skip)
    unknown: str = ""  # why the size is unknown ("" = known)

    def as_split(self, urls) -> dict:
        """The split's entry in the data manifest."""
        out = {
            "count": self.count,
            "urls": urls,
            "labeled": self.labeled == self.count and self.count > 0,
            "count_source": self.sources,
        }
        if self.damaged:
            out["damaged_shards"] = self.damaged
        if self.unknown:
            out["size_unknown"] = self.unknown
        return out


def _key_and_ext(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the file name, the rest its type."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return f"{directory}/{stem}" if directory else stem, ext.lower()


def scan_shard(path: str) -> ShardCount:
    """Stream one shard and count its samples by key. Member data is read (not only headers), so a
    truncated shard counts exactly the samples a reader gets before the break."""
    result, keys = ShardCount(), {}
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                tf.extractfile(member).read()
                key, ext = _key_and_ext(member.name)
                keys.setdefault(key, set()).add(ext)
            # a tar cut at a member boundary reads like a shorter tar (tarfile and webdataset stop quietly);
            # only the missing end-of-archive blocks (2 × 512 zero bytes) give it away
            if Path(path).stat().st_size < tf.offset + 1024:
                raise tarfile.ReadError(
                    "no end-of-archive marker after the last member: the file is truncated"
                )
    except (tarfile.TarError, OSError, EOFError) as exc:
        # the member being read when the shard broke is not counted; the members before it were read
        # whole, and the reader (webdataset) yields them too
        result.error = f"{type(exc).__name__}: {str(exc)[:80]}"
    for exts in keys.values():
        if exts & set(IMAGE_EXTS):
            result.count += 1
            result.labeled += "cls" in exts
    return result


def read_index(directory: Path) -> dict:
    """``{file name: {"bytes", "count", "labeled"}}`` of a shard index, or ``{}`` (absent or unreadable:
    an index is only ever a shortcut)."""
    try:
        index = json.loads((Path(directory) / INDEX_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return index.get("shards", {}) if index.get("format") == INDEX_FORMAT else {}


def _from_dataset_json(urls: list[str]) -> SplitCount | None:
    """The split count from a converter's ``dataset.json``, if ``urls`` are exactly one of its splits."""
    directory = Path(urls[0]).parent
    try:
        info = json.loads((directory / "dataset.json").read_text())
    except (OSError, ValueError):
        return None
    names = sorted(Path(u).name for u in urls)
    for split in info.get("splits", {}).values():
        listed = sorted(s["file"] for s in split.get("shards", []))
        if listed and listed == names and all(Path(u).parent == directory for u in urls):
            labeled = split["count"] if split.get("labeled", True) else 0
            return SplitCount(split["count"], labeled, {"dataset.json": len(urls)})
    return None


def count_split(
    urls: list[str], on_bad: str, progress: bool = True, key: str = "data.train_urls"
) -> SplitCount:
    """Count the samples of a split (see the module docstring for the order of the sources)."""
    remote = [u for u in urls if u.startswith(REMOTE)]
    if remote:
        return SplitCount(
            unknown=f"{key} has remote URLs ({remote[0][:40]}…) that cannot be counted without streaming them"
        )
    found = _from_dataset_json(urls)
    if found is not None:
        return found
    total, indexes = SplitCount(), {}
    to_scan = []
    for url in urls:
        path = Path(url)
        if path.parent not in indexes:  # read each folder's index once (not once per shard)
            indexes[path.parent] = read_index(path.parent)
        entries = indexes[path.parent]
        entry = entries.get(path.name)
        if entry and entry.get("bytes") == path.stat().st_size:
            total.count, total.labeled = total.count + entry["count"], total.labeled + entry["labeled"]
            total.sources["index"] = total.sources.get("index", 0) + 1
        else:
            to_scan.append(url)
    for url in tqdm(
        to_scan,
        desc=f"counting samples ({key}; `make index` makes this instant)",
        unit="shard",
        disable=not progress or len(to_scan) < 2,
        leave=False,
    ):
        shard = scan_shard(url)
        if shard.error:
            if on_bad == "error":
                raise DataError(
                    f"shard {url} is not a readable tar to its end ({shard.error}); re-create it, drop it "
                    "from the URL pattern, or set data.on_bad_sample=skip to keep its readable samples"
                )
            total.damaged.append({"file": url, "error": shard.error, "readable": shard.count})
        total.count, total.labeled = total.count + shard.count, total.labeled + shard.labeled
        total.sources["scan"] = total.sources.get("scan", 0) + 1
    return total


def write_index(urls: list[str], on_bad: str, progress: bool = True) -> list[Path]:
    """Scan ``urls`` and write (or update) ``shards.index.json`` in each of their folders; returns them."""
    by_dir: dict[Path, dict] = {}
    for url in tqdm(urls, desc="indexing shards", unit="shard", disable=not progress, leave=False):
        path = Path(url)
        shard = scan_shard(url)
        if shard.error and on_bad == "error":
            raise DataError(
                f"shard {url} is not a readable tar to its end ({shard.error}); re-create it or set "
                "data.on_bad_sample=skip to index its readable samples"
            )
        if path.parent not in by_dir:
            by_dir[path.parent] = read_index(path.parent)
        entries = by_dir[path.parent]
        entries[path.name] = {
            "bytes": path.stat().st_size,
            "count": shard.count,
            "labeled": shard.labeled,
            **({"error": shard.error} if shard.error else {}),
        }
    written = []
    for directory, entries in by_dir.items():
        try:
            atomic_write_json(
                directory / INDEX_NAME, {"format": INDEX_FORMAT, "shards": dict(sorted(entries.items()))}
            )
        except OSError as exc:
            raise DataError(
                f"cannot write {directory / INDEX_NAME} ({exc.strerror}); make the folder writable "
                "or declare the size with data.train_size"
            ) from None
        written.append(directory / INDEX_NAME)
    return written
