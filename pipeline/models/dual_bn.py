"""Dual batch normalisation for adversarial contrastive pretraining.

ACL [0] keeps separate BN statistics *and* affine parameters for clean and adversarial inputs, because
the two input distributions differ enough that sharing statistics hurts both — in the backbone's
``BatchNorm2d`` layers and in the projection head's ``BatchNorm1d`` layers alike (``models/resnet_multi_bn.py``:
``batch_norm_multiple`` wraps both). ``DualBatchNorm`` holds both branches of any ``_BatchNorm``; the active
one is chosen per forward pass with :func:`bn_branch`. After pretraining, :func:`resolve_dual_bn` collapses
every dual layer to the plain BN layer of one branch, so the exported backbone is an ordinary timm
architecture.

[0] Jiang et al., Robust Pre-Training by Adversarial Contrastive Learning, NeurIPS 2020.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BRANCHES = ("clean", "adv")


class DualBatchNorm(nn.Module):
    """Two branches of one BN layer (any ``_BatchNorm``: 1d, 2d, 3d, sync) sharing nothing;
    ``self.branch`` selects the active one. State-dict keys: ``<bn>.clean.*`` and ``<bn>.adv.*``."""

    def __init__(self, bn: _BatchNorm):
        super().__init__()
        self.clean = bn
        # a copy, not a fresh layer: same type, options, device, dtype, and the same starting statistics
        self.adv = copy.deepcopy(bn)
        self.branch = "clean"

    def forward(self, x):
        return self.adv(x) if self.branch == "adv" else self.clean(x)


DualBatchNorm2d = DualBatchNorm  # the name from before the head's BatchNorm1d layers were dual too


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def convert_to_dual_bn(model: nn.Module, branch: str = "clean") -> nn.Module:
    """Replace every BN layer in ``model`` (in place) by a ``DualBatchNorm`` holding it and a copy of it.
    Layers already dual are left as they are (converting twice changes nothing). ``branch``: the one a
    forward outside any :func:`bn_branch` block uses (a fine-tuned dual-BN classifier validates and
    exports its adversarial branch)."""
    if branch not in BRANCHES:
        raise ValueError(f"unknown BN branch {branch!r}; use one of {BRANCHES}")
    for name, child in model.named_children():
        if isinstance(child, DualBatchNorm):
            continue
        if isinstance(child, _BatchNorm):
            setattr(model, name, DualBatchNorm(child))
            getattr(model, name).branch = branch
        else:
            convert_to_dual_bn(child, branch)
    return model


def is_dual_bn(model: nn.Module) -> bool:
    return any(isinstance(m, DualBatchNorm) for m in model.modules())


@contextlib.contextmanager
def bn_branch(model: nn.Module, branch: str) -> Iterator[None]:
    """Route every dual BN layer of ``model`` through ``branch`` inside the ``with`` block."""
    if branch not in BRANCHES:
        raise ValueError(f"unknown BN branch {branch!r}; use one of {BRANCHES}")
    layers = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    previous = [m.branch for m in layers]
    for m in layers:
        m.branch = branch
    try:
        yield
    finally:
        for m, b in zip(layers, previous, strict=True):
            m.branch = b


def resolve_dual_bn(model: nn.Module, branch: str) -> nn.Module:
    """Collapse every dual BN layer (in place) to the plain BN layer of ``branch``."""
    if branch not in BRANCHES:
        raise ValueError(f"unknown BN branch {branch!r}; use one of {BRANCHES}")
    for name, child in model.named_children():
        if isinstance(child, DualBatchNorm):
            setattr(model, name, getattr(child, branch))
        else:
            resolve_dual_bn(child, branch)
    return model
