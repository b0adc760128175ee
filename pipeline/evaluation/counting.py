"""Counting forward and backward passes, measured in images.

Method: :class:`PassCounter` wraps the model. Every call adds the batch size to ``forwards``. When the
call builds a graph that can reach the input (grad mode on and the input requires grad), the input is
routed through a fresh view carrying a tensor hook; autograd runs that hook once per backward pass
that reaches the input, and the hook adds the batch size to ``backwards``. The view is created per
call on purpose: a hook on the caller's tensor would stay registered across calls (APGD with EOT
forwards the same tensor many times) and fire once per registration.

So ``backwards`` counts input-gradient computations (what attacks do), including FAB's one backward per
class through a retained graph. Backward passes that only reach parameters are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PassCount:
    """Images forwarded and images back-propagated to the input."""

    forward: int = 0
    backward: int = 0

    def __add__(self, other: PassCount) -> PassCount:
        return PassCount(self.forward + other.forward, self.backward + other.backward)

    def __sub__(self, other: PassCount) -> PassCount:
        return PassCount(self.forward - other.forward, self.backward - other.backward)


class PassCounter(torch.nn.Module):
    """Transparent wrapper that counts the images going through ``model`` forward and backward.

    Args:
        model: any module mapping a batch of images to logits.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += grad.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            x = x.view_as(x)  # a per-call node, so each backward through this call fires the hook once
            x.register_hook(self._count_backward)
        return self.model(x)

    def snapshot(self) -> PassCount:
        """The counts so far."""
        return PassCount(self.forwards, self.backwards)
