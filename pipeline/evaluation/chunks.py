"""Work units of an evaluation: fixed-size chunks, their seeds, fingerprints and files on disk.

Results must not depend on how many processes run: a chunk's content, its seeds and the batching inside
it depend only on the configuration and the chunk index, never on the rank or the world size. Chunks are
stored as JSON (per-sample integers and floats) plus safetensors (probability matrices), never pickle,
so reading a work directory cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline.io import atomic_file, atomic_write_text, sha256_file
from pipeline.seeds import derive_seed as derive_seed  # re-exported: the evaluation's seed rule

from .config import EvaluateConfig, first_n

FORMAT_VERSION = 1  # bump when the chunk layout or the computation changes meaning


@dataclass(frozen=True)
class Chunk:
    """One unit of work: examples ``[start, stop)`` and how many of them each component covers."""

    index: int
    start: int
    stop: int
    n_autoattack: int  # the first n_autoattack examples of the chunk are attacked by AutoAttack
    n_sweep: int  # ... evaluated in the epsilon sweep
    n_smoothing: int  # ... certified


def plan_chunks(n_examples: int, cfg: EvaluateConfig) -> list[Chunk]:
    """Split ``n_examples`` into chunks of ``cfg.chunk_size`` (the last may be shorter)."""
    aa = first_n(cfg.autoattack.n_examples, n_examples) if cfg.autoattack.enabled else 0
    sw = first_n(cfg.sweep.n_examples, n_examples) if cfg.sweep.enabled else 0
    sm = first_n(cfg.smoothing.n_examples, n_examples) if cfg.smoothing.enabled else 0
    chunks = []
    for index, start in enumerate(range(0, n_examples, cfg.chunk_size)):
        stop = min(start + cfg.chunk_size, n_examples)

        def covered(limit: int, start: int = start, stop: int = stop) -> int:
            return max(0, min(stop, limit) - start)

        chunks.append(Chunk(index, start, stop, covered(aa), covered(sw), covered(sm)))
    return chunks


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 over the raw bytes, shapes and dtypes of tensors."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """Fingerprint of a model's class and state (parameters and buffers)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor_digest(t).encode())
    return h.hexdigest()


def _cfg_without_sizes(cfg: EvaluateConfig) -> dict[str, Any]:
    # n_examples only decides which chunks exist and what they cover; the Chunk itself records that,
    # so growing n_examples keeps the earlier chunks valid.
    d = asdict(cfg)
    for section in (d, d["autoattack"], d["sweep"], d["smoothing"]):
        section.pop("n_examples")
    # the values actually used, not the "0 / [] = default" spelling: an explicit setting equal to the
    # default reuses the same chunks
    d["sweep"]["eps"], d["pgd"]["step_size"] = cfg.sweep_radii(), cfg.pgd_step_size()
    if d["precision"] == "fp32":  # added later: fp32 chunks written before it existed stay valid
        d.pop("precision")
    return d


def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute the numbers (in the fingerprint and the report)."""
    import pyautoattack

    return {"torch": torch.__version__, "pyautoattack": pyautoattack.__version__}


def chunk_fingerprint(
    cfg: EvaluateConfig, chunk: Chunk, *, model_fp: str, data_fp: str, num_classes: int
) -> str:
    """Everything that determines a chunk's results, hashed."""
    payload = {
        "format": FORMAT_VERSION,
        "cfg": _cfg_without_sizes(cfg),
        "chunk": asdict(chunk),
        "model": model_fp,
        "data": data_fp,
        "num_classes": num_classes,
        **library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ChunkStore:
    """Finished chunks under ``<work_dir>/chunks/`` (or in memory when there is no work directory).

    Args:
        work_dir: the stage's work directory; ``None`` keeps results in memory (single process only).
    """

    def __init__(self, work_dir: str | os.PathLike | None) -> None:
        self.dir = None if work_dir is None else Path(work_dir) / "chunks"
        self._memory: dict[int, tuple[dict, dict[str, torch.Tensor]]] = {}
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _paths(self, index: int) -> tuple[Path, Path]:
        assert self.dir is not None
        return self.dir / f"chunk_{index:06d}.json", self.dir / f"chunk_{index:06d}.safetensors"

    def save(self, index: int, record: dict, tensors: Mapping[str, torch.Tensor]) -> None:
        """Store a finished chunk atomically: tensors first, then the JSON that marks it complete."""
        if self.dir is None:
            self._memory[index] = (record, dict(tensors))
            return
        json_path, st_path = self._paths(index)
        with atomic_file(st_path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        record = dict(record, tensors_sha256=sha256_file(st_path))
        atomic_write_text(json_path, json.dumps(record))

    def load(self, index: int, fingerprint: str | None = None) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """A finished chunk, or ``None`` if absent, incomplete, corrupt or of another configuration."""
        if self.dir is None:
            found = self._memory.get(index)
        else:
            json_path, st_path = self._paths(index)
            try:
                record = json.loads(json_path.read_text())
                if record.get("tensors_sha256") != sha256_file(st_path):
                    return None
                found = (record, load_file(str(st_path)))
            except (OSError, ValueError):
                return None
        if found is None or (fingerprint is not None and found[0].get("fingerprint") != fingerprint):
            return None
        return found
