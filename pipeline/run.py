"""The run-directory contract between stages.

``<run.root>/<run.name>/<stage>/`` holds ``config.yaml`` (resolved), ``manifest.json`` (status, times,
upstream manifest, outputs, git commit), ``metrics.jsonl`` (one JSON object per logged step) and
``checkpoints/`` where relevant. A stage reads only its upstream stage's manifest and the artifacts it
lists. Manifests are written atomically (``pipeline.io``), so a crash at any moment leaves either the
old complete file or the new complete one.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunLocked, UpstreamMissing, UsageError
from .io import atomic_write_json, atomic_write_text
from .validation import check, check_choice

STAGES = ("data", "pretrain", "finetune", "evaluate", "export")

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> the module it needs


@dataclass
class RunConfig:
    name: str = "quickstart"  # the run directory is <root>/<name>/<stage>/
    root: str = "runs"
    seed: int = 0  # seeds data order, augmentation, initialisation and attacks
    device: str = "auto"  # auto | cpu | cuda (accelerate picks the device; "cpu" forces it)
    mixed_precision: str = "no"  # no | bf16 (autocast): training steps, their attacks, and validation
    # faster passes through the same network (pipeline/models/speed.py; not in the resume fingerprint):
    # auto | true | false: NHWC memory layout of the trained network and its inputs (the evaluated one too with
    # true). auto = on for training on CPU, where it was measured faster (BENCHMARKS "Faster passes"); off on GPUs
    channels_last: str = "auto"
    compile: bool = False  # torch.compile of the trained network (steps, their attacks, validation, RCS)
    num_threads: int = 0  # torch intra-op threads per process on CPU; 0 = torch's default
    progress: bool = True  # tqdm progress bars (only on a terminal; logs get one line per epoch instead)
    # experiment trackers that get step and epoch metrics: tensorboard | wandb | mlflow (accelerate's);
    # <section>.tensorboard=true is the older spelling of adding tensorboard for one stage
    log_with: list[str] = field(default_factory=list)
    # as a key=value override: start from a run's resolved config instead of --config's YAML — runs/<name> (its
    # last finished stage's config.yaml), a stage folder or a config.yaml; the other overrides apply on top. In
    # a YAML it only records where that config came from
    from_run: str = ""

    def check(self) -> None:
        for i, name in enumerate(self.log_with):
            check_choice(f"log_with[{i}]", name, TRACKERS)
            check(
                importlib.util.find_spec(TRACKERS[name]) is not None,
                f"log_with[{i}]",
                name,
                f"install it first: pip install -e '.[{name}]' (or pip install {TRACKERS[name]})",
            )
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        check_choice("mixed_precision", self.mixed_precision, ("no", "bf16"))
        # YAML true/false arrive as "True"/"False" in this str field; every reader lower-cases
        check_choice("channels_last", str(self.channels_last).lower(), ("auto", "true", "false"))
        check(bool(self.name) and "/" not in self.name, "name", self.name, "use a non-empty name without '/'")


def show_progress(run: RunConfig) -> bool:
    """Progress bars only on a terminal: under SLURM, CI or a redirected ``make`` they would fill the log
    with carriage returns; the training loop prints one plain line per epoch instead."""
    return run.progress and sys.stderr.isatty()


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=here,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class RunDir:
    """``<root>/<name>/``: one experiment's stages. Needs nothing of the config but these two keys."""

    root: str
    name: str

    @classmethod
    def of(cls, run_cfg: Any) -> RunDir:
        """From anything with ``root`` and ``name`` (the ``run:`` section)."""
        return cls(str(run_cfg.root), str(run_cfg.name))

    def stage(self, stage: str) -> Path:
        return Path(self.root) / self.name / stage

    def read_manifest(self, stage: str, make_target: str | None = None) -> dict:
        """The complete manifest of ``stage`` or a one-line UpstreamMissing naming the make target."""
        path = self.stage(stage) / "manifest.json"
        fix = f"run `make {make_target or stage}` first (same CONFIG/ARGS, run.name={self.name})"
        if not path.is_file():
            raise UpstreamMissing(f"{path} does not exist; {fix}")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UpstreamMissing(f"{path} is not valid JSON; {fix}") from None
        if manifest.get("status") != "complete":
            raise UpstreamMissing(f"{path} has status {manifest.get('status')!r}, not 'complete'; {fix}")
        return manifest

    def optional_manifest(self, stage: str) -> dict | None:
        """The complete manifest of ``stage``, or None when it is missing or incomplete."""
        try:
            return self.read_manifest(stage)
        except UsageError:
            return None


def settings_digest(settings: dict) -> str:
    """The short hash a checkpoint carries of the settings it depends on (resume compares it)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def upstream_summary(manifest: dict) -> dict:
    """What a stage records of the upstream manifest it consumed."""
    return {k: manifest.get(k) for k in ("stage", "run", "end_time", "git_commit")}


class MetricsLog:
    """Append-only ``metrics.jsonl``; each line is flushed so a killed run keeps what it logged
    (``pipeline.io.read_jsonl`` reads it back, skipping a line a kill cut in half)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def log(self, **row: Any) -> None:
        if not self.enabled:
            return
        row.setdefault("time", time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


class StageRun:
    """One execution of a stage: directory, lock, resolved config, manifest lifecycle.

    Only the main process (``is_main``) writes; other ranks get the same paths.
    """

    def __init__(
        self,
        run_dir: RunDir,
        stage: str,
        config_yaml: str,
        upstream: dict | None = None,
        is_main: bool = True,
    ):
        self.run_dir, self.stage, self.is_main = run_dir, stage, is_main
        self.dir = run_dir.stage(stage)
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
            status = (
                "complete"
                if exc_type is None
                else ("interrupted" if exc_type is KeyboardInterrupt else "failed")
            )
            extra = (
                {}
                if exc is None
                else {"error": f"{exc_type.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            )
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
            raise RunLocked(
                f"{self.dir} is being written by another process; wait for it to finish "
                "or choose another run.name"
            ) from None

    def _unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def _write_manifest(self, status: str, **extra: Any) -> None:
        now = time.time()
        manifest = {
            "stage": self.stage,
            "status": status,
            "run": self.run_dir.name,
            "start_time": _stamp(self._start),
            "end_time": None if status == "running" else _stamp(now),
            "wall_time_s": round(now - self._start, 3),
            "git_commit": git_commit(),
            "upstream": self._upstream,
            "outputs": self.outputs,
            **extra,
        }
        atomic_write_json(self.dir / "manifest.json", manifest)

    def rel(self, path: Path) -> str:
        """Outputs are recorded relative to the stage directory so a run folder can be moved."""
        return str(Path(path).relative_to(self.dir))
