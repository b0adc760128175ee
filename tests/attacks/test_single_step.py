"""FGSM-RS and N-FGSM: equal to the papers' steps re-typed from the authors' training loops (same weights,
batch and noise), inside their bounds (ε for FGSM-RS, 3ε for N-FGSM, [0,1] for both), as fine-tuning
objectives and as ACL's attack; with ``finetune.attack.model_mode=train`` one whole training step equals the
authors' (attack in train(): loss, weights and BN running statistics), with ``eval`` the attack moves no
running statistics."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks import AttackConfig, cross_entropy_attack
from pipeline.config import load_config
from pipeline.errors import UsageError
from pipeline.models import build_model
from pipeline.objectives import SupervisedObjective
from pipeline.objectives.supervised import FinetuneAttackConfig

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
    theirs = (
        wong_fgsm_rs(model, x, y, EPS, 1.25 * EPS)
        if name == "fgsm_rs"
        else dejorge_nfgsm(model, x, y, EPS, 2 * EPS, EPS)
    )
    # the same noise and gradient signs: equal up to float rounding of x + δ (one ulp of a pixel)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert (
        ours != x
    ).float().mean() > 0.9  # the step moved (almost) every pixel: the comparison is not vacuous


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
    cfg = load_config(
        None, ["finetune.objective=nfgsm", "pretrain.attack.name=fgsm_rs", "pretrain.attack.steps=1"]
    )
    assert cfg.finetune.objective_name() == "nfgsm" and cfg.pretrain.attack.name == "fgsm_rs"
    with pytest.raises(UsageError, match=r"pretrain.attack.steps=5 .*set steps=1"):
        load_config(None, ["pretrain.attack.name=nfgsm"])
    with pytest.raises(UsageError, match=r"pretrain.attack.norm='L2' .*Linf"):
        load_config(
            None,
            [
                "pretrain.attack.name=nfgsm",
                "pretrain.attack.steps=1",
                "pretrain.attack.norm=L2",
                "pretrain.attack.eps=0.5",
            ],
        )
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


# --- finetune.attack.model_mode: the network's mode while the training attack runs ---------------------------


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def _sgd(model):  # both references' optimiser (momentum 0.9, weight decay 5e-4, lr-max 0.2)
    return torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)


def reference_training_step(name, model, opt, X, y):
    """One iteration of train_fgsm.py (Wong et al.) / N-FGSM train.py (de Jorge et al.), re-typed: the model
    stays in train() for the attack and for the update (``model.train()`` once, before the loop)."""
    if name == "fgsm_rs":
        X_adv = wong_fgsm_rs(model, X, y, EPS, 1.25 * EPS)  # its loss.backward() also fills weight grads ...
    else:
        X_adv = dejorge_nfgsm(model, X, y, EPS, 2 * EPS, EPS)
    output = model(X_adv)
    loss = F.cross_entropy(output, y)
    opt.zero_grad()  # ... which this clears, as in the reference
    loss.backward()
    opt.step()
    return loss.detach()


def our_training_step(name, model, opt, X, y, mode):
    obj = SupervisedObjective(
        name, model, model, FinetuneAttackConfig(eps=EPS, steps=1, model_mode=mode), 6.0, 10
    )
    loss, _ = obj.step((X, y), None)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


@pytest.mark.parametrize("name", ["fgsm_rs", "nfgsm"])
def test_train_mode_step_equals_the_references_step(name):
    ours, theirs = _bn_net().train(), _bn_net().train()
    torch.manual_seed(1)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))  # 16: the mean/sum loss scale is exact
    x[0] = 0.0  # box edges: the clamps act
    opt_ours, opt_theirs = _sgd(ours), _sgd(theirs)
    for _ in range(2):  # two steps: the second attacks weights and statistics the first one moved
        torch.manual_seed(7)
        loss_ours = our_training_step(name, ours, opt_ours, x, y, "train")
        torch.manual_seed(7)
        loss_theirs = reference_training_step(name, theirs, opt_theirs, x, y)
        assert torch.allclose(loss_ours, loss_theirs, atol=1e-6, rtol=0)
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=0), k  # weights and BN running statistics
    assert (
        int(ours[1].num_batches_tracked) == 4
    )  # attack + update forwards, twice: the statistics moved twice a step
    assert ours.training
    # not vacuous: the same steps with the attack in eval() end elsewhere
    other = _bn_net().train()
    opt_other = _sgd(other)
    for _ in range(2):
        torch.manual_seed(7)
        our_training_step(name, other, opt_other, x, y, "eval")
    assert not torch.allclose(other[1].running_mean, ours[1].running_mean, atol=1e-6)


@pytest.mark.parametrize("name", ["fgsm_rs", "nfgsm", "pgd_at"])
def test_eval_mode_attack_leaves_running_statistics_alone(name):
    model = _bn_net().train()
    torch.manual_seed(1)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    modes = []
    model[1].register_forward_pre_hook(lambda m, _inp: modes.append(m.training))
    before = copy.deepcopy(model)
    obj = SupervisedObjective(
        name, model, model, FinetuneAttackConfig(eps=EPS, steps=1 if name != "pgd_at" else 3), 6.0, 10
    )
    assert obj.model_mode == "eval"  # the default
    torch.manual_seed(7)
    obj.step((x, y), None)
    k = obj.attack.steps
    assert modes == [False] * k + [True]  # the attack's forwards in eval(), then the training forward
    assert int(model[1].num_batches_tracked) == 1 and model.training
    # the statistics are those of the one training forward on the attacked batch: the attack moved nothing
    before.eval()
    torch.manual_seed(7)
    x_adv = cross_entropy_attack(before, x, y, obj.attack)
    before.train()
    before(x_adv)
    for bn_ours, bn_ref in ((model[1], before[1]), (model[4], before[4])):
        assert torch.allclose(bn_ours.running_mean, bn_ref.running_mean, atol=1e-6, rtol=0)
        assert torch.allclose(bn_ours.running_var, bn_ref.running_var, atol=1e-6, rtol=0)


def test_train_mode_with_dual_bn_moves_the_adversarial_branch_only():
    from pipeline.models import convert_to_dual_bn

    model = convert_to_dual_bn(_bn_net(), branch="adv").train()
    torch.manual_seed(1)
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 10, (8,))
    obj = SupervisedObjective(
        "nfgsm",
        model,
        model,
        FinetuneAttackConfig(eps=EPS, steps=1, model_mode="train"),
        6.0,
        10,
        dual_bn=True,
    )
    obj.step((x, y), None)
    assert int(model[1].adv.num_batches_tracked) == 2 and int(model[1].clean.num_batches_tracked) == 0


def test_model_mode_is_a_finetune_key_checked_in_one_line():
    assert load_config(None).finetune.attack.model_mode == "eval"
    cfg = load_config(None, ["finetune.attack.model_mode=train", "finetune.objective=nfgsm"])
    assert SupervisedObjective("nfgsm", None, None, cfg.finetune.attack, 6.0, 10).model_mode == "train"
    with pytest.raises(
        UsageError, match=r"^finetune\.attack\.model_mode='batch' is invalid; use one of: eval, train$"
    ):
        load_config(None, ["finetune.attack.model_mode=batch"])
    with pytest.raises(UsageError, match=r"unknown config key 'pretrain\.attack\.model_mode'"):
        load_config(None, ["pretrain.attack.model_mode=train"])  # pretraining attacks stay in eval()
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "configs" / "cifar10_aff_nfgsm.yaml"
    assert (
        load_config(recipe).finetune.attack.model_mode == "train"
    )  # the single-step recipe: the references'
