"""Write ``shards.index.json`` next to your shards (``make index``): the sample count of every shard, so
that the stages start in seconds instead of streaming every shard once to count it.

Indexes ``data.train_urls``, ``data.val_urls`` and ``data.test_urls`` of the config (local files only).
Re-run it after changing shards; an entry whose shard changed size is ignored (the shard is counted again).
"""

from __future__ import annotations

from data.index import REMOTE, write_index
from data.readers import expand_urls
from pipeline.config import ExperimentConfig
from pipeline.errors import UsageError
from pipeline.run import show_progress

from ._cli import main


def run_index(cfg: ExperimentConfig) -> list:
    d = cfg.data
    urls = [
        u
        for key in ("train_urls", "val_urls", "test_urls")
        if getattr(d, key)
        for u in expand_urls(getattr(d, key), f"data.{key}")
    ]
    local = [u for u in urls if not u.startswith(REMOTE)]
    if not local:
        raise UsageError(
            "no local shards to index: set data.train_urls (and val/test) to shard files on disk; "
            "remote shards need data.train_size"
        )
    written = write_index(local, d.on_bad_sample, show_progress(cfg.run))
    for path in written:
        print(f"index: {path}")
    return written


if __name__ == "__main__":
    main("index", run_index)
