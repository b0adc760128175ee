"""Calibration: expected calibration error (torchmetrics) and reliability-diagram bins."""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import multiclass_calibration_error


def expected_calibration_error(
    probs: torch.Tensor, y: torch.Tensor, num_classes: int, n_bins: int = 15
) -> float:
    """ECE with equal-width confidence bins and the l1 norm, via ``torchmetrics``.

    ECE = Σ_b (|B_b| / N) · |acc(B_b) - conf(B_b)|, where conf is the top-1 probability.

    Args:
        probs: (N, C) class probabilities (rows sum to 1).
        y: (N,) labels.
        num_classes: C.
        n_bins: number of bins on [0, 1].

    Returns:
        The ECE in [0, 1], or NaN for an empty input.
    """
    if y.numel() == 0:
        return float("nan")
    # The functional form on purpose: the MulticlassCalibrationError *module* all-gathers its state across
    # ranks in compute() whenever torch.distributed is up, which would count every point world_size times
    # here (each rank merges all chunks) and hang if only some ranks computed it.
    return float(
        multiclass_calibration_error(probs.float(), y, num_classes=num_classes, n_bins=n_bins, norm="l1")
    )


def reliability_bins(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin count, mean confidence and accuracy, binned like torchmetrics (right-closed bins).

    Only for the diagram and the report table: the ECE number itself comes from torchmetrics.
    """
    conf, pred = probs.float().max(dim=1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    # torchmetrics: bucketize(conf, linspace(0,1,n+1), right=True) - 1, so a confidence of exactly 1.0
    # lands in an extra bin of its own; the diagram folds it into the last real bin.
    idx = (torch.bucketize(conf, edges, right=True) - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).float()
    conf_sum = torch.zeros(n_bins).scatter_add_(0, idx, conf)
    acc_sum = torch.zeros(n_bins).scatter_add_(0, idx, correct)
    safe = count.clamp_min(1)
    return {
        "lower": edges[:-1].tolist(),
        "upper": edges[1:].tolist(),
        "count": [int(c) for c in count.tolist()],
        "confidence": [
            c if n else math.nan for c, n in zip((conf_sum / safe).tolist(), count.tolist(), strict=True)
        ],
        "accuracy": [
            a if n else math.nan for a, n in zip((acc_sum / safe).tolist(), count.tolist(), strict=True)
        ],
    }


def mean_confidence_of_wrong(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean top-1 probability over misclassified points (NaN if none): how sure the model is when fooled."""
    conf, pred = probs.float().max(dim=1)
    wrong = pred != y
    return float(conf[wrong].mean()) if wrong.any() else float("nan")
