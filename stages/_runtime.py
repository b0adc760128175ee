"""What every compute stage starts with: the accelerator, seeded RNGs, the resolved config, the data
manifest (the data stage runs first when needed), and the fingerprint a checkpoint depends on.

This and the stage modules are the only code that sees the whole :class:`ExperimentConfig`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf

from pipeline.config import ExperimentConfig, RunConfig, to_yaml, to_yaml_section
from pipeline.run import RunDir

from .data import ensure_data


def make_accelerator(run: RunConfig, grad_accum_steps: int = 1, log_dir: Path | None = None) -> Accelerator:
    """``log_dir`` given: accelerate's TensorBoard tracker writes there (``<run>/<stage>/tensorboard``)."""
    if run.num_threads:
        torch.set_num_threads(run.num_threads)
    kwargs: dict[str, Any] = {}
    if log_dir is not None:
        kwargs = {"log_with": "tensorboard", "project_dir": str(log_dir)}
    # cpu=True is needed on a CPU-only machine even under torchrun: with cpu=False and no CUDA, accelerate
    # 1.15 ignores the torchrun environment and every process believes it is alone (checked here)
    cpu = run.device == "cpu" or (run.device == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, mixed_precision=run.mixed_precision,
                       gradient_accumulation_steps=grad_accum_steps, step_scheduler_with_optimizer=False, **kwargs)


@dataclass
class Stage:
    """An opened stage: where it runs (accelerator, run directory), what it was asked (the resolved
    YAML) and what the data stage produced."""

    acc: Accelerator
    run_dir: RunDir
    yaml: str
    data: dict  # the data stage's manifest

    @property
    def splits(self) -> dict:
        return self.data["outputs"]["splits"]

    @property
    def image_size(self) -> int:
        return self.data["outputs"]["image_size"]


def open_stage(cfg: ExperimentConfig, stage: str, grad_accum_steps: int = 1, tensorboard: bool = False,
               seed: int | None = None, folder: str | None = None) -> Stage:
    """``stage``: the config section; ``folder``: the stage's folder when it is not the section's name
    (a named fine-tune: ``finetune_slf``)."""
    run_dir = RunDir.of(cfg.run)
    acc = make_accelerator(cfg.run, grad_accum_steps, run_dir.stage(folder or stage) if tensorboard else None)
    if tensorboard:
        # the stage's settings as TensorBoard hparams (scalars only; lists become strings)
        acc.init_trackers("tensorboard", config=_flat_scalars(OmegaConf.to_container(OmegaConf.structured(getattr(cfg, stage)))))
    set_seed(cfg.run.seed if seed is None else seed)
    yaml = to_yaml(cfg)
    with acc.main_process_first():
        data = ensure_data(cfg, yaml, cfg.run.progress and acc.is_main_process)
    return Stage(acc, run_dir, yaml, data)


def _flat_scalars(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_scalars(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def config_fingerprint(cfg: ExperimentConfig, section: str) -> str:
    """What a checkpoint depends on: the stage's section, the model, the data and the seed."""
    return hashlib.sha256(to_yaml_section(cfg, (section, "model", "data"), cfg.run.seed).encode()).hexdigest()[:16]
