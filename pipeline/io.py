"""Writing files so that a crash never leaves half of one: the one copy of the atomic-write rules.

Every write goes to a temporary sibling (``.<name>.tmp<pid><suffix>``, hidden, same directory, so the
rename cannot cross filesystems), is flushed and fsync'ed, then renamed over the target with
``os.replace``. A reader therefore sees the old complete file or the new complete one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A hidden sibling of ``path`` with the same suffix (tools such as matplotlib pick the format by it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{tag}{os.getpid()}{path.suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to (by any library); on success it is fsync'ed and
    renamed over ``path``; on an exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, obj: Any, **kwargs: Any) -> None:
    """JSON with indent 2; objects JSON cannot encode become ``str`` unless ``default=`` says otherwise."""
    kwargs.setdefault("default", str)
    atomic_write_text(path, json.dumps(obj, indent=2, **kwargs) + "\n")


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final`` (directories cannot be renamed
    over a non-empty one, so the old one is moved aside first and deleted after)."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_jsonl(path: Path, kind: str | None = None) -> list[dict]:
    """The rows of a JSON-lines file (``[]`` if absent); a line cut by a kill is skipped. ``kind``: keep
    only rows whose ``"kind"`` is it (metrics.jsonl holds ``step`` and ``epoch`` rows)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in rows if kind is None or r.get("kind") == kind]
