"""Dual batch normalisation for adversarial contrastive pretraining.

ACL [0] keeps separate BN statistics *and* affine parameters for clean and adversarial inputs, because
the two input distributions differ enough that sharing statistics hurts both. ``DualBatchNorm2d`` holds
both branches; the active one is chosen per forward pass with :func:`bn_branch`. After pretraining,
:func:`resolve_dual_bn` collapses every dual layer to a plain ``BatchNorm2d`` holding one branch, so the
exported backbone is an ordinary timm architecture.

[0] Jiang et al., Robust Pre-Training by Adversarial Contrastive Learning, NeurIPS 2020.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

BRANCHES = ("clean", "adv")


class DualBatchNorm2d(nn.Module):
    """Two ``BatchNorm2d`` branches sharing nothing; ``self.branch`` selects the active one."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.clean = bn
        self.adv = nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.adv.load_state_dict(bn.state_dict())
        self.adv.to(device=bn.weight.device if bn.affine else None)
        self.branch = "clean"

    def forward(self, x):
        return self.adv(x) if self.branch == "adv" else self.clean(x)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def convert_to_dual_bn(model: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``model`` (in place) by a ``DualBatchNorm2d`` copy of it."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, DualBatchNorm2d(child))
        else:
            convert_to_dual_bn(child)
    return model


def is_dual_bn(model: nn.Module) -> bool:
    return any(isinstance(m, DualBatchNorm2d) for m in model.modules())


@contextlib.contextmanager
def bn_branch(model: nn.Module, branch: str) -> Iterator[None]:
    """Route every dual BN layer of ``model`` through ``branch`` inside the ``with`` block."""
    if branch not in BRANCHES:
        raise ValueError(f"unknown BN branch {branch!r}; use one of {BRANCHES}")
    layers = [m for m in model.modules() if isinstance(m, DualBatchNorm2d)]
    previous = [m.branch for m in layers]
    for m in layers:
        m.branch = branch
    try:
        yield
    finally:
        for m, b in zip(layers, previous, strict=True):
            m.branch = b


def resolve_dual_bn(model: nn.Module, branch: str) -> nn.Module:
    """Collapse every dual BN layer (in place) to the plain ``BatchNorm2d`` of ``branch``."""
    if branch not in BRANCHES:
        raise ValueError(f"unknown BN branch {branch!r}; use one of {BRANCHES}")
    for name, child in model.named_children():
        if isinstance(child, DualBatchNorm2d):
            setattr(model, name, getattr(child, branch))
        else:
            resolve_dual_bn(child, branch)
    return model

