"""Experiment trackers (accelerate's tensorboard / wandb / mlflow): where they write and what they are told.

They must work with no account and no network (tests, clusters without internet): wandb runs offline and
mlflow writes a local file store unless the user's environment says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from accelerate import Accelerator


def prepare_tracker_environment(trackers: list[str], log_dir: Path, root: Path) -> None:
    """Defaults that keep trackers local; variables the user set win (``setdefault``)."""
    if "wandb" in trackers:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(log_dir))
    if "mlflow" in trackers:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (Path(root).resolve() / "mlruns").as_uri())


def init_trackers(acc: Accelerator, trackers: list[str], run_name: str, settings: dict) -> None:
    """Start the trackers with the stage's settings as hyperparameters (scalars only; lists become strings)."""
    # tensorboard writes under <stage>/<project>: "tensorboard" keeps runs/<run>/<stage>/tensorboard/
    project = "tensorboard" if "tensorboard" in trackers else "robustpretrain"
    acc.init_trackers(
        project,
        config=flat_scalars(settings),
        init_kwargs={"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}},
    )


def flat_scalars(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_scalars(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
