"""Shard URL patterns → the list of shards (brace expansion, lists, ``pipe:`` and remote URLs)."""

from __future__ import annotations

from pathlib import Path

import webdataset as wds

from pipeline.errors import DataError

REMOTE_PREFIXES = ("pipe:", "http://", "https://", "gs://", "s3://")


def expand_urls(urls: str | list[str], key: str) -> list[str]:
    """Expand brace patterns / lists; local files must exist. Raises DataError when nothing matches."""
    if isinstance(urls, str):
        expanded = wds.shardlists.expand_urls(urls)
    else:
        expanded = [u for pattern in urls for u in wds.shardlists.expand_urls(pattern)]
    local = [u for u in expanded if not u.startswith(REMOTE_PREFIXES)]
    missing = [u for u in local if not Path(u).is_file()]
    if not expanded or len(missing) == len(expanded):
        raise DataError(
            f"{key}={urls!r} matches no shard files; check the path/brace pattern (run `make data` for the quickstart)"
        )
    if missing:
        raise DataError(
            f"{key}: {len(missing)} of {len(expanded)} shards are missing, e.g. {missing[0]}; fix the pattern or the files"
        )
    return expanded
