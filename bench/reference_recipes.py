"""Literal implementations of the reference recipes, for benchmarks and tests only (never used to train).

They reproduce what the ACL and TRADES reference code does per step, including its costs: the clean
forward recomputed at every TRADES attack step, and ``loss.backward()`` in attack loops (parameter
gradients computed and thrown away).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_trades_step(model, x, y, eps, step_size, steps, beta):
    model.eval()
    x_adv = (x.detach() + 0.001 * torch.randn_like(x)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        model.zero_grad()
        loss_kl.backward()
        x_adv = x_adv.detach() + step_size * x_adv.grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    model.train()
    model.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y) + beta * F.kl_div(
        F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="sum") / x.shape[0]
    loss.backward()
    return loss.detach()
