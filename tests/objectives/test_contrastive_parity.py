"""ACL and DynACL training steps against their reference code, re-typed here in the references' own
structure: ``proj_head`` / ``batch_norm_multiple`` (``models/resnet_multi_bn.py`` in both repositories),
``nt_xent`` (``utils.py``), ``PGD_contrastive`` and the body of ``train()`` (ACL ``train_simCLR.py`` with
``--ACL_DS``; DynACL ``train_DynACL.py`` with ``resnet18_momentum``).

Both sides start from the same weights (deep copies), see the same batches and the same attack start
delta, and take three plain-SGD steps. The backbone is ours on both sides (a tiny dual-BN ResNet standing
in for their ResNet-18); what is the reference's is everything around it: the head, the BN-branch routing
by name, the view layout (interleaved pairs), eval()/train() switching, the attack loop with its
``loss.backward()``, the loss and its weights, and the momentum update and its place in the step.

Differences on purpose, and how they are handled:
- the attack's gradient: ours is input-only (``autograd.grad``), theirs ``loss.backward()`` through the
  parameters too (then thrown away by ``optimizer.zero_grad()``): the same input gradient;
- the attack's start: theirs is ``x + δ`` unclamped, ours is clamped to [0,1]. The step-for-step tests use
  images in [ε, 1 − ε], where that clamp does nothing; ``test_start_clamp_parity_gap`` shows it is the only
  difference of the attack and bounds what it changes on images that touch 0 and 1.

The tests run in float64. In float32 the two sides round differently at the 1e-7 level (their
``x + (clamp(x + δ) − x)``, their self-similarity subtracted as exp(1/t), the view layout in BN sums), and in
this tiny network such a difference can flip a ReLU or a PGD sign at a value near 0: the DynACL test then sees
weight gradients differ by ~2e-3 at its third step although inputs agree to 6e-8 and losses to 2e-7. In
float64 both sides agree to ~1e-14, so the tolerances below (1e-6 losses, 1e-5 weights) check the algorithm.
"""

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipeline.attacks.base import STARTS
from pipeline.config import load_config
from pipeline.models import bn_branch, build_model, convert_to_dual_bn
from pipeline.objectives import ContrastiveModel, ContrastiveObjective, pretrain_method
from pipeline.objectives.heads import build_head

EPS, ALPHA, ITERS, B, STEPS, LR = 8 / 255, 2 / 255, 3, 8, 3, 0.5


@pytest.fixture(autouse=True)
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # models, images, noise and the reference's torch.zeros alike
    yield
    torch.set_default_dtype(before)


BN_NAMES = ["normal", "pgd"]
TO_BRANCH = {"normal": "clean", "pgd": "adv"}

# ---- the reference, re-typed ----------------------------------------------------------------------------


class batch_norm_multiple(nn.Module):  # noqa: N801  (the reference's name)
    def __init__(self, norm, inplanes, bn_names=None):
        super().__init__()
        self.bn_list = nn.ModuleList([norm(inplanes) for _ in range(len(bn_names))])
        self.bn_names_dict = {bn_name: i for i, bn_name in enumerate(bn_names)}

    def forward(self, x):
        out, name_bn = x
        return self.bn_list[self.bn_names_dict[name_bn]](out)


class proj_head(nn.Module):  # noqa: N801  (3 layers: neither recipe passes --twoLayerProj)
    def __init__(self, ch, bn_names=None):
        super().__init__()
        self.fc1 = nn.Linear(ch, ch)
        self.bn1 = batch_norm_multiple(nn.BatchNorm1d, ch, bn_names)
        self.fc2 = nn.Linear(ch, ch, bias=False)
        self.bn2 = batch_norm_multiple(nn.BatchNorm1d, ch, bn_names)
        self.fc3 = nn.Linear(ch, ch, bias=False)
        self.bn3 = batch_norm_multiple(nn.BatchNorm1d, ch, bn_names)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, bn_name):
        x = self.bn1([self.fc1(x), bn_name])
        x = self.relu(x)
        x = self.bn2([self.fc2(x), bn_name])
        x = self.relu(x)
        return self.bn3([self.fc3(x), bn_name])


class RefResNet(nn.Module):
    """The reference ResNet's ``forward(x, bn_name)``: our backbone with its BN routed by name, then ``fc``."""

    def __init__(self, backbone, ch):
        super().__init__()
        self.backbone, self.fc = backbone, proj_head(ch, bn_names=BN_NAMES)

    def forward(self, x, bn_name=None):
        with bn_branch(self.backbone, TO_BRANCH[bn_name]):
            x = self.backbone(x)
        return self.fc(x, bn_name)


class resnet18_momentum(nn.Module):  # noqa: N801  (train_DynACL.py's model, m=0.99)
    def __init__(self, encoder_q, encoder_k, out_dim, m=0.99):
        super().__init__()
        self.m, self.encoder_q, self.encoder_k, self.out_dim = m, encoder_q, encoder_k, out_dim

    @torch.no_grad()
    def _init_encoder_k(self):
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            param_k.data.copy_(param_q.data)

    @torch.no_grad()
    def _momentum_update_encoder_k(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    def forward(self, x, bn_name=None, swap=False):
        bsz = x.size()[0]
        out = torch.zeros(bsz, self.out_dim)
        out[::2] = self.encoder_q(x[::2], bn_name=bn_name)
        out[1::2] = self.encoder_k(x[1::2], bn_name=bn_name)
        return out


def pair_cosine_similarity(x, eps=1e-8):
    n = x.norm(p=2, dim=1, keepdim=True)
    return (x @ x.t()) / (n * n.t()).clamp(min=eps)


def nt_xent(x, t=0.5):
    x = pair_cosine_similarity(x)
    x = torch.exp(x / t)
    idx = torch.arange(x.size()[0])
    idx[::2] += 1
    idx[1::2] -= 1
    x = x[idx]
    x = x.diag() / (x.sum(0) - torch.exp(torch.tensor(1 / t)))
    return -torch.log(x).mean()


def PGD_contrastive(model, inputs, delta, eps=EPS, alpha=ALPHA, iters=ITERS, **forward):  # noqa: N802
    delta = torch.nn.Parameter(delta)  # theirs: torch.rand_like(inputs) * eps * 2 - eps, injected here
    for _ in range(iters):
        features = model.eval()(inputs + delta, "pgd", **forward)
        model.zero_grad()
        loss = nt_xent(features)
        loss.backward()
        delta.data = delta.data + alpha * delta.grad.sign()
        delta.grad = None
        delta.data = torch.clamp(delta.data, min=-eps, max=eps)
        delta.data = torch.clamp(inputs + delta.data, min=0, max=1) - inputs
    return (inputs + delta).detach()


def reference_step(model, optimizer, inputs, delta, weight_adv=None):
    """One iteration of train(): ACL (``weight_adv`` None) or DynACL (swap=True, momentum update)."""
    forward = {} if weight_adv is None else {"swap": True}
    inputs_adv = PGD_contrastive(model, inputs, delta, **forward)
    features_adv = model.train()(inputs_adv, "pgd", **forward)
    features = model.train()(inputs, "normal", **forward)
    if weight_adv is None:
        loss = (nt_xent(features) + nt_xent(features_adv)) / 2
    else:
        model._momentum_update_encoder_k()
        loss = (nt_xent(features) * (2 - weight_adv) + nt_xent(features_adv) * weight_adv) / 2
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach().cpu())  # losses.update(float(loss.detach().cpu()), ...)


# ---- both sides from the same weights -----------------------------------------------------------------

HEAD_KEYS = {
    "fc1.": "layers.0.",
    "fc2.": "layers.3.",
    "fc3.": "layers.6.",
    **{
        f"bn{i}.bn_list.{j}.": f"layers.{3 * i - 2}.{b}."
        for i in (1, 2, 3)
        for j, b in enumerate(("clean", "adv"))
    },
}


def ours_key(ref_key: str, encoders: dict[str, str]) -> str:
    """A reference state-dict key → ours (``fc.bn2.bn_list.1.weight`` → ``head.layers.4.adv.weight``)."""
    for ref_prefix, prefix in encoders.items():
        if ref_key.startswith(ref_prefix):
            rest = ref_key[len(ref_prefix) :]
            if rest.startswith("fc."):
                rest = rest[3:]
                old = next(k for k in HEAD_KEYS if rest.startswith(k))
                return prefix + "head." + HEAD_KEYS[old] + rest[len(old) :]
            return prefix + rest
    raise KeyError(ref_key)


def make_pair(momentum):
    torch.manual_seed(0)
    backbone = convert_to_dual_bn(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.25,) * 3))
    ch = backbone.num_features
    ours = ContrastiveModel(backbone, build_head("acl", ch, dual_bn=True), momentum=momentum)
    if momentum:
        q, k = RefResNet(copy.deepcopy(ours.backbone), ch), RefResNet(copy.deepcopy(ours.key["backbone"]), ch)
        ref, encoders = resnet18_momentum(q, k, ch, m=momentum), {"encoder_q.": "", "encoder_k.": "key."}
    else:
        ref, encoders = RefResNet(copy.deepcopy(ours.backbone), ch), {"": ""}
    ref_sd = {k: ours.state_dict()[ours_key(k, encoders)] for k in ref.state_dict()}
    ref.load_state_dict(ref_sd, strict=True)  # every reference weight has its counterpart, of the same shape
    assert {ours_key(k, encoders) for k in ref_sd} == set(
        ours.state_dict()
    )  # and nothing of ours is left over
    if momentum:
        ref._init_encoder_k()  # train_DynACL.py main(): the key stops requiring gradients, starts as the query
    return ours, ref, encoders


def batches(full_range=False):
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        v1, v2 = torch.rand(B, 3, 32, 32, generator=g), torch.rand(B, 3, 32, 32, generator=g)
        if not full_range:  # inside [ε, 1 − ε]: the start clamp (the one difference) does nothing
            v1, v2 = EPS + (1 - 2 * EPS) * v1, EPS + (1 - 2 * EPS) * v2
        delta = torch.rand(2 * B, 3, 32, 32, generator=g) * EPS * 2 - EPS  # the reference's layout
        # the references' loader: (B, 2, C, H, W) viewed as (2B, C, H, W), the two views of an image adjacent
        yield (v1, v2), torch.stack([v1, v2], 1).view(2 * B, 3, 32, 32), delta


def run_both(monkeypatch, method, momentum, epoch=0, full_range=False, weight_adv=None):
    ours, ref, encoders = make_pair(momentum)
    overrides = [
        f"pretrain.method={method}",
        f"pretrain.attack.steps={ITERS}",
        "pretrain.attack.start=uniform",
        "pretrain.dynacl.strength_period_epochs=1",
    ]
    cfg = load_config(None, overrides).pretrain
    objective = ContrastiveObjective(pretrain_method(cfg, 10), ours, ours, cfg, gather=False)
    assert objective.method.head == "acl"  # the head built above is the method's default
    opt_ours = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=LR)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=LR)  # as the references: the key's grads stay None
    ours.train()
    losses = []
    for (v1, v2), inputs, delta in batches(full_range):
        # our layout is (view 1 of every image, then view 2): the same δ per image and view
        monkeypatch.setitem(
            STARTS._items, "uniform", lambda x, cfg, d=torch.cat([delta[::2], delta[1::2]]): d
        )
        opt_ours.zero_grad()
        loss, _ = objective.step((v1, v2), SimpleNamespace(epoch=epoch))
        loss.backward()
        opt_ours.step()
        losses.append((float(loss.detach()), reference_step(ref, opt_ref, inputs, delta.clone(), weight_adv)))
    return ours, ref, encoders, losses


def assert_same_weights(ours, ref, encoders, atol=1e-5):
    state = ours.state_dict()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(state[ours_key(k, encoders)], v, atol=atol, rtol=0, msg=k)


def test_acl_step_parity_with_train_simclr(monkeypatch):
    ours, ref, encoders, losses = run_both(monkeypatch, "acl", 0.0)
    for a, b in losses:
        assert a == pytest.approx(b, abs=1e-6)
    assert_same_weights(ours, ref, encoders)
    moved = make_pair(0.0)[0].state_dict()
    assert any(
        not torch.allclose(moved[k], v) for k, v in ours.state_dict().items()
    )  # the steps did something


def test_dynacl_step_parity_with_train_dynacl(monkeypatch):
    # train_DynACL.py: weight_adv = min(1 + (epoch // reload_frequency) * (reload_frequency / epochs) * swap, 2)
    # at epoch 4 of 10, reload_frequency 1; our schedule gives the same at state.epoch 4 (progress 0.4)
    weight_adv = min(1.0 + (4 // 1) * (1 / 10) * (2 / 3), 2)
    ours, ref, encoders, losses = run_both(monkeypatch, "dynacl", 0.99, epoch=4, weight_adv=weight_adv)
    for a, b in losses:
        assert a == pytest.approx(b, abs=1e-6)
    assert_same_weights(ours, ref, encoders)  # the key encoder included: same EMA, same place in the step


def test_start_clamp_parity_gap(monkeypatch):
    """Images reaching 0 and 1: the reference's first attack forward sees x + δ outside [0,1], ours the
    clamped start; every later iterate is clamped on both sides. Given our start, the reference's loop gives
    our perturbation exactly; from its own start it finds another point of the same ball, as strong."""
    ours, ref, _ = make_pair(0.0)
    cfg = load_config(None, ["pretrain.method=acl", f"pretrain.attack.steps={ITERS}"]).pretrain
    objective = ContrastiveObjective("acl", ours, ours, cfg, gather=False)
    (v1, v2), inputs, delta = next(batches(full_range=True))
    monkeypatch.setitem(STARTS._items, "uniform", lambda x, cfg: torch.cat([delta[::2], delta[1::2]]))
    x_adv, _ = objective._attack(torch.cat([v1, v2]), B)
    ours_adv = torch.stack([x_adv[:B], x_adv[B:]], 1).view(2 * B, 3, 32, 32)  # in the reference's layout
    clamped = PGD_contrastive(ref, inputs, torch.clamp(inputs + delta, 0, 1) - inputs)
    torch.testing.assert_close(ours_adv, clamped, atol=1e-12, rtol=0)  # the start is the only difference
    theirs = PGD_contrastive(ref, inputs, delta.clone())
    assert (theirs - inputs).abs().max() <= EPS + 1e-12 and 0 <= theirs.min() and theirs.max() <= 1
    with torch.no_grad():
        gained = [
            nt_xent(ref.eval()(x, "pgd")) - nt_xent(ref.eval()(inputs, "pgd")) for x in (ours_adv, theirs)
        ]
    # a real difference (measured: 2% of the pixels) of under 5% of the loss the attack adds (measured: 0.4%)
    assert (ours_adv != theirs).float().mean() < 0.1
    assert abs(gained[0] - gained[1]) <= 0.05 * gained[1]
