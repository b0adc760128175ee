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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline.io import atomic_file, atomic_write_text, sha256_file

from .config import EvaluateConfig
from .measurements import in_order
from .sampling import derive_seed

__all__ = [
    "Chunk",
    "ChunkStore",
    "chunk_fingerprint",
    "derive_seed",
    "library_versions",
    "model_digest",
    "plan_chunks",
    "tensor_digest",
]

FORMAT_VERSION = 1  # bump when the chunk layout or the computation changes meaning


@dataclass(frozen=True)
class Chunk:
    """One unit of work: examples ``[start, stop)``, and how many of its first examples each prefix
    measurement covers (``covered["autoattack"] = 7``: AutoAttack attacks the chunk's first 7)."""

    index: int
    start: int
    stop: int
    covered: Mapping[str, int] = field(default_factory=dict)

    def payload(self) -> dict[str, int]:
        """What the chunk contributes to its fingerprint: ``n_<name>`` per prefix measurement (the field
        names of the fixed layout this replaced, so that earlier chunks stay valid)."""
        return {
            "index": self.index,
            "start": self.start,
            "stop": self.stop,
            **{f"n_{name}": n for name, n in self.covered.items()},
        }


def plan_chunks(n_examples: int, cfg: EvaluateConfig) -> list[Chunk]:
    """Split ``n_examples`` into chunks of ``cfg.chunk_size`` (the last may be shorter)."""
    limits = {m.name: m.n_examples(cfg, n_examples) for m in in_order() if m.prefix and m.in_fingerprint(cfg)}
    chunks = []
    for index, start in enumerate(range(0, n_examples, cfg.chunk_size)):
        stop = min(start + cfg.chunk_size, n_examples)
        covered = {name: max(0, min(stop, limit) - start) for name, limit in limits.items()}
        chunks.append(Chunk(index, start, stop, covered))
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
    # so growing n_examples keeps the earlier chunks valid. Each measurement gives its section as it enters
    # the fingerprint (Measurement.settings: the values actually used, so an explicit default reuses chunks)
    d = asdict(cfg)
    d.pop("n_examples")
    for m in in_order():
        if m.section is not None and m.in_fingerprint(cfg):
            d[m.section] = m.settings(cfg)
        elif m.section is not None:
            d.pop(m.section)
    extra_threats = d.pop("threats")[1:]  # the first one is norm/eps: one threat listed = the shorthand
    if extra_threats:
        d["threats"] = extra_threats
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
        "chunk": chunk.payload(),
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
