"""One typed description of a split, built once when a stage opens and taken by every reader.

The data stage's manifest describes each split as JSON (``urls``, ``count``, ``labeled`` …); the reader
settings (image size, wrong-size and bad-sample policies, workers, shuffle buffer) come from the ``data:``
section. :class:`ShardSpec` joins the two, with the URLs expanded and checked, so that a reader's signature
is ``(spec, transform, …)`` and no stage re-lists the nine reader arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import DataError

from .urls import REMOTE_PREFIXES, expand_urls

if TYPE_CHECKING:
    from .config import DataConfig


@dataclass(frozen=True)
class ShardSpec:
    """A split of webdataset shards as the readers read it."""

    split: str  # train | val | test (names the config key in errors: data.<split>_urls)
    urls: tuple[str, ...]  # expanded, local files checked
    count: int  # samples with an image (0 = unknown: remote shards without data.train_size)
    labeled: bool  # every sample has a .cls label
    image_size: int  # side of the square images the readers return
    wrong_size: str = "resize"  # resize | crop | error (data.wrong_size)
    on_bad: str = "error"  # error | skip (data.on_bad_sample)
    num_workers: int = 0  # DataLoader workers per process (data.num_workers)
    shuffle_buffer: int = 2000  # samples in the streaming shuffle buffer (data.shuffle_buffer)
    sampling: str = "exact"  # exact | resampled (data.sampling): how training epochs draw samples
    size_unknown: str = ""  # why ``count`` is unknown ("" = known)

    @classmethod
    def from_manifest(cls, split: str, info: dict, data: DataConfig, image_size: int) -> ShardSpec:
        """``info``: the split's entry in the data manifest (``outputs.splits.<split>``)."""
        urls = tuple(expand_urls(info["urls"], f"data.{split}_urls"))
        remote = next((u for u in urls if u.startswith(REMOTE_PREFIXES)), None)
        if split == "train" and data.sampling == "exact" and remote:
            raise DataError(
                f"data.sampling=exact reads shards by offset, but {remote[:60]} is remote; set "
                "data.sampling=resampled to stream it (an epoch is then a sample count, not a pass)"
            )
        return cls(
            split=split,
            urls=urls,
            count=int(info.get("count") or 0),
            labeled=info.get("labeled", True) is not False,
            image_size=image_size,
            wrong_size=data.wrong_size,
            on_bad=data.on_bad_sample,
            num_workers=data.num_workers,
            shuffle_buffer=data.shuffle_buffer,
            sampling=data.sampling,
            size_unknown=info.get("size_unknown", ""),
        )

    @classmethod
    def of_urls(
        cls, urls: str | list[str], *, image_size: int, split: str = "train", labeled: bool = True, **reader
    ) -> ShardSpec:
        """A spec for shards outside a run (benchmarks, tests): size unknown, reader settings as given."""
        expanded = tuple(expand_urls(urls, f"data.{split}_urls"))
        return cls(split=split, urls=expanded, count=0, labeled=labeled, image_size=image_size, **reader)

    def require_labels(self, why: str) -> None:
        if not self.labeled:
            raise DataError(f"the {self.split} split holds unlabeled samples (no .cls); {why}")
