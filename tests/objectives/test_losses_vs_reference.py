"""Our losses against naive hand-written references: NT-Xent, TRADES (incl. the recomputing reference
recipe), PGD-AT."""

import copy
import math

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss

from pipeline.attacks.pgd import AttackConfig
from pipeline.models import build_model
from pipeline.objectives import trades_attack, trades_outer_loss


def naive_ntxent(z1, z2, tau):
    """Loop-based NT-Xent: for each of the 2B anchors, -log softmax over the 2B-1 others at its positive."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, b = z.shape[0], z1.shape[0]
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        sims = [torch.dot(z[i], z[j]) / tau for j in range(n) if j != i]
        logits = torch.stack(sims)
        target = pos if pos < i else pos - 1
        total = total - (logits[target] - torch.logsumexp(logits, 0))
    return total / n


def test_ntxent_matches_hand_written_reference():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    ours = NTXentLoss(temperature=0.5)(z1, z2)
    assert torch.allclose(ours, naive_ntxent(z1, z2, 0.5), atol=1e-5)


def reference_trades(model, x, y, cfg, beta, noise):
    """The TRADES reference recipe, literally: eval() attack that recomputes the clean forward at every
    step and calls loss.backward() (parameter gradients computed and thrown away)."""
    model.eval()
    # the reference does not clamp its start point; ours keeps every iterate in [0,1] (documented difference)
    x_adv = (x.detach() + noise).clamp(0, 1)
    for _ in range(cfg.steps):
        x_adv.requires_grad_(True)
        loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        model.zero_grad()
        loss_kl.backward()
        grad = x_adv.grad.detach()
        x_adv = x_adv.detach() + cfg.step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - cfg.eps), x + cfg.eps).clamp(0, 1)
    model.train()
    model.zero_grad()
    logits = model(x)
    nat = F.cross_entropy(logits, y)
    rob = (1.0 / x.shape[0]) * F.kl_div(
        F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="sum"
    )
    return nat + beta * rob, x_adv


def test_trades_equals_the_recomputing_reference():
    torch.manual_seed(0)
    model = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    cfg = AttackConfig(eps=8 / 255, step_size=2 / 255, steps=4, start="normal")
    torch.manual_seed(1)
    noise = 0.001 * torch.randn_like(x)
    fresh = copy.deepcopy(
        model
    )  # train-mode forwards move BN statistics: both sides start from the same ones
    ref_loss, ref_adv = reference_trades(model, x, y, cfg, 6.0, noise)
    model = fresh
    torch.manual_seed(1)  # same start noise
    model.eval()
    ours_adv = trades_attack(model, x, cfg)
    model.train()
    assert torch.allclose(ours_adv, ref_adv, atol=1e-6)  # the same perturbation, without recomputation
    ours = trades_outer_loss(model(x), model(ref_adv), y, 6.0)
    assert torch.allclose(ours, ref_loss, atol=1e-5)


def test_trades_outer_loss_matches_loop_reference():
    torch.manual_seed(0)
    logits, logits_adv, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    kl = (
        sum(
            sum(
                p * (math.log(p) - math.log(q))
                for p, q in zip(
                    F.softmax(logits[i], 0).tolist(), F.softmax(logits_adv[i], 0).tolist(), strict=True
                )
            )
            for i in range(5)
        )
        / 5
    )
    expected = F.cross_entropy(logits, y) + 6.0 * kl
    assert torch.allclose(trades_outer_loss(logits, logits_adv, y, 6.0), expected.detach().float(), atol=1e-5)


def test_pgd_at_loss_equals_reference():
    from pipeline.objectives import SupervisedObjective

    torch.manual_seed(0)
    model = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    cfg = AttackConfig(steps=3, start="uniform")
    fresh = copy.deepcopy(
        model
    )  # train-mode forwards move BN statistics: both sides start from the same ones
    torch.manual_seed(3)
    loss, _ = SupervisedObjective("pgd_at", model, model, cfg, 6.0, 10).step((x, y), None)
    # reference: Madry PGD with loss.backward(), uniform start, then CE on x_adv in train()
    model = fresh
    torch.manual_seed(3)
    model.eval()
    x_adv = (x + torch.empty_like(x).uniform_(-cfg.eps, cfg.eps)).clamp(0, 1)
    for _ in range(cfg.steps):
        x_adv.requires_grad_(True)
        model.zero_grad()
        F.cross_entropy(model(x_adv), y, reduction="sum").backward()
        x_adv = x_adv.detach() + cfg.step_size * x_adv.grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - cfg.eps), x + cfg.eps).clamp(0, 1)
    model.train()
    ref = F.cross_entropy(model(x_adv), y)
    assert torch.allclose(loss, ref, atol=1e-5)
