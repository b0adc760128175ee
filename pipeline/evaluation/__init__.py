"""Robustness evaluation of any [0,1]-image classifier: clean, PGD-k, AutoAttack (pyautoattack),
epsilon sweep, calibration under attack, randomized-smoothing certificates, gradient-masking checks.

Typical use (what ``stages/evaluate.py`` does)::

    report = evaluate_model(model, x_test, y_test, cfg.evaluate, num_classes=10,
                            work_dir=run_dir / "evaluate", accelerator=accelerator)
    if accelerator.is_main_process:
        write_report(report, run_dir / "evaluate")
        print(report.summary_table())
"""

from .chunks import derive_seed
from .config import (
    AutoAttackConfig,
    CalibrationConfig,
    EvaluateConfig,
    PGDEvalConfig,
    SmoothingConfig,
    SweepConfig,
)
from .report import EvalReport, write_report
from .runner import evaluate_batches, evaluate_model

__all__ = [
    "AutoAttackConfig",
    "CalibrationConfig",
    "EvalReport",
    "EvaluateConfig",
    "PGDEvalConfig",
    "SmoothingConfig",
    "SweepConfig",
    "derive_seed",
    "evaluate_batches",
    "evaluate_model",
    "write_report",
]
