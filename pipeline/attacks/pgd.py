"""Projected gradient descent in pixel space [0] — the one inner maximiser every stage shares.

The attack maximises an arbitrary scalar ``loss_fn(x_adv)`` and takes gradients with respect to the
*input only* (``torch.autograd.grad``): parameter gradients are never computed, which is what makes an
attack step cost one forward plus an input-only backward.

[0] Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

NORMS = ("Linf", "L2")
STARTS = ("uniform", "normal", "zero")


@dataclass
class AttackConfig:
    """PGD threat model and budget; all values in [0,1] pixel units."""

    norm: str = "Linf"  # Linf | L2
    eps: float = 8 / 255  # radius of the ball
    step_size: float = 2 / 255  # per-iteration step (Linf: sign step; L2: normalised-gradient step)
    steps: int = 10  # iterations; 0 = no attack (returns the start point clamped to the ball)
    start: str = "uniform"  # uniform in the ball | normal (x + 0.001·N(0,1), TRADES) | zero


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    # (B, C, H, W) -> (B, 1, 1, 1) L2 norm per sample, kept broadcastable
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project a perturbation onto the ``norm`` ball of radius ``eps``."""
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _flat_norm(delta)).clamp(max=1.0)
    return delta * factor


def random_start(x: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    """The starting point of the attack (already inside the ball and [0,1])."""
    if cfg.start == "zero":
        delta = torch.zeros_like(x)
    elif cfg.start == "normal":
        delta = 0.001 * torch.randn_like(x)  # TRADES' start: a tiny Gaussian, not a ball sample
    elif cfg.norm == "Linf":
        delta = torch.empty_like(x).uniform_(-cfg.eps, cfg.eps)
    else:  # uniform direction, radius uniform in [0, eps]
        direction = torch.randn_like(x)
        radius = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)
        delta = direction / _flat_norm(direction) * radius * cfg.eps
    return (x + project(delta, cfg.norm, cfg.eps)).clamp(0.0, 1.0)


def pgd_attack(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    cfg: AttackConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """Maximise ``loss_fn`` over the ``cfg.norm`` ball around ``x`` intersected with [0,1].

    Args:
        loss_fn: maps a batch ``x_adv`` (same shape as ``x``) to a scalar to *increase*. It should sum
            (not average) per-sample losses when steps are sign steps; either works for Linf.
        x: clean inputs in [0,1], (B, C, H, W). Not modified.
        cfg: threat model and budget.
        on_step: optional callback ``(step, loss)`` for logging.

    Returns:
        The adversarial batch, detached, inside the ball and [0,1].
    """
    x = x.detach()
    x_adv = random_start(x, cfg)
    for step in range(cfg.steps):
        x_adv.requires_grad_(True)
        loss = loss_fn(x_adv)
        # input-only gradient: autograd skips every weight-gradient kernel
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            if cfg.norm == "Linf":
                x_adv = x_adv + cfg.step_size * grad.sign()
            else:
                x_adv = x_adv + cfg.step_size * grad / _flat_norm(grad)
            x_adv = (x + project(x_adv - x, cfg.norm, cfg.eps)).clamp(0.0, 1.0)
        if on_step is not None:
            on_step(step, float(loss.detach()))
    return x_adv.detach()


def cross_entropy_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    """Untargeted PGD on the cross-entropy loss (PGD-AT's inner loop and the quick evaluation attack).

    The caller decides the model's mode; evaluation and PGD-AT attack in ``eval()``.
    """
    ce = torch.nn.CrossEntropyLoss(reduction="sum")
    return pgd_attack(lambda xa: ce(model(xa), y), x, cfg)
