"""Randomized-smoothing certification, CERTIFY of Cohen, Rosenfeld & Kolter (ICML 2019).

The smoothed classifier is g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ²I) added in pixel space (the
base model sees [0,1]-scaled images plus noise, unclamped, as in the paper). CERTIFY picks the top class
from n0 noise draws, then counts it in n fresh draws; with the one-sided Clopper–Pearson lower bound
p_A_lower at level 1 - α, g is robust within L2 radius σ·Φ⁻¹(p_A_lower) around x (if p_A_lower > 1/2),
and abstains otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from scipy.stats import beta, norm

if TYPE_CHECKING:
    from .measurements.smoothing import SmoothingConfig

ABSTAIN = -1


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper–Pearson lower confidence bound on a binomial proportion.

    Equals the lower end of the two-sided exact interval at level 1 - 2α (what Cohen et al. compute
    with ``proportion_confint(nA, n, alpha=2*alpha, method="beta")``).
    """
    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def certified_radius(p_lower: float, sigma: float) -> float:
    """σ·Φ⁻¹(p_A_lower): the certified L2 radius (meaningful only for p_A_lower ≥ 1/2)."""
    return float(sigma * norm.ppf(p_lower))


@dataclass
class Certificate:
    """CERTIFY's answer for one input."""

    prediction: int  # class, or ABSTAIN (-1)
    radius: float  # certified L2 radius; 0.0 when abstaining
    p_lower: float  # Clopper–Pearson lower bound on P(f(x+δ) = prediction)
    n_top: int  # count of the selected class among the n estimation draws


def _class_counts(
    model: torch.nn.Module,
    x: torch.Tensor,
    num: int,
    cfg: SmoothingConfig,
    num_classes: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """Counts of the base model's predictions on ``num`` noisy copies of the single image ``x``."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    remaining = num
    with torch.no_grad():
        while remaining > 0:
            b = min(cfg.batch_size, remaining)
            noise = torch.randn((b, *x.shape), generator=gen, device=x.device, dtype=x.dtype) * cfg.sigma
            pred = model(x.unsqueeze(0) + noise).argmax(dim=1)
            counts += torch.bincount(pred.cpu(), minlength=num_classes)
            remaining -= b
    return counts


def certify(
    model: torch.nn.Module, x: torch.Tensor, cfg: SmoothingConfig, num_classes: int, seed: int
) -> list[Certificate]:
    """Certify each image of a batch.

    Args:
        model: base classifier, in eval mode, mapping images to logits.
        x: (B, C, H, W) inputs in [0, 1].
        cfg: σ, n0, n, α and the noise batch size.
        num_classes: number of logits.
        seed: seeds the noise generator; images are processed in order, so results are reproducible.

    Returns:
        One :class:`Certificate` per image.
    """
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    out = []
    for xi in x:
        top = int(_class_counts(model, xi, cfg.n0, cfg, num_classes, gen).argmax())
        n_top = int(_class_counts(model, xi, cfg.n, cfg, num_classes, gen)[top])
        p_lower = clopper_pearson_lower(n_top, cfg.n, cfg.alpha)
        if p_lower < 0.5:
            out.append(Certificate(ABSTAIN, 0.0, p_lower, n_top))
        else:
            out.append(Certificate(top, certified_radius(p_lower, cfg.sigma), p_lower, n_top))
    return out


def certified_accuracy(
    pred: torch.Tensor, radius: torch.Tensor, y: torch.Tensor, radii: list[float]
) -> list[float]:
    """Fraction of points whose smoothed prediction is correct *and* certified at least at each radius."""
    if y.numel() == 0:
        return [float("nan")] * len(radii)
    correct = pred == y
    return [float((correct & (radius >= r)).double().mean()) for r in radii]
