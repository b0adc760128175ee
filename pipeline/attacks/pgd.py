"""Projected gradient descent in pixel space [0] — the inner maximiser every stage shares.

The attack maximises an arbitrary scalar ``loss_fn(x_adv)`` and takes gradients with respect to the
*input only* (``torch.autograd.grad``): parameter gradients are never computed, which is what makes an
attack step cost one forward plus an input-only backward.

[0] Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import ATTACKS, STARTS, AttackConfig, LossFn, cross_entropy_attack

PGD_NORMS = ("Linf", "L2")
__all__ = ["AttackConfig", "PGD_NORMS", "cross_entropy_pgd", "pgd_attack", "project", "random_start"]


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    # (B, C, H, W) -> (B, 1, 1, 1) L2 norm per sample, kept broadcastable
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project a perturbation onto the ``norm`` ball of radius ``eps``."""
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _flat_norm(delta)).clamp(max=1.0)
    return delta * factor


@STARTS.register("zero")
def _zero_start(x: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    return torch.zeros_like(x)


@STARTS.register("normal")
def _normal_start(x: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    return 0.001 * torch.randn_like(x)  # TRADES' start: a tiny Gaussian, not a ball sample


@STARTS.register("uniform")
def _uniform_start(x: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    if cfg.norm == "Linf":
        return torch.empty_like(x).uniform_(-cfg.eps, cfg.eps)
    # uniform direction, radius uniform in [0, eps]
    direction = torch.randn_like(x)
    radius = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)
    return direction / _flat_norm(direction) * radius * cfg.eps


def random_start(x: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    """The starting point of the attack (already inside the ball and [0,1])."""
    delta = STARTS.get(cfg.start, "attack.start")(x, cfg)
    return (x + project(delta, cfg.norm, cfg.eps)).clamp(0.0, 1.0)


@ATTACKS.register("pgd")
def pgd_attack(
    loss_fn: LossFn, x: torch.Tensor, cfg: AttackConfig, on_step: Callable[[int, float], None] | None = None
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


pgd_attack.norms = PGD_NORMS

# the name the tests and the reference-recipe benchmark know it by (PGD is the default attack)
cross_entropy_pgd = cross_entropy_attack
