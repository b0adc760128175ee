"""What every compute stage starts with: the accelerator, seeded RNGs, the resolved config, the data
manifest (the data stage runs first when needed), and the fingerprint a checkpoint depends on.

This and the stage modules are the only code that sees the whole :class:`ExperimentConfig`. What a
checkpoint depends on is ``pipeline.config.checkpoint_fingerprint``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf

from data.prepare import ensure_run_data
from data.spec import ShardSpec
from pipeline.config import ExperimentConfig, to_yaml
from pipeline.errors import UsageError
from pipeline.records import DataOutputs
from pipeline.run import RunConfig, RunDir, show_progress
from pipeline.train.skeleton import TrainingContext
from pipeline.train.trackers import init_trackers, prepare_tracker_environment


def make_accelerator(
    run: RunConfig, grad_accum_steps: int = 1, log_dir: Path | None = None, trackers: list[str] | None = None
) -> Accelerator:
    """``trackers`` (tensorboard / wandb / mlflow) write under ``log_dir`` (``<run>/<stage>/``)."""
    if run.num_threads:
        torch.set_num_threads(run.num_threads)
    kwargs: dict[str, Any] = {}
    if trackers:
        kwargs = {"log_with": list(trackers), "project_dir": str(log_dir)}
    # cpu=True is needed on a CPU-only machine even under torchrun: with cpu=False and no CUDA, accelerate
    # 1.15 ignores the torchrun environment and every process believes it is alone (checked here)
    cpu = run.device == "cpu" or (run.device == "auto" and not torch.cuda.is_available())
    return Accelerator(
        cpu=cpu,
        mixed_precision=run.mixed_precision,
        gradient_accumulation_steps=grad_accum_steps,
        step_scheduler_with_optimizer=False,
        **kwargs,
    )


@dataclass
class Stage:
    """An opened stage: where it runs (accelerator, run directory), what it was asked (the resolved
    YAML) and what the data stage produced."""

    acc: Accelerator
    run_dir: RunDir
    yaml: str
    data: dict  # the data stage's manifest (recorded as the upstream of training stages)
    cfg: ExperimentConfig
    trackers: bool = False  # experiment trackers are on: the loop logs to them too

    @property
    def dataset(self) -> DataOutputs:
        return DataOutputs.from_json(self.data["outputs"])

    @property
    def image_size(self) -> int:
        return self.dataset.image_size

    def has_split(self, name: str) -> bool:
        return name in self.dataset.splits

    def split(self, name: str) -> ShardSpec:
        """The split ``name`` as every reader takes it (URLs expanded and checked here, once)."""
        splits = self.dataset.splits
        if name not in splits:
            raise UsageError(
                f"the dataset has no {name} split; set data.{name}_urls (or use a converter that makes one)"
            )
        return ShardSpec.from_manifest(name, splits[name], self.cfg.data, self.image_size)

    def skipped_when_converting(self, name: str) -> int:
        """The samples of split ``name`` the data stage left out (``data.on_bad_sample=skip``; named in
        dataset.json): part of every later manifest's ``skipped_samples``, so the counts agree."""
        return int((self.dataset.splits.get(name, {}).get("skipped") or {}).get("count", 0))

    def training(self) -> TrainingContext:
        """What every training run of this stage shares (pipeline/train/skeleton.py)."""
        return TrainingContext(
            self.acc,
            self.run_dir,
            self.yaml,
            self.cfg.run.seed,
            progress=show_progress(self.cfg.run),
            trackers=self.trackers,
        )


def open_stage(
    cfg: ExperimentConfig,
    stage: str,
    grad_accum_steps: int = 1,
    tensorboard: bool = False,
    seed: int | None = None,
    folder: str | None = None,
) -> Stage:
    """``stage``: the config section; ``folder``: the stage's folder when it is not the section's name
    (a named fine-tune: ``finetune_slf``); ``tensorboard``: the section's old-style switch."""
    run_dir = RunDir.of(cfg.run)
    if tensorboard:
        print(f"[{stage}] note: {stage}.tensorboard=true is deprecated; use run.log_with=[tensorboard]")
    trackers = list(dict.fromkeys([*cfg.run.log_with, *(["tensorboard"] if tensorboard else [])]))
    log_dir = run_dir.stage(folder or stage)
    prepare_tracker_environment(trackers, log_dir, Path(cfg.run.root))
    acc = make_accelerator(cfg.run, grad_accum_steps, log_dir, trackers)
    if trackers:
        init_trackers(
            acc,
            trackers,
            f"{cfg.run.name}/{folder or stage}",
            OmegaConf.to_container(OmegaConf.structured(getattr(cfg, stage))),
        )
    set_seed(cfg.run.seed if seed is None else seed)
    yaml = to_yaml(cfg)
    with acc.main_process_first():
        data = ensure_run_data(cfg.data, run_dir, yaml, show_progress(cfg.run) and acc.is_main_process)
    return Stage(acc, run_dir, yaml, data, cfg, bool(trackers))
