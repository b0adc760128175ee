"""The run-directory contract between stages.

``<run.root>/<run.name>/<stage>/`` holds ``config.yaml`` (resolved), ``manifest.json`` (status, times,
upstream manifest, outputs, git commit), ``metrics.jsonl`` (one JSON object per logged step) and
``checkpoints/`` where relevant. A stage reads only its upstream stage's manifest and the artifacts it
lists. Manifests and checkpoints are written atomically (temp + ``os.replace``), so a crash at any
moment leaves either the old complete file or the new complete one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import RunLocked, UpstreamMissing

STAGES = ("data", "pretrain", "finetune", "evaluate", "export")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling directory; on success it replaces ``final`` in one rename."""
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
        os.replace(final, old)  # directories cannot be replaced over a non-empty target
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def stage_dir(cfg, stage: str) -> Path:
    return Path(cfg.run.root) / cfg.run.name / stage


def read_manifest(cfg, stage: str, make_target: str | None = None) -> dict:
    """The complete manifest of ``stage`` or a one-line UpstreamMissing naming the make target."""
    path = stage_dir(cfg, stage) / "manifest.json"
    fix = f"run `make {make_target or stage}` first (same CONFIG/ARGS, run.name={cfg.run.name})"
    if not path.is_file():
        raise UpstreamMissing(f"{path} does not exist; {fix}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UpstreamMissing(f"{path} is not valid JSON; {fix}") from None
    if manifest.get("status") != "complete":
        raise UpstreamMissing(f"{path} has status {manifest.get('status')!r}, not 'complete'; {fix}")
    return manifest


def upstream_summary(manifest: dict) -> dict:
    """What a stage records of the upstream manifest it consumed."""
    return {k: manifest.get(k) for k in ("stage", "run", "end_time", "git_commit")}


class MetricsLog:
    """Append-only ``metrics.jsonl``; each line is flushed so a killed run keeps what it logged."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def log(self, **row: Any) -> None:
        if not self.enabled:
            return
        row.setdefault("time", time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")


class StageRun:
    """One execution of a stage: directory, lock, resolved config, manifest lifecycle.

    Only the main process (``is_main``) writes; other ranks get the same paths.
    """

    def __init__(self, cfg, stage: str, config_yaml: str, upstream: dict | None = None, is_main: bool = True):
        self.cfg, self.stage, self.is_main = cfg, stage, is_main
        self.dir = stage_dir(cfg, stage)
        self.checkpoints = self.dir / "checkpoints"
        self.outputs: dict[str, Any] = {}
        self.metrics = MetricsLog(self.dir / "metrics.jsonl", enabled=is_main)
        self._config_yaml, self._upstream = config_yaml, upstream
        self._lock_file = None

    def __enter__(self) -> StageRun:
        if not self.is_main:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        atomic_write_text(self.dir / "config.yaml", self._config_yaml)
        self._start = time.time()
        self._write_manifest("running")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.is_main:
            return
        try:
            status = "complete" if exc_type is None else ("interrupted" if exc_type is KeyboardInterrupt else "failed")
            extra = {} if exc is None else {"error": f"{exc_type.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            self._write_manifest(status, **extra)
        finally:
            self._unlock()

    def _lock(self) -> None:
        self._lock_file = open(self.dir / ".lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise RunLocked(f"{self.dir} is being written by another process; wait for it to finish "
                            "or choose another run.name") from None

    def _unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def _write_manifest(self, status: str, **extra: Any) -> None:
        now = time.time()
        manifest = {
            "stage": self.stage, "status": status, "run": self.cfg.run.name,
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self._start)),
            "end_time": None if status == "running" else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
            "wall_time_s": round(now - self._start, 3), "git_commit": git_commit(),
            "upstream": self._upstream, "outputs": self.outputs, **extra,
        }
        atomic_write_json(self.dir / "manifest.json", manifest)

    def rel(self, path: Path) -> str:
        """Outputs are recorded relative to the stage directory so a run folder can be moved."""
        return str(Path(path).relative_to(self.dir))
