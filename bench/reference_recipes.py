"""Faithful transcriptions of the reference recipes' steps, for benchmarks only (never used to train).

TRADES (yaodongyu/TRADES ``trades.py``, Linf): the clean forward is recomputed inside every attack step
(``model(x_natural)`` under ``enable_grad``), and the attack takes ``torch.autograd.grad(loss_kl,
[x_adv])`` — an input-only gradient, but through both branches' graphs. The start point
x + 0.001·N is not clamped. Our step differs only in computing the clean prediction once per step (the
model is in eval(), so it is the same value every iteration) and in clamping the start point to [0,1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_trades_step(model, x, y, eps, step_size, steps, beta):
    criterion_kl = torch.nn.KLDivLoss(reduction="sum")
    model.eval()
    batch_size = len(x)
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, device=x.device)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    model.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y) + beta * (1.0 / batch_size) * criterion_kl(
        F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1)
    )
    loss.backward()
    return loss.detach()
