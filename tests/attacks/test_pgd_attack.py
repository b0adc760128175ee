"""PGD stays inside the ε-ball and [0,1], and increases the loss it maximises."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.attacks.pgd import AttackConfig, cross_entropy_pgd, pgd_attack
from pipeline.models import build_model


@pytest.mark.parametrize("norm, eps", [("Linf", 8 / 255), ("L2", 0.5)])
@pytest.mark.parametrize("start", ["uniform", "normal", "zero"])
def test_iterates_stay_in_ball_and_box(norm, eps, start):
    torch.manual_seed(0)
    model = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3).eval()
    x = torch.rand(6, 3, 32, 32)
    x[0] = 0.0  # pixels at the box edges must be clamped, not pushed outside
    x[1] = 1.0
    y = torch.randint(0, 10, (6,))
    seen = []
    cfg = AttackConfig(norm=norm, eps=eps, step_size=eps / 4, steps=5, start=start)
    x_adv = pgd_attack(
        lambda xa: (seen.append(xa.detach().clone()), F.cross_entropy(model(xa), y, reduction="sum"))[1],
        x,
        cfg,
    )
    for xa in [*seen, x_adv]:
        delta = (xa - x).flatten(1)
        size = delta.abs().max(1).values if norm == "Linf" else delta.norm(dim=1)
        assert (size <= eps + 1e-6).all()
        assert xa.min() >= 0 and xa.max() <= 1


def test_attack_raises_the_loss_and_needs_no_parameter_gradients():
    torch.manual_seed(0)
    model = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3).eval()
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    x_adv = cross_entropy_pgd(model, x, y, AttackConfig(steps=10))
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.01
    assert all(p.grad is None for p in model.parameters())
