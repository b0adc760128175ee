"""The data stage: convert the configured dataset into webdataset shards (or check the shards you point
at) and write ``runs/<run>/data/manifest.json``; converters also write ``shards/`` with ``dataset.json``.

The other stages run it implicitly (``ensure_data``) when it is missing or was made with other data
settings, so ``make data`` is optional.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data.prepare import data_fingerprint, prepare_dataset
from pipeline.config import ExperimentConfig, RunConfig, to_yaml
from pipeline.errors import DataError, UpstreamMissing
from pipeline.run import RunDir, StageRun

from ._cli import main


def show_progress(run: RunConfig) -> bool:
    """Progress bars only on a terminal: under SLURM, CI or a redirected ``make`` they would fill the log
    with carriage returns; the training loop prints one plain line per epoch instead."""
    return run.progress and sys.stderr.isatty()


def run_data_stage(cfg: ExperimentConfig, config_yaml: str, progress: bool = True) -> dict:
    """Convert (or describe) the dataset and write the data stage's manifest; returns the manifest."""
    d, run_dir = cfg.data, RunDir.of(cfg.run)
    with StageRun(run_dir, "data", config_yaml) as run:
        out_dir = None if d.dataset == "shards" else (Path(d.out_dir) if d.out_dir else run.dir / "shards")
        info = prepare_dataset(d, out_dir, progress)
        if out_dir is not None:
            for split in info["splits"].values():
                split.pop("shards", None)  # the checksums live in dataset.json
            run.outputs["dataset_json"] = str(out_dir / "dataset.json")
        if info["num_classes"] and info["num_classes"] != d.num_classes:  # 0: unlabeled images
            raise DataError(f"the dataset has {info['num_classes']} classes but data.num_classes={d.num_classes}; "
                            f"set data.num_classes={info['num_classes']}")
        run.outputs.update(splits=info["splits"], classes=info["classes"], num_classes=info["num_classes"],
                           image_size=info["image_size"], fingerprint=data_fingerprint(d))
    return run_dir.read_manifest("data")


def ensure_data(cfg: ExperimentConfig, config_yaml: str, progress: bool = True) -> dict:
    """The data manifest for ``cfg``; runs the data stage first when it is missing, incomplete or was
    made with other data settings."""
    try:
        manifest = RunDir.of(cfg.run).read_manifest("data")
        if manifest["outputs"].get("fingerprint") == data_fingerprint(cfg.data):
            return manifest
    except UpstreamMissing:
        pass
    return run_data_stage(cfg, config_yaml, progress)


def run(cfg: ExperimentConfig) -> dict:
    manifest = run_data_stage(cfg, to_yaml(cfg), show_progress(cfg.run))
    for split, info in manifest["outputs"]["splits"].items():
        notes = [f"{len(info['damaged_shards'])} damaged shards kept to their last readable sample"] if info.get("damaged_shards") else []
        notes += [f"{info['skipped']['count']} unusable files skipped"] if info.get("skipped") else []
        notes += [] if info.get("labeled", True) else ["unlabeled"]
        size = "size unknown" if info.get("size_unknown") else f"{info['count']:6d} samples"
        print(f"data: {split:5s} {size}  {info['urls']}" + (f"  ({'; '.join(notes)}; see the manifest)" if notes else ""))
    return manifest


if __name__ == "__main__":
    main("data", run)
