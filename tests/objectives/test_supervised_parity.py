"""Parity of the fine-tuning steps with RobustSSL's code (GodXuxilie/RobustSSL_Benchmark,
Finetuning_Methods/Vanilla_Finetuning/utils.py): SLF, ALF (``pgd_attack`` + CE on the frozen network in
eval()) and AFF (``trades_loss_dual``). Each reference step is re-typed here in its own structure — its
loops, its ``torch.autograd.grad`` on the input, its ``model(x, bn_name)`` routing — and run from the
same weights, batches and injected noise as our objective; three optimiser steps each.

Deliberate difference: our attacks clamp the *start point* to [0,1] (the reference feeds x + noise
unclamped to the first forward). The batches here stay inside (0.05, 0.95), where that clamp is a no-op;
``test_start_point_clamp_is_the_only_difference`` bounds it where it is not.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.attacks import AttackConfig
from pipeline.attacks.pgd import random_start
from pipeline.models import bn_branch, build_model, convert_to_dual_bn
from pipeline.models.probe import LinearProbe
from pipeline.objectives import SupervisedObjective

EPS, ALPHA, K, B = 8 / 255, 2 / 255, 3, 8


def _batches(n=3):
    g = torch.Generator().manual_seed(0)
    return [
        (0.05 + 0.9 * torch.rand(B, 3, 32, 32, generator=g), torch.randint(0, 10, (B,), generator=g))
        for _ in range(n)
    ]


def _classifier(dual: bool):
    torch.manual_seed(0)
    net = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3)
    for p in net.get_classifier().parameters():  # RobustSSL: fc.weight = fc.bias = 0
        torch.nn.init.zeros_(p)
    if dual:
        convert_to_dual_bn(net)
        with torch.no_grad():  # make the branches differ, as after pretraining
            for name, t in net.state_dict().items():
                if ".adv." in name and t.is_floating_point():
                    t.add_(0.1 * torch.randn_like(t))
    return net


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=2e-4)


def _ref_model(net):
    """``model(x, bn_name)`` of the reference's multi-BN ResNet: 'normal' is the clean branch, 'pgd' the adversarial."""

    def forward(x, bn_name=None):
        if bn_name is None:
            return net(x)
        with bn_branch(net, "adv" if bn_name == "pgd" else "clean"):
            return net(x)

    return forward


def _ref_trades_loss_dual(net, model, x_natural, y, optimizer, noise):
    batch_size = len(x_natural)
    criterion_kl = torch.nn.KLDivLoss(reduction="sum")
    net.eval()
    x_adv = x_natural.detach() + noise  # 0.001 * torch.randn(x_natural.shape)
    for _ in range(K):
        x_adv.requires_grad_()
        with torch.enable_grad():
            net.eval()
            loss_kl = criterion_kl(
                F.log_softmax(model(x_adv, "pgd"), dim=1), F.softmax(model(x_natural, "normal"), dim=1)
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + ALPHA * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - EPS), x_natural + EPS)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    net.zero_grad()
    optimizer.zero_grad()
    net.train()
    nat_output = model(x_natural, "normal")
    adv_output = model(x_adv, "pgd")
    return F.cross_entropy(nat_output, y) + 6.0 * (1.0 / batch_size) * criterion_kl(
        F.log_softmax(adv_output, dim=1), F.softmax(nat_output, dim=1)
    )


def _ref_pgd_attack(net, images, labels, delta0):
    loss = torch.nn.CrossEntropyLoss()
    delta = torch.nn.Parameter(delta0.clone(), requires_grad=True)  # torch.rand_like(images) * eps * 2 - eps
    for _ in range(K):
        net.eval()
        outputs = net(images + delta)
        net.zero_grad()
        cost = loss(outputs, labels)
        delta_grad = torch.autograd.grad(cost, [delta])[0]
        delta.data = delta.data + ALPHA * delta_grad.sign()
        delta.grad = None
        delta.data = torch.clamp(delta.data, min=-EPS, max=EPS)
        delta.data = torch.clamp(images + delta.data, min=0, max=1) - images
    net.zero_grad()
    return (images + delta).detach()


def _assert_same(ref_net, our_net):
    ours = our_net.state_dict()
    for name, t in ref_net.state_dict().items():
        assert torch.allclose(t.float(), ours[name].float(), atol=1e-5), name


def _run_ours(objective, model, optimizer, batches, seeds):
    losses = []
    for (x, y), seed in zip(batches, seeds, strict=True):
        model.train()
        torch.manual_seed(seed)  # the attack's random start draws from the global RNG
        loss, _ = objective.step((x, y), None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def test_aff_trades_dual_bn_parity():
    ref_net = _classifier(dual=True)
    our_net = copy.deepcopy(ref_net)
    ref_opt, our_opt = _sgd(ref_net.parameters()), _sgd(our_net.parameters())
    batches, seeds = _batches(), [11, 12, 13]
    ref_losses, model = [], _ref_model(ref_net)
    for (x, y), seed in zip(batches, seeds, strict=True):
        torch.manual_seed(seed)
        noise = 0.001 * torch.randn(x.shape)
        loss = _ref_trades_loss_dual(ref_net, model, x, y, ref_opt, noise)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        ref_losses.append(float(loss.detach()))
    objective = SupervisedObjective(
        "trades",
        our_net,
        our_net,
        AttackConfig(eps=EPS, step_size=ALPHA, steps=K, start=""),
        6.0,
        10,
        dual_bn=True,
    )
    assert objective.attack.start == "normal"  # TRADES keeps its own start by default
    assert _run_ours(objective, our_net, our_opt, batches, seeds) == pytest.approx(ref_losses, abs=1e-6)
    _assert_same(ref_net, our_net)


def _linear_parity(name: str):
    ref_net = _classifier(dual=False)
    our_net = copy.deepcopy(ref_net)
    probe = LinearProbe(our_net)
    ref_opt = _sgd(ref_net.get_classifier().parameters())  # RobustSSL: only fc.weight and fc.bias
    our_opt = _sgd([p for p in probe.parameters() if p.requires_grad])
    batches, seeds = _batches(), [21, 22, 23]
    ref_losses = []
    for (x, y), seed in zip(batches, seeds, strict=True):
        if name == "pgd_at":
            torch.manual_seed(seed)
            x = _ref_pgd_attack(ref_net, x, y, torch.rand_like(x) * EPS * 2 - EPS)
        output = ref_net.eval()(x)  # SLF / ALF train the head on the network in eval()
        loss = F.cross_entropy(output, y)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        ref_losses.append(float(loss.detach()))
    objective = SupervisedObjective(
        name, probe, probe, AttackConfig(eps=EPS, step_size=ALPHA, steps=K, start=""), 6.0, 10
    )
    assert _run_ours(objective, probe, our_opt, batches, seeds) == pytest.approx(ref_losses, abs=1e-6)
    _assert_same(ref_net, our_net)


def test_alf_pgd_at_parity():
    _linear_parity("pgd_at")  # PGD-AT's default start is uniform in the ball, as the reference's


def test_slf_parity():
    _linear_parity("ce")


def test_start_point_clamp_is_the_only_difference():
    x = torch.rand(4, 3, 8, 8)
    x[:, :, 0] = 0.0  # pixels on the boundary: there the reference's start leaves [0, 1], ours does not
    torch.manual_seed(0)
    ours = random_start(x, AttackConfig(eps=EPS, start="normal"))
    torch.manual_seed(0)
    ref = x + 0.001 * torch.randn(x.shape)
    inside = (ref >= 0) & (ref <= 1)
    assert torch.equal(ours[inside], ref[inside])
    assert (ours - ref).abs().max() <= 0.001 * 6  # only the part outside [0, 1] is cut: |0.001·N| < 6e-3
