"""FARE's inner maximisers [0]: the attacks that push an image's embedding away from a target embedding,
maximising the squared ℓ2 distance ``‖f(x + δ) − t‖²`` (summed over embedding dimensions).

Both are hand-written because no library attacks this loss the reference's way. pyautoattack's ``APGDAttack``
takes only classification losses (ce / dlr / their targeted forms, chosen by name), always starts from a
random point and keeps per-sample bests judged by misclassification; torchattacks' APGD is the same with
fewer options. The reference (chs20/RobustVLM ``train/pgd_train.py``, ``train/apgd_train.py``) differs from
the plain PGD of :mod:`pipeline.attacks.pgd` too: momentum on the normalised gradient, and a uniform start
that is *not* clipped to [0,1] before the first forward. The order of operations below is the reference's
(checked step for step in ``tests/objectives/test_fare_parity.py``).

Gradients are taken w.r.t. the input only (``torch.autograd.grad``), as in the reference. The caller
decides the network's mode (FARE attacks in ``eval()``).

[0] Schlarmann et al., Robust CLIP: Unsupervised Adversarial Fine-Tuning of Vision Embeddings for Robust
    Large Vision-Language Models, ICML 2024.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Embed = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) in [0,1] -> (B, D)
EMBEDDING_NORMS = ("Linf", "L2")


def squared_l2(embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(B, D), (B, D) -> (B,)``: squared ℓ2 distance per sample, *not* divided by D (the reference's
    ``l2()``: ``F.mse_loss(reduction='none').sum(dim=1)``)."""
    return F.mse_loss(embedding, target, reduction="none").sum(dim=1)


def _unit(t: torch.Tensor, norm: str) -> torch.Tensor:
    """The reference's ``normalize_grad``: sign for Linf, per-sample unit ℓ2 for L2."""
    if norm == "Linf":
        return t.sign()
    return F.normalize(t.reshape(t.shape[0], -1), p=2, dim=1).view_as(t)


def _project_delta(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """The reference's ``project_perturbation``: clamp (Linf), ``torch.renorm`` per sample (L2)."""
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    return torch.renorm(delta, p=2, dim=0, maxnorm=eps)


def embedding_pgd(
    embed: Embed,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    norm: str,
    eps: float,
    steps: int,
    step_size: float,
    momentum: float = 0.9,
) -> torch.Tensor:
    """FARE's PGD: maximise the batch mean of :func:`squared_l2` ``(embed(x + δ), target)``.

    Start δ ~ U(−ε, ε) (Linf or L2 alike: the reference draws ``uniform_(-eps, eps)``), not clipped to
    [0,1] before the first forward. Each step: g = unit(∇δ) (NaNs zeroed), v = unit(momentum·v + g),
    δ ← project(δ + step_size·v), then δ ← clamp(x + δ, 0, 1) − x.

    Returns ``x + δ``, detached (in [0,1] after at least one step)."""
    x = x.detach()
    target = target.detach()
    delta = torch.zeros_like(x).uniform_(-eps, eps)  # global RNG, as the reference: seeded by the caller
    velocity = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = squared_l2(embed(x + delta), target).mean()
        (grad,) = torch.autograd.grad(loss, delta)  # input-only: no weight-gradient kernels
        with torch.no_grad():
            grad = grad.masked_fill(grad.isnan(), 0.0)  # the reference zeroes NaN gradients (and says so)
            velocity = _unit(momentum * velocity + _unit(grad, norm), norm)
            delta = _project_delta(delta + step_size * velocity, norm, eps)
            delta = torch.clamp(x + delta, 0, 1) - x  # into image space
    return (x + delta).detach()


def _per_sample_l2(t: torch.Tensor) -> torch.Tensor:
    # (B, ...) -> (B, 1, ..., 1), the reference's L2_norm(keepdim=True) (no clamp; callers add 1e-12)
    return (t**2).reshape(t.shape[0], -1).sum(-1).sqrt().view(-1, *[1] * (t.dim() - 1))


def _into_ball(z: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """APGD's projection onto the ε-ball around ``x`` intersected with [0,1] (apgd_train.py's order)."""
    if norm == "Linf":
        return torch.clamp(torch.min(torch.max(z, x - eps), x + eps), 0.0, 1.0)
    d = z - x
    n = _per_sample_l2(d)
    return torch.clamp(x + d / (n + 1e-12) * torch.min(eps * torch.ones_like(x), n), 0.0, 1.0)


def _oscillating(history: torch.Tensor, i: int, k: int, rho: float = 0.75) -> torch.Tensor:
    """(B,) 1.0 where at most ``k·rho`` of the last ``k`` steps increased the loss. ``history[i - c - 1]``
    may be row −1 (the last, still-zero row) at the first check: the reference indexes it the same way."""
    increases = torch.zeros(history.shape[1], device=history.device)
    for c in range(k):
        increases += (history[i - c] > history[i - c - 1]).float()
    return (increases <= k * rho * torch.ones_like(increases)).float()


def embedding_apgd(
    embed: Embed,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    norm: str,
    eps: float,
    steps: int,
    initial_step: float | None = None,
) -> torch.Tensor:
    """FARE's APGD (Croce & Hein's step-size schedule, as ``train/apgd_train.py`` runs it): maximise the sum
    over the batch of :func:`squared_l2` ``(embed(x'), target)``, starting at x (no random start), step
    2ε (or ``initial_step``), momentum 0.75, step halved (and the point reset to its best) where the loss
    oscillates or stalls at each checkpoint.

    Returns the *last* iterate, not the best: the reference returns ``x_best_adv``, which it overwrites with
    the current iterate wherever ``argmax(embedding) != label`` — with an embedding compared to an ImageNet
    class index that holds for nearly every image, and we have no labels, so the last iterate is what it
    returns."""
    x = x.detach()
    target = target.detach()
    b = x.shape[0]
    shape = (b, *[1] * (x.dim() - 1))
    n_check = max(int(0.22 * steps), 1)
    n_min = max(int(0.06 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    k = n_check
    alpha = initial_step / eps if initial_step else 2.0
    step = alpha * eps * torch.ones(shape, device=x.device)

    def loss_and_grad(point: torch.Tensor, with_grad: bool = True):
        point = point.clone().requires_grad_(True)
        per_sample = squared_l2(embed(point), target)  # (B,)
        grad = torch.autograd.grad(per_sample.sum(), [point])[0].detach() if with_grad else None
        return per_sample.detach(), grad

    x_adv = x.clone().clamp(0.0, 1.0)
    loss, grad = loss_and_grad(x_adv)
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss.clone()
    last = x_adv.clone()
    history = torch.zeros([steps, b], device=x.device)  # each step's per-sample loss
    best_at_check, reduced_at_check = loss_best.clone(), torch.ones_like(loss_best)
    x_prev = x_adv.clone()
    since_check = 0
    for i in range(steps):
        with torch.no_grad():
            momentum_dir = x_adv - x_prev
            x_prev = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            if norm == "Linf":
                z = _into_ball(x_adv + step * torch.sign(grad), x, norm, eps)
            else:
                z = _into_ball(x_adv + step * grad / (_per_sample_l2(grad) + 1e-12), x, norm, eps)
            x_adv = _into_ball(x_adv + (z - x_adv) * a + momentum_dir * (1 - a), x, norm, eps)
        loss, new_grad = loss_and_grad(x_adv, with_grad=i < steps - 1)  # the last gradient is never used
        if new_grad is not None:
            grad = new_grad
        last = x_adv.clone()
        history[i] = loss
        better = loss > loss_best
        x_best[better] = x_adv[better]
        grad_best[better] = grad[better]
        loss_best[better] = loss[better]
        since_check += 1
        if since_check == k:
            stalled = (1.0 - reduced_at_check) * (best_at_check >= loss_best).float()
            reduce = torch.max(_oscillating(history, i, k), stalled)
            reduced_at_check, best_at_check = reduce.clone(), loss_best.clone()
            if reduce.sum() > 0:
                m = reduce > 0
                step[m] /= 2.0
                x_adv[m] = x_best[m].clone()
                grad[m] = grad_best[m].clone()
            since_check = 0
            k = max(k - shrink, n_min)
    return last.detach()
