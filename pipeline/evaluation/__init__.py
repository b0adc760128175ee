"""Robustness evaluation of any [0,1]-image classifier: clean, PGD-k, AutoAttack (pyautoattack),
epsilon sweep, calibration under attack, randomized-smoothing certificates, gradient-masking checks.

Use (the evaluate stage, ``stages/evaluate.py``, does this on the test split)::

    from pipeline.evaluation import EvaluateConfig, evaluate_model, summary_table, write_report

    cfg = EvaluateConfig(eps=8 / 255, n_examples=1000)   # or the stage config's ``evaluate`` section
    report = evaluate_model(model, x_test, y_test, cfg, num_classes=10,
                            work_dir=run_dir, accelerator=accelerator)
    if accelerator.is_main_process:
        write_report(report, run_dir)   # report.json, report.md, per_sample.csv, figures
        print(summary_table(report))

Each measurement is one module of ``measurements/`` (clean, pgd, autoattack with its versions, threats,
transfer, calibration, sweep, smoothing, corruptions): its settings, its per-chunk record, its merge, its report sections and
its own checks; ``measurements.MEASUREMENTS`` lists them in the order of work. The rest loops over that
registry: ``runner`` (the entry points), ``chunks`` (work units, fingerprints, resume files), ``chunk_eval``
(one chunk through every measurement), ``merge`` (chunks → report), ``masking`` (the checks that compare
measurements), ``writers`` (report → files and summary), ``report`` (:class:`EvalReport`), ``config``
(:class:`EvaluateConfig`, one section per measurement). The algorithms they call: ``autoattack_runner``
(pyautoattack, per-attack bookkeeping), ``fast_autoattack`` and ``malt``, ``smoothing`` (CERTIFY),
``calibration`` (ECE), ``corruption_sources`` (imagecorruptions or pre-computed files), ``intervals``, ``counting``, ``sampling`` (:func:`first_n`, :func:`derive_seed`).
Figures: :mod:`pipeline.plots`.
"""

from .config import (
    AutoAttackConfig,
    CalibrationConfig,
    CorruptionsConfig,
    EvaluateConfig,
    PGDEvalConfig,
    SmoothingConfig,
    SweepConfig,
    TransferConfig,
    first_n,
)
from .report import EvalReport
from .runner import evaluate_batches, evaluate_model, quick_config
from .sampling import derive_seed
from .writers import summary_table, write_report

__all__ = [
    "AutoAttackConfig",
    "CalibrationConfig",
    "CorruptionsConfig",
    "EvalReport",
    "EvaluateConfig",
    "PGDEvalConfig",
    "SmoothingConfig",
    "SweepConfig",
    "TransferConfig",
    "derive_seed",
    "evaluate_batches",
    "evaluate_model",
    "first_n",
    "quick_config",
    "summary_table",
    "write_report",
]
