"""The data stage: convert the configured dataset into webdataset shards (or check the shards you point
at) and write ``runs/<run>/data/manifest.json``; converters also write ``shards/`` with ``dataset.json``.

The other stages run it implicitly (``data.prepare.ensure_run_data``, from ``stages/_runtime.py``) when it is
missing or was made with other data settings, so ``make data`` is optional.
"""

from __future__ import annotations

from data.prepare import prepare_run_data
from pipeline.config import ExperimentConfig, to_yaml
from pipeline.run import RunDir, show_progress

from ._cli import main


def run(cfg: ExperimentConfig) -> dict:
    manifest = prepare_run_data(cfg.data, RunDir.of(cfg.run), to_yaml(cfg), show_progress(cfg.run))
    for split, info in manifest["outputs"]["splits"].items():
        notes = (
            [f"{len(info['damaged_shards'])} damaged shards kept to their last readable sample"]
            if info.get("damaged_shards")
            else []
        )
        notes += [f"{info['skipped']['count']} unusable files skipped"] if info.get("skipped") else []
        notes += [] if info.get("labeled", True) else ["unlabeled"]
        size = "size unknown" if info.get("size_unknown") else f"{info['count']:6d} samples"
        print(
            f"data: {split:5s} {size}  {info['urls']}"
            + (f"  ({'; '.join(notes)}; see the manifest)" if notes else "")
        )
    return manifest


if __name__ == "__main__":
    main("data", run)
