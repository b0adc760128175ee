"""Putting a model in ``eval()`` for a while and restoring it exactly.

Attacks run the model in ``eval()`` (their forward passes must not move BN running statistics) and the
caller's modes must come back *per module*: a frozen-backbone probe keeps its backbone in ``eval()``
and only its head in ``train()``, and a plain ``model.train(was_training)`` would undo that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module, freeze_params: bool = False) -> Iterator[nn.Module]:
    """``model.eval()`` inside the block; every module's training flag is restored after it.

    ``freeze_params``: also stop parameters requiring gradients inside the block (attacks need input
    gradients only, and autograd then skips every weight-gradient kernel); restored after too.
    """
    flags = [(m, m.training) for m in model.modules()]
    requires_grad = [p.requires_grad for p in model.parameters()] if freeze_params else []
    model.eval()
    if freeze_params:
        for p in model.parameters():
            p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag  # per module, not m.train(): that would recurse into children in eval()
        if freeze_params:
            for p, flag in zip(model.parameters(), requires_grad, strict=True):
                p.requires_grad_(flag)
