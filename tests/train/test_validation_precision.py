"""Validation runs at the training steps' precision: under run.mixed_precision=bf16, in bf16 autocast."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from pipeline.attacks import AttackConfig
from pipeline.train.selection import validation_accuracy


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 4 * 4, 10)
        self.autocast: list[bool] = []

    def forward(self, x):
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return self.lin(x.flatten(1))


def fake_accelerator(bf16: bool):
    """What validation_accuracy reads of an Accelerator (one process), with accelerate's autocast rule."""
    return SimpleNamespace(
        device=torch.device("cpu"),
        process_index=0,
        num_processes=1,
        reduce=lambda t, _op: t,
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
    )


def test_validation_follows_mixed_precision():
    x, y = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8), torch.randint(0, 10, (8,))
    attack = AttackConfig(eps=8 / 255, step_size=2 / 255, steps=2)
    for bf16 in (False, True):
        model = Recorder()
        metrics = validation_accuracy(model, x, y, attack, fake_accelerator(bf16), batch=4)
        assert metrics["val_n"] == 8
        assert model.autocast and all(a == bf16 for a in model.autocast)  # clean and PGD forwards alike
