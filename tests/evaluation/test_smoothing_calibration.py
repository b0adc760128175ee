"""Certification against a model whose smoothed prediction is known in closed form; ECE by hand; pass counting."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest, norm

from pipeline.attacks.pgd import AttackConfig, cross_entropy_pgd
from pipeline.evaluation import SmoothingConfig
from pipeline.evaluation.calibration import (
    expected_calibration_error,
    mean_confidence_of_wrong,
    reliability_bins,
)
from pipeline.evaluation.counting import PassCounter
from pipeline.evaluation.smoothing import ABSTAIN, certified_accuracy, certify


class Linear2(torch.nn.Module):
    """logits = (0, w·x + b): class 1 iff w·x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.flatten(1) @ self.w.flatten() + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


@pytest.mark.parametrize("target_z", [1.0, -0.5])
def test_certificate_of_a_linear_classifier(target_z):
    """Under x+δ, δ~N(0,σ²I): w·(x+δ)+b ~ N(m, σ²‖w‖²), so p_A = Φ(|m|/(σ‖w‖)) and the exact radius is |m|/‖w‖."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    x = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64)
    sigma = 0.25
    b = target_z * sigma * w.norm().item() - (x.flatten() @ w.flatten()).item()  # margin m = target_z·σ‖w‖
    cfg = SmoothingConfig(sigma=sigma, n0=100, n=20_000, alpha=0.001, batch_size=5_000)
    (cert,) = certify(Linear2(w, b), x, cfg, num_classes=2, seed=1)

    p_a = norm.cdf(abs(target_z))  # 0.84 and 0.69: both certified
    assert cert.prediction == (1 if target_z > 0 else 0)
    assert abs(cert.n_top / cfg.n - p_a) < 5 * math.sqrt(p_a * (1 - p_a) / cfg.n)
    # the radius is σ·Φ⁻¹ of the exact (Clopper–Pearson) one-sided lower bound, computed independently here
    p_lower = (
        binomtest(cert.n_top, cfg.n).proportion_ci(confidence_level=1 - 2 * cfg.alpha, method="exact").low
    )
    assert cert.p_lower == pytest.approx(p_lower, rel=1e-9)
    assert cert.radius == pytest.approx(sigma * norm.ppf(p_lower), rel=1e-9)
    true_radius = abs(target_z) * sigma  # distance to the decision boundary, |m| / ‖w‖
    assert true_radius - 0.03 < cert.radius < true_radius


def test_abstains_when_the_top_class_is_not_a_majority():
    w = torch.zeros(3, 2, 2)
    w[0, 0, 0] = 1.0
    x = torch.zeros(1, 3, 2, 2)  # margin 0: p_A = 1/2, the lower bound falls below 1/2
    cfg = SmoothingConfig(sigma=0.5, n0=50, n=2_000, alpha=0.001, batch_size=1_000)
    (cert,) = certify(Linear2(w, 0.0), x, cfg, num_classes=2, seed=0)
    assert cert.prediction == ABSTAIN and cert.radius == 0.0 and cert.p_lower < 0.5


def test_certified_accuracy_counts_correct_and_certified():
    pred, radius, y = (
        torch.tensor([1, 0, ABSTAIN, 1]),
        torch.tensor([0.3, 0.6, 0.0, 0.1]),
        torch.tensor([1, 1, 0, 1]),
    )
    assert certified_accuracy(pred, radius, y, [0.0, 0.2, 0.5]) == [0.5, 0.25, 0.0]


def test_ece_matches_a_hand_computation():
    probs = torch.tensor(
        [[0.90, 0.05, 0.05], [0.82, 0.10, 0.08], [0.20, 0.50, 0.30], [0.28, 0.62, 0.10], [0.88, 0.10, 0.02]]
    )
    y = torch.tensor([0, 1, 1, 0, 0])
    # 15 bins of width 1/15: {0.90, 0.88} share bin 13 (both right: |1 - 0.89|·2), 0.82 wrong (bin 12),
    # 0.50 right (bin 7), 0.62 wrong (bin 9)
    expected = (2 * 0.11 + 0.82 + 0.50 + 0.62) / 5
    assert expected_calibration_error(probs, y, num_classes=3, n_bins=15) == pytest.approx(expected, abs=1e-6)
    bins = reliability_bins(probs, y, 15)
    assert bins["count"][13] == 2 and bins["count"][12] == 1 and sum(bins["count"]) == 5
    assert bins["accuracy"][12] == 0.0 and bins["confidence"][13] == pytest.approx(0.89)
    assert mean_confidence_of_wrong(probs, y) == pytest.approx((0.82 + 0.62) / 2)


def test_pass_counter_counts_images_not_calls():
    model = PassCounter(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)))
    x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    cross_entropy_pgd(model, x, y, AttackConfig(eps=0.1, steps=4))
    assert (model.forwards, model.backwards) == (20, 20)
    # FAB-style: one forward, one backward per class through the retained graph
    xi = x.clone().requires_grad_()
    out = model(xi)
    for c in range(3):
        out[:, c].sum().backward(retain_graph=True)
    assert (model.forwards, model.backwards) == (25, 35)
    # EOT-style: the same tensor forwarded twice; each backward is counted once
    for _ in range(2):
        torch.autograd.grad(model(xi).sum(), xi)
    assert (model.forwards, model.backwards) == (35, 45)
    with torch.no_grad():
        model(x)
    assert model.snapshot().forward == 40 and model.snapshot().backward == 45
