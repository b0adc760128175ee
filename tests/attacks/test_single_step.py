"""FGSM-RS and N-FGSM: equal to the papers' steps re-typed from the authors' training loops (same weights,
batch and noise), inside their bounds (ε for FGSM-RS, 3ε for N-FGSM, [0,1] for both), as fine-tuning
objectives and as ACL's attack."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.attacks import AttackConfig, cross_entropy_attack
from pipeline.config import load_config
from pipeline.errors import UsageError
from pipeline.models import build_model
from pipeline.objectives import SupervisedObjective

EPS = 8 / 255


def _setup(b=16):
    torch.manual_seed(0)
    model = build_model("resnet10_cifar_tiny", 10, (0.5,) * 3, (0.5,) * 3).eval()
    x, y = torch.rand(b, 3, 32, 32), torch.randint(0, 10, (b,))
    x[0], x[1] = 0.0, 1.0  # pixels on the box edges: the image-range clamps must act
    return model, x, y


def wong_fgsm_rs(model, X, y, epsilon, alpha):
    """Wong et al. 2020, train_fgsm.py, re-typed in pixel space ([0,1], so the limits are 0 and 1)."""
    delta = torch.zeros_like(X)
    delta.uniform_(-epsilon, epsilon)
    delta.data = torch.max(torch.min(delta, 1 - X), 0 - X)
    delta.requires_grad = True
    output = model(X + delta)
    loss = F.cross_entropy(output, y)
    loss.backward()
    grad = delta.grad.detach()
    delta.data = torch.clamp(delta + alpha * torch.sign(grad), -epsilon, epsilon)
    delta.data = torch.max(torch.min(delta, 1 - X), 0 - X)
    return (X + delta).detach()


def dejorge_nfgsm(model, X, y, epsilon, unif, alpha):
    """de Jorge et al. 2022, N-FGSM train.py (clip = 0: no projection), re-typed in pixel space."""
    eta = torch.zeros_like(X)
    eta.uniform_(-unif, unif)
    eta = torch.max(torch.min(eta, 1 - X), 0 - X)
    eta.requires_grad = True
    output = model(X + eta)
    loss = F.cross_entropy(output, y)
    grad = torch.autograd.grad(loss, eta)[0].detach()
    delta = eta + alpha * torch.sign(grad)
    delta = torch.max(torch.min(delta, 1 - X), 0 - X)
    return (X + delta).detach()


@pytest.mark.parametrize("name", ["fgsm_rs", "nfgsm"])
def test_equal_to_the_papers_step(name):
    model, x, y = _setup()
    torch.manual_seed(7)
    ours = cross_entropy_attack(model, x, y, AttackConfig(name=name, eps=EPS, steps=1))
    torch.manual_seed(7)
    theirs = (wong_fgsm_rs(model, x, y, EPS, 1.25 * EPS) if name == "fgsm_rs"
              else dejorge_nfgsm(model, x, y, EPS, 2 * EPS, EPS))
    # the same noise and gradient signs: equal up to float rounding of x + δ (one ulp of a pixel)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert (ours != x).float().mean() > 0.9  # the step moved (almost) every pixel: the comparison is not vacuous


def test_fgsm_rs_stays_in_the_eps_ball_and_the_box():
    model, x, y = _setup(32)
    x_adv = cross_entropy_attack(model, x, y, AttackConfig(name="fgsm_rs", eps=EPS, steps=1))
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_nfgsm_is_bounded_by_three_eps_and_not_projected():
    model, x, y = _setup(32)
    x_adv = cross_entropy_attack(model, x, y, AttackConfig(name="nfgsm", eps=EPS, steps=1))
    size = (x_adv - x).abs()
    assert size.max() <= 3 * EPS + 1e-6  # noise 2ε + step ε
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # no projection onto the ε-ball: |η + ε·s| > ε for η ~ U[-2ε, 2ε] with probability 1/2 (less the clamps)
    assert (size > EPS + 1e-6).float().mean() > 0.4
    assert size.max() > 2.5 * EPS


@pytest.mark.parametrize("name", ["fgsm_rs", "nfgsm"])
def test_finetune_objective_uses_one_step_of_its_attack(name):
    model, x, y = _setup(8)
    obj = SupervisedObjective(name, model, model, AttackConfig(steps=10, step_size=2 / 255), 6.0, 10)
    assert (obj.attack.name, obj.attack.steps) == (name, 1)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    model.train()
    loss, metrics = obj.step((x, y), None)
    loss.backward()
    assert len(calls) == 2  # one attack forward, one training forward: a single step
    assert metrics["forward_passes"] == metrics["backward_passes"] == 2 * len(y)
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.training  # the attack's eval() is undone


def test_config_names_the_fix():
    cfg = load_config(None, ["finetune.objective=nfgsm", "pretrain.attack.name=fgsm_rs", "pretrain.attack.steps=1"])
    assert cfg.finetune.objective_name() == "nfgsm" and cfg.pretrain.attack.name == "fgsm_rs"
    with pytest.raises(UsageError, match=r"pretrain.attack.steps=5 .*set steps=1"):
        load_config(None, ["pretrain.attack.name=nfgsm"])
    with pytest.raises(UsageError, match=r"pretrain.attack.norm='L2' .*Linf"):
        load_config(None, ["pretrain.attack.name=nfgsm", "pretrain.attack.steps=1", "pretrain.attack.norm=L2",
                           "pretrain.attack.eps=0.5"])
    with pytest.raises(UsageError, match=r"protocol=slf .*objective=fgsm_rs"):
        load_config(None, ["finetune.protocol=slf", "finetune.objective=fgsm_rs"])


@pytest.mark.parametrize("name", ["fgsm_rs", "nfgsm"])
def test_acl_pretraining_takes_the_single_step_attack_by_config(name):
    from pipeline.models import convert_to_dual_bn
    from pipeline.objectives import ContrastiveModel, ContrastiveObjective
    from pipeline.objectives.heads import build_head

    torch.manual_seed(0)
    backbone = convert_to_dual_bn(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3))
    cfg = load_config(None, [f"pretrain.attack.name={name}", "pretrain.attack.steps=1"]).pretrain
    model = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True))
    seen = []
    model.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    v1, v2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    loss, metrics = ContrastiveObjective("acl", model, model, cfg, gather=False).step((v1, v2), None)
    x = torch.cat([v1, v2])
    # attack forward at the start point, clean forward, adversarial forward: one attack step only
    assert len(seen) == 3 and torch.equal(seen[1], x)
    bound = (1 if name == "fgsm_rs" else 3) * cfg.attack.eps + 1e-6
    assert (seen[2] - x).abs().max() <= bound and not torch.equal(seen[2], x)
    assert metrics["forward_passes"] == 2 * 4 * 3 and torch.isfinite(loss)
