"""A classifier whose backbone is frozen (the SLF / ALF fine-tuning protocols)."""

from __future__ import annotations

import copy

from torch import nn


class LinearProbe(nn.Module):
    """Only the classifier head trains: no gradients for the backbone, and its BN kept in eval() so that
    not even the running statistics change (SLF/ALF must leave the backbone bit-identical)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        for p in net.parameters():
            p.requires_grad_(False)
        for p in net.get_classifier().parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        self.net.get_classifier().train(mode)
        return self

    def forward(self, x):
        return self.net(x)


def unwrap_probe(model: nn.Module) -> nn.Module:
    """The timm classifier inside a possible LinearProbe wrapper."""
    return model.net if isinstance(model, LinearProbe) else model


def plain_classifier(model: nn.Module) -> nn.Module:
    """The timm classifier to save: out of a LinearProbe, dual BN resolved to its adversarial branch (what
    RobustSSL evaluates and exports); a copy only when something had to be resolved."""
    from .dual_bn import is_dual_bn, resolve_dual_bn

    net = unwrap_probe(model)
    return resolve_dual_bn(copy.deepcopy(net), "adv") if is_dual_bn(net) else net
