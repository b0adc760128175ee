"""Projection heads for contrastive pretraining, by name (``pretrain.head``), built from lightly's blocks.

``acl``: the head of ACL [0] and DynACL [1] (``proj_head`` in both references' ``models/resnet_multi_bn.py``,
3 layers unless ``--twoLayerProj``, which neither reference's recipe sets)::

    fc1 Linear(C, C, bias) → bn1 BatchNorm1d → ReLU → fc2 Linear(C, C, no bias) → bn2 BatchNorm1d → ReLU
        → fc3 Linear(C, C, no bias) → bn3 BatchNorm1d

with C the backbone's feature width (512 for their ResNet-18); every BN is a ``batch_norm_multiple``, i.e.
dual (clean/adv) when the backbone is — :func:`build_head` with ``dual_bn=True``. The output is the BN'd
vector (no ReLU), as in the references.

``simclr``: lightly's ``SimCLRProjectionHead`` (SimCLR v1 [2]: Linear → BatchNorm1d → ReLU → Linear).

Widths (``pretrain.proj_hidden_dim`` / ``pretrain.proj_dim``; 0 = the head's default):
``acl``: hidden = the width of fc1/fc2 (default C), out = the width of fc3 (default C), so the defaults are
the reference head exactly and non-zero values give the same structure at other widths;
``simclr``: hidden 512, out 128 by default (this project's SimCLR head before the ACL head existed).

[0] Jiang et al., Robust Pre-Training by Adversarial Contrastive Learning, NeurIPS 2020.
[1] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
[2] Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020.
"""

from __future__ import annotations

from collections.abc import Callable

from lightly.models.modules import SimCLRProjectionHead
from lightly.models.modules.heads import ProjectionHead
from torch import nn

from ..models import convert_to_dual_bn
from ..registry import Registry

HeadBuilder = Callable[[int, int, int], nn.Module]  # (in_dim, hidden_dim, out_dim; 0 = default) -> head
PROJECTION_HEADS: Registry[HeadBuilder] = Registry("projection head")


@PROJECTION_HEADS.register("acl")
def acl_head(in_dim: int, hidden_dim: int = 0, out_dim: int = 0) -> ProjectionHead:
    hidden, out = hidden_dim or in_dim, out_dim or in_dim
    # lightly's block: (in, out, BN, non-linearity, Linear bias); the reference's biases: fc1 only
    return ProjectionHead(
        [
            (in_dim, hidden, nn.BatchNorm1d(hidden), nn.ReLU(), True),
            (hidden, hidden, nn.BatchNorm1d(hidden), nn.ReLU(), False),
            (hidden, out, nn.BatchNorm1d(out), None, False),
        ]
    )


@PROJECTION_HEADS.register("simclr")
def simclr_head(in_dim: int, hidden_dim: int = 0, out_dim: int = 0) -> SimCLRProjectionHead:
    return SimCLRProjectionHead(in_dim, hidden_dim or 512, out_dim or 128)


def build_head(
    name: str, in_dim: int, hidden_dim: int = 0, out_dim: int = 0, dual_bn: bool = False
) -> nn.Module:
    """The head ``name`` on ``in_dim`` features; ``dual_bn``: every BN layer gets a clean and an adv branch
    (routed with ``bn_branch`` together with the backbone's)."""
    head = PROJECTION_HEADS.get(name, "pretrain.head")(in_dim, hidden_dim, out_dim)
    return convert_to_dual_bn(head) if dual_bn else head
