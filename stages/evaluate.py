"""Evaluate robustness: clean accuracy, PGD-k, AutoAttack (pyautoattack, the reference algorithms),
ε-sweep, calibration under attack, randomized smoothing and gradient-masking checks.

Evaluates this run's fine-tuned classifier by default (`evaluate.model` for an exported folder or a timm
name + safetensors file) and writes ``runs/<run>/evaluate/report.{json,md}`` and ``per_sample.csv``.
"""

from pipeline.evaluate import run_evaluate

from ._cli import main

if __name__ == "__main__":
    main("evaluate", run_evaluate)
