"""DynACL++'s post-processing against its reference (PKU-ML/DYNACL), re-typed here in its own structure:
the pseudo-labels of ``assign_label.py`` (features, then ``kmeans`` of kmeans_pytorch 0.3 — the package's
``initialize`` / ``kmeans`` / ``pairwise_distance``, which the reference imports), and one step of each
phase of ``LPAFT_AFF.py``: ``train_head`` (linear probe) and ``train`` with ``utils.py``'s
``trades_loss_dual(..., natural_mode='pgd')``, three optimiser steps each with the reference's optimisers.

Both sides start from the same weights (a tiny dual-BN network standing in for their ResNet-18; its BN
routed by name as ``model(x, bn_name)``), see the same batches, and run in float64. Losses must agree to
1e-6, weights (and BN statistics) to 1e-5; k-means assignments up to a permutation of the cluster ids.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.config import load_config
from pipeline.models import bn_branch, build_model, convert_to_dual_bn
from pipeline.train.lpaft import (
    classifier_from,
    clean_features,
    kmeans_pseudo_labels,
    phase_model,
    phase_objective,
)
from pipeline.train.optim import build_optimizer

K, B, CLUSTERS = 3, 8, 4


@pytest.fixture(autouse=True)
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _backbone():
    torch.manual_seed(0)
    net = convert_to_dual_bn(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.25,) * 3))
    with torch.no_grad():  # the branches differ after pretraining: make them differ here too
        for name, t in net.state_dict().items():
            if ".adv." in name and t.is_floating_point():
                t.add_(0.1 * torch.randn_like(t))
    return net


def _model(net):
    """The reference network's ``model(x, bn_name)``: 'normal' = the clean branch, 'pgd' = the adversarial."""

    def forward(x, bn_name):
        with bn_branch(net, "adv" if bn_name == "pgd" else "clean"):
            return net(x)

    return forward


# ---- the reference, re-typed -------------------------------------------------------------------------


def initialize(X, num_clusters):  # noqa: N803  (kmeans_pytorch's names)
    num_samples = len(X)
    indices = np.random.choice(num_samples, num_clusters, replace=False)
    return X[indices]


def pairwise_distance(data1, data2):
    A = data1.unsqueeze(dim=1)  # noqa: N806
    B_ = data2.unsqueeze(dim=0)  # noqa: N806
    dis = (A - B_) ** 2.0
    return dis.sum(dim=-1).squeeze()


def kmeans(X, num_clusters, tol=1e-4, initial_state=None):  # noqa: N803
    X = X.float()  # noqa: N806
    initial_state = initialize(X, num_clusters) if initial_state is None else initial_state.float().clone()
    while True:
        dis = pairwise_distance(X, initial_state)
        choice_cluster = torch.argmin(dis, dim=1)
        initial_state_pre = initial_state.clone()
        for index in range(num_clusters):
            selected = torch.nonzero(choice_cluster == index).squeeze()
            selected = torch.index_select(X, 0, selected)
            if selected.shape[0] == 0:
                selected = X[torch.randint(len(X), (1,))]
            initial_state[index] = selected.mean(dim=0)
        center_shift = torch.sum(torch.sqrt(torch.sum((initial_state - initial_state_pre) ** 2, dim=1)))
        if center_shift**2 < tol:
            break
    return choice_cluster, initial_state


def assign_features(net, images_u8):
    """``assign()``: ToTensor images in batches of 5000, ``model.eval()(x, 'normal', return_features=True)``."""
    rep = None
    for i in range(0, len(images_u8), 5000):
        with torch.no_grad():
            x = _model(net.eval())(images_u8[i : i + 5000].double() / 255, "normal")
            rep = x if rep is None else torch.concat([rep, x])
    return rep


def train_head_step(net, optimizer_head, inputs, targets):
    outputs = _model(net.eval())(inputs, "pgd")
    loss = torch.nn.CrossEntropyLoss()(outputs, targets.long())
    optimizer_head.zero_grad()
    loss.backward()
    optimizer_head.step()
    return float(loss.detach())


def trades_loss_dual(
    net,
    x_natural,
    y,
    optimizer,
    step_size=2 / 255,
    epsilon=8 / 255,
    perturb_steps=10,
    beta=6.0,
    natural_mode="pgd",
):
    model = _model(net)
    batch_size = len(x_natural)
    criterion_kl = torch.nn.KLDivLoss(reduction="sum")  # size_average=False
    net.eval()
    x_adv = x_natural.detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            net.eval()
            loss_kl = criterion_kl(
                F.log_softmax(model(x_adv, "pgd"), dim=1), F.softmax(model(x_natural, natural_mode), dim=1)
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    optimizer.zero_grad()
    net.train()
    logits = model(x_natural, natural_mode)
    loss = F.cross_entropy(logits, y)
    logits_adv = model(x_adv, "pgd")
    loss_robust = (1.0 / batch_size) * criterion_kl(
        F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1)
    )
    return loss + beta * loss_robust


def train_step(net, optimizer, inputs, targets):
    loss = trades_loss_dual(net, inputs, targets.long(), optimizer, perturb_steps=K, natural_mode="pgd")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


# ---- the tests -------------------------------------------------------------------------------------------


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to renaming the ids: every id of ``a`` maps to exactly one id of ``b`` and back."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_pseudo_labels_match_assign_label_py():
    net = _backbone()
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    ours = clean_features(net, images, batch_size=16, device="cpu")  # batches of 16: batching changes nothing
    ref = assign_features(net, images)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    np.random.seed(0)  # the reference draws its starting centres with numpy's global RNG (unseeded there)
    start = initialize(ref, CLUSTERS)
    ref_ids, _ = kmeans(ref, CLUSTERS, initial_state=start)
    ours_ids = kmeans_pseudo_labels(
        ours, CLUSTERS, seed=0, init=start.double().numpy()
    )  # Lloyd from the same start
    assert len(set(ref_ids.tolist())) == CLUSTERS and _same_partition(ours_ids, ref_ids)


def test_seeded_kmeans_is_deterministic_and_finds_the_references_clusters():
    g = torch.Generator().manual_seed(2)
    centres = 10 * torch.randn(CLUSTERS, 16, generator=g)
    features = centres.repeat_interleave(30, 0) + torch.randn(30 * CLUSTERS, 16, generator=g)
    a, b = kmeans_pseudo_labels(features, CLUSTERS, seed=3), kmeans_pseudo_labels(features, CLUSTERS, seed=3)
    assert torch.equal(a, b)  # same features and seed -> the same ids, not only the same partition
    truth = torch.arange(CLUSTERS).repeat_interleave(30)
    assert _same_partition(a, truth)
    # the reference's own start (random data points, one run): where it draws one point per blob it finds the
    # same clusters; where it draws two in one blob it can stop in a merged/split local optimum (seed 4 here)
    covered = 0
    for s in range(8):
        np.random.seed(s)
        blobs = set(
            (torch.from_numpy(np.random.choice(len(features), CLUSTERS, replace=False)) // 30).tolist()
        )
        np.random.seed(s)
        ref_ids, _ = kmeans(features, CLUSTERS)
        if len(blobs) == CLUSTERS:
            covered += 1
            assert _same_partition(ref_ids, a)
    assert covered > 0


def _batches(n=3):
    g = torch.Generator().manual_seed(0)
    return [
        (0.05 + 0.9 * torch.rand(B, 3, 32, 32, generator=g), torch.randint(0, CLUSTERS, (B,), generator=g))
        for _ in range(n)
    ]


@pytest.mark.parametrize("phase", ["probe", "trades"])
def test_lpaft_step_parity_with_lpaft_aff_py(phase):
    cfg = load_config(
        None, [f"pretrain.lpaft.clusters={CLUSTERS}", f"pretrain.lpaft.attack.steps={K}"]
    ).pretrain.lpaft
    ours_net = classifier_from(
        _backbone(), CLUSTERS
    )  # zero-initialised head, as cvt/fc zeroing in the reference
    ref_net = copy.deepcopy(ours_net)
    model = phase_model(phase, ours_net)
    opt_ours = build_optimizer(model.parameters(), getattr(cfg, phase).optim)
    objective = phase_objective(phase, model, model, cfg)
    if phase == "probe":  # LPAFT_AFF.py: requires_grad False except fc; optimizer_head on fc alone
        for name, p in ref_net.named_parameters():
            p.requires_grad_(name.startswith("fc."))
        opt_ref = torch.optim.SGD(ref_net.fc.parameters(), lr=0.01, weight_decay=1e-4, momentum=0.9)
        ref_step = train_head_step
    else:
        opt_ref = torch.optim.SGD(ref_net.parameters(), lr=0.1, weight_decay=1e-4, momentum=0.9)
        ref_step = train_step
    for x, y in _batches():
        model.train()  # as the Trainer before every step (the probe keeps the network in eval())
        with bn_branch(ours_net, "adv"):
            loss, _ = objective.step((x, y), None)
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()
        assert float(loss.detach()) == pytest.approx(ref_step(ref_net, opt_ref, x, y), abs=1e-6)
    ref_state = ref_net.state_dict()
    for k, v in ours_net.state_dict().items():
        torch.testing.assert_close(v, ref_state[k], atol=1e-5, rtol=0, msg=k)
    moved = classifier_from(_backbone(), CLUSTERS).state_dict()
    assert any(not torch.allclose(moved[k], v) for k, v in ours_net.state_dict().items())
    if phase == "trades":  # the whole network moved, through the adversarial branch only
        assert not torch.allclose(moved["conv1.weight"], ours_net.state_dict()["conv1.weight"])


# ---- AIR's variant (DynACL-AIR++: Enhancing_ACL_via_AIR LP-AFF.py train(), finetuning_utils.py) ---------


def air_trades_loss_dual(
    net, x_natural, y, step_size=2 / 255, epsilon=8 / 255, perturb_steps=10, natural_mode="pgd"
):
    """finetuning_utils.py ``trades_loss_dual``: the start is x + 0.001·N(0, 1) and the attack's target is the
    *clean* branch's prediction (``model(x_natural, 'normal')``), recomputed at every step."""
    model = _model(net)
    batch_size = len(x_natural)
    criterion_kl = torch.nn.KLDivLoss(reduction="sum")
    net.eval()
    x_adv = x_natural.detach() + 0.001 * torch.randn(x_natural.shape).detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            net.eval()
            loss_kl = criterion_kl(
                F.log_softmax(model(x_adv, "pgd"), dim=1), F.softmax(model(x_natural, "normal"), dim=1)
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    net.train()
    nat_output = model(x_natural, natural_mode)
    adv_output = model(x_adv, "pgd")
    return F.cross_entropy(nat_output, y) + 6.0 * (1.0 / batch_size) * criterion_kl(
        F.log_softmax(adv_output, dim=1), F.softmax(nat_output, dim=1)
    )


@pytest.mark.parametrize("variant", ["air", "dynacl"])
def test_air_lpaft_trades_step_parity_with_lp_aff_py(variant):
    """Our TRADES phase with ``attack.start=normal attack_target_branch=clean`` (the DynACL-AIR++ recipe) equals
    AIR's step; DynACL's variant (start at x, adversarial branch throughout) does not — the two differ."""
    overrides = [f"pretrain.lpaft.clusters={CLUSTERS}", f"pretrain.lpaft.attack.steps={K}"]
    if variant == "air":
        overrides += ["pretrain.lpaft.attack.start=normal", "pretrain.lpaft.attack_target_branch=clean"]
    cfg = load_config(None, overrides).pretrain.lpaft
    ours_net = classifier_from(_backbone(), CLUSTERS)
    with torch.no_grad():  # a non-zero head: the clean and adversarial predictions differ from the first step
        for p in ours_net.get_classifier().parameters():
            p.copy_(0.3 * torch.randn_like(p))
    ref_net = copy.deepcopy(ours_net)
    model = phase_model("trades", ours_net)
    opt_ours = build_optimizer(model.parameters(), cfg.trades.optim)
    opt_ref = torch.optim.SGD(ref_net.parameters(), lr=0.1, weight_decay=1e-4, momentum=0.9)
    objective = phase_objective("trades", model, model, cfg)
    losses = []
    for i, (x, y) in enumerate(_batches()):
        model.train()
        torch.manual_seed(100 + i)  # the same start noise on both sides
        with bn_branch(ours_net, "adv"):
            loss, _ = objective.step((x, y), None)
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()
        torch.manual_seed(100 + i)
        ref_loss = air_trades_loss_dual(ref_net, x, y.long(), perturb_steps=K)
        opt_ref.zero_grad()
        ref_loss.backward()
        opt_ref.step()
        losses.append((float(loss.detach()), float(ref_loss.detach())))
    if variant == "air":
        assert all(ours == pytest.approx(ref, abs=1e-6) for ours, ref in losses)
        ref_state = ref_net.state_dict()
        for k, v in ours_net.state_dict().items():
            torch.testing.assert_close(v, ref_state[k], atol=1e-5, rtol=0, msg=k)
    else:
        assert any(abs(ours - ref) > 1e-4 for ours, ref in losses)
