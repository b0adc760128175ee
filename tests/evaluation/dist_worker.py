"""Subprocess worker for the distributed test: evaluates the tiny model, the main rank writes the report.

Run alone (``python dist_worker.py WORK OUT``) or under ``torchrun --nproc_per_node 2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)  # identical arithmetic in every process, and no oversubscription of the cores
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `pipeline`

from accelerate import Accelerator  # noqa: E402
from eval_helpers import make_data, train_tiny  # noqa: E402

from pipeline.evaluation import EvaluateConfig, evaluate_model, write_report  # noqa: E402


def config() -> EvaluateConfig:
    cfg = EvaluateConfig(eps=16 / 255, seed=11, chunk_size=8, batch_size=16)
    cfg.sweep.eps = [0.0, 0.5]
    cfg.smoothing.enabled = True
    cfg.smoothing.n, cfg.smoothing.n0, cfg.smoothing.n_examples = 300, 20, 16
    return cfg


def main(work_dir: str, out_dir: str) -> None:
    accelerator = Accelerator(cpu=True)
    model, (x, y) = train_tiny(), make_data(32, seed=7)
    report = evaluate_model(
        model, x, y, config(), num_classes=10, work_dir=work_dir, accelerator=accelerator, progress=False
    )
    if accelerator.is_main_process:
        write_report(report, out_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # tears down the gloo process group cleanly


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
