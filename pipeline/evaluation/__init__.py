"""Robustness evaluation of any [0,1]-image classifier: clean, PGD-k, AutoAttack (pyautoattack),
epsilon sweep, calibration under attack, randomized-smoothing certificates, gradient-masking checks.

Use (the evaluate stage, ``pipeline/evaluate.py``, does this on the test split)::

    from pipeline.evaluation import EvaluateConfig, evaluate_model, summary_table, write_report

    cfg = EvaluateConfig(eps=8 / 255, n_examples=1000)   # or the stage config's ``evaluate`` section
    report = evaluate_model(model, x_test, y_test, cfg, num_classes=10,
                            work_dir=run_dir, accelerator=accelerator)
    if accelerator.is_main_process:
        write_report(report, run_dir)   # report.json, report.md, per_sample.csv, figures
        print(summary_table(report))

Modules: ``config`` (settings, :func:`first_n`), ``runner`` (the entry points), ``chunks`` (work units,
seeds, resume files), ``chunk_eval`` (what is measured on one chunk), ``autoattack_runner``,
``smoothing``, ``calibration``, ``counting``, ``masking`` (the measurements), ``merge`` (chunks → report),
``report`` (:class:`EvalReport`), ``writers`` (report → files and summary). Figures: :mod:`pipeline.plots`.
"""

from .chunks import derive_seed
from .config import (
    AutoAttackConfig,
    CalibrationConfig,
    EvaluateConfig,
    PGDEvalConfig,
    SmoothingConfig,
    SweepConfig,
    first_n,
)
from .report import EvalReport
from .runner import evaluate_batches, evaluate_model, quick_config
from .writers import summary_table, write_report

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
    "first_n",
    "quick_config",
    "summary_table",
    "write_report",
]
