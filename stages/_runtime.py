"""What every compute stage starts with: the accelerator, seeded RNGs, the resolved config, the data
manifest (the data stage runs first when needed), and the fingerprint a checkpoint depends on.

This and the stage modules are the only code that sees the whole :class:`ExperimentConfig`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf

from pipeline.config import ExperimentConfig, RunConfig, to_yaml
from pipeline.run import RunDir

from .data import ensure_data, show_progress


def make_accelerator(run: RunConfig, grad_accum_steps: int = 1, log_dir: Path | None = None,
                     trackers: list[str] | None = None) -> Accelerator:
    """``trackers`` (tensorboard / wandb / mlflow) write under ``log_dir`` (``<run>/<stage>/``)."""
    if run.num_threads:
        torch.set_num_threads(run.num_threads)
    kwargs: dict[str, Any] = {}
    if trackers:
        kwargs = {"log_with": list(trackers), "project_dir": str(log_dir)}
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
    trackers: bool = False  # experiment trackers are on: the loop logs to them too

    @property
    def splits(self) -> dict:
        return self.data["outputs"]["splits"]

    @property
    def image_size(self) -> int:
        return self.data["outputs"]["image_size"]


def open_stage(cfg: ExperimentConfig, stage: str, grad_accum_steps: int = 1, tensorboard: bool = False,
               seed: int | None = None, folder: str | None = None) -> Stage:
    """``stage``: the config section; ``folder``: the stage's folder when it is not the section's name
    (a named fine-tune: ``finetune_slf``); ``tensorboard``: the section's old-style switch."""
    run_dir = RunDir.of(cfg.run)
    trackers = list(dict.fromkeys([*cfg.run.log_with, *(["tensorboard"] if tensorboard else [])]))
    log_dir = run_dir.stage(folder or stage)
    if "wandb" in trackers:  # offline unless the user chose otherwise: no account or network needed
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(log_dir))
    if "mlflow" in trackers:  # a local file store next to the runs unless MLFLOW_TRACKING_URI says otherwise
        os.environ.setdefault("MLFLOW_TRACKING_URI", (Path(cfg.run.root).resolve() / "mlruns").as_uri())
    acc = make_accelerator(cfg.run, grad_accum_steps, log_dir, trackers)
    if trackers:
        # the stage's settings as hyperparameters (scalars only; lists become strings)
        hparams = _flat_scalars(OmegaConf.to_container(OmegaConf.structured(getattr(cfg, stage))))
        # tensorboard writes under <stage>/<project>: "tensorboard" keeps runs/<run>/<stage>/tensorboard/
        project = "tensorboard" if "tensorboard" in trackers else "robustpretrain"
        name = f"{cfg.run.name}/{folder or stage}"
        acc.init_trackers(project, config=hparams, init_kwargs={"wandb": {"name": name}, "mlflow": {"run_name": name}})
    set_seed(cfg.run.seed if seed is None else seed)
    yaml = to_yaml(cfg)
    with acc.main_process_first():
        data = ensure_data(cfg, yaml, show_progress(cfg.run) and acc.is_main_process)
    return Stage(acc, run_dir, yaml, data, bool(trackers))


def _flat_scalars(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_scalars(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


# settings a checkpoint does not depend on: they may change between a kill and a resume
HARMLESS_KEYS = ("log_every_steps", "tensorboard", "checkpoint_every_steps", "keep_checkpoints")


def config_fingerprint(cfg: ExperimentConfig, section: str) -> tuple[str, dict]:
    """What a checkpoint depends on — the stage's section (less logging and checkpoint retention), the
    model, the data and the seed — as a hash and as the settings themselves (for naming what changed).

    ``data.num_workers`` and ``data.shuffle_buffer`` stay in: each worker draws its own shards, so they
    change the sample stream."""
    full = OmegaConf.to_container(OmegaConf.structured(cfg))
    settings = {section: {k: v for k, v in full[section].items() if k not in HARMLESS_KEYS},
                "model": full["model"], "data": full["data"], "seed": cfg.run.seed}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return digest, settings
