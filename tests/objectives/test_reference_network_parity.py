"""Our steps against the references' steps run on the references' *own network*: ``models/resnet_multi_bn.py``
(ACL, DynACL, AIR, RCS and RobustSSL ship the same file) re-typed here — its ResNet-18 with the CIFAR stem, its
``batch_norm_multiple`` routing every BN by the name passed down with the activations (``'normal'`` →
``bn_list[0]``, ``'pgd'`` → ``bn_list[1]``), its ``Downsample_multiple``, its ``proj_head`` and its
``NormalizeByChannelMeanStd`` (ImageNet statistics). Our side is what the recipes build: the registered
``resnet18_cifar`` from the recipe's ``model`` section, ``convert_to_dual_bn``, our ``acl`` head, our objectives.

The reference network is initialised its own way, its two BN branches made to differ (as after pretraining),
and its weights copied by name into ours (``bn_list.0`` → ``clean``, ``bn_list.1`` → ``adv``,
``downsample.conv``/``.bn`` → ``downsample.0``/``.1``, ``fc.fcN``/``fc.bnN`` → ``head.layers.*``); a strict load
checks that every weight of ours has exactly one source. Then both take two optimiser steps from the same
batches and attack starts, in float64 (see test_contrastive_parity.py), and must give the same losses (1e-6)
and weights (1e-5). Unlike the other parity tests, nothing of our model is on the reference side: a mistake in
our BN routing (``pipeline/models/dual_bn.py``), our head or our normalisation shows up here.

The reference steps themselves are the re-typed ones of the other parity tests (``train_simCLR.py``,
``train_DynACL.py``, AIR's ``pretraining.py``, RobustSSL's ``trades_loss_dual``, DynACL's ``LPAFT_AFF.py``,
``RCS.update_subset_indice``), run here on this network. Images are 8 px (the network pools adaptively) to
keep the full-width ResNet-18 affordable on a CPU; still, a step test takes about a minute on one core, so
the DynACL, ACL-AIR and RCS ones are ``slow`` (``make test-slow``) — ACL's step, AFF, LP-AFT's TRADES phase and
the forward-routing check below, which share the same network and key map, run in ``make test``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_air_parity import reference_step as air_reference_step
from test_contrastive_parity import EPS, reference_step, resnet18_momentum
from test_rcs_parity import (
    N_CAND,
    N_PICK,
    N_VAL,
    PGD_ITER,
    VAL_BS,
    VAL_ITER,
    _ref_noise,
    update_subset_indice,
)
from test_supervised_parity import K, _ref_trades_loss_dual, _sgd
from torch import nn

from pipeline.attacks import AttackConfig
from pipeline.attacks.base import STARTS
from pipeline.config import load_config
from pipeline.models import bn_branch, convert_to_dual_bn
from pipeline.objectives import (
    ContrastiveModel,
    ContrastiveObjective,
    SupervisedObjective,
    build_head,
    pretrain_method,
)
from pipeline.objectives.rcs import CoresetSelector, RCSConfig

try:  # LP-AFT's phases (moving from pipeline/objectives/ to pipeline/train/)
    from pipeline.train.lpaft import classifier_from, phase_model, phase_objective
except ImportError:
    from pipeline.objectives.lpaft import classifier_from, phase_model, phase_objective

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PX, B, STEPS, LR = 8, 4, 2, 0.5
BN_NAMES = ["normal", "pgd"]


@pytest.fixture(autouse=True)
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


# ---- the reference network, re-typed (models/resnet_multi_bn.py) ------------------------------------------


class NormalizeByChannelMeanStd(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x):
        return x.sub(self.mean[None, :, None, None]).div(self.std[None, :, None, None])


class batch_norm_multiple(nn.Module):  # noqa: N801  (the reference's names, here and below)
    def __init__(self, norm, planes, bn_names):
        super().__init__()
        self.bn_list = nn.ModuleList([norm(planes) for _ in bn_names])
        self.bn_names_dict = {name: i for i, name in enumerate(bn_names)}

    def forward(self, x):
        out, name = x
        return self.bn_list[self.bn_names_dict[name]](out)


class Downsample_multiple(nn.Module):  # noqa: N801
    def __init__(self, inplanes, planes, stride, bn_names):
        super().__init__()
        self.conv = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
        self.bn = batch_norm_multiple(nn.BatchNorm2d, planes, bn_names)

    def forward(self, x):
        out, name = x
        return [self.bn([self.conv(out), name]), name]


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, bn_names):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = batch_norm_multiple(nn.BatchNorm2d, planes, bn_names)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = batch_norm_multiple(nn.BatchNorm2d, planes, bn_names)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out, name = x
        out = self.relu(self.bn1([self.conv1(out), name]))
        out = self.bn2([self.conv2(out), name])
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity[0]
        return [self.relu(out), name]


class proj_head(nn.Module):  # noqa: N801  (three layers: no recipe passes --twoLayerProj)
    def __init__(self, ch, bn_names):
        super().__init__()
        self.fc1 = nn.Linear(ch, ch)
        self.bn1 = batch_norm_multiple(nn.BatchNorm1d, ch, bn_names)
        self.fc2 = nn.Linear(ch, ch, bias=False)
        self.bn2 = batch_norm_multiple(nn.BatchNorm1d, ch, bn_names)
        self.fc3 = nn.Linear(ch, ch, bias=False)
        self.bn3 = batch_norm_multiple(nn.BatchNorm1d, ch, bn_names)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, bn_name):
        x = self.relu(self.bn1([self.fc1(x), bn_name]))
        x = self.relu(self.bn2([self.fc2(x), bn_name]))
        return self.bn3([self.fc3(x), bn_name])


class ResNet(nn.Module):
    """``resnet18(bn_names=...)``: BasicBlock × [2, 2, 2, 2], 3×3 stride-1 stem, no max-pool."""

    def __init__(self, bn_names, num_classes=1000):
        super().__init__()
        self.normalize = NormalizeByChannelMeanStd(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = batch_norm_multiple(nn.BatchNorm2d, 64, bn_names)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(64, 2, 1, bn_names)
        self.layer2 = self._make_layer(128, 2, 2, bn_names)
        self.layer3 = self._make_layer(256, 2, 2, bn_names)
        self.layer4 = self._make_layer(512, 2, 2, bn_names)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride, bn_names):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = Downsample_multiple(self.inplanes, planes, stride, bn_names)
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, bn_names)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, 1, None, bn_names) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def get_feature(self, x, bn_name=None):  # AIR's / RCS's copy of the file adds this
        x = self.relu(self.bn1([self.conv1(self.normalize(x)), bn_name]))
        x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1([x, bn_name]))))
        return torch.flatten(self.avgpool(x[0]), 1)

    def forward(self, x, bn_name=None):
        x = self.get_feature(x, bn_name)
        return self.fc(x, bn_name) if isinstance(self.fc, proj_head) else self.fc(x)


def reference_network(head: str, num_classes: int = 10, seed: int = 0) -> ResNet:
    """The reference model as its script builds it (``head``: 'proj' — ``model.fc = proj_head(512)`` — or
    'linear', a zero-initialised classifier as RobustSSL / LPAFT_AFF.py load it), with differing BN branches."""
    torch.manual_seed(seed)
    net = ResNet(BN_NAMES, num_classes)
    if head == "proj":
        net.fc = proj_head(512, BN_NAMES)
    else:
        nn.init.zeros_(net.fc.weight)
        nn.init.zeros_(net.fc.bias)
    with (
        torch.no_grad()
    ):  # the branches (and their statistics) differ after pretraining; make them differ here
        for m in net.modules():
            if isinstance(m, batch_norm_multiple):
                for i, bn in enumerate(m.bn_list):
                    bn.weight.copy_(1 + 0.2 * torch.randn_like(bn.weight))
                    bn.bias.copy_(0.2 * torch.randn_like(bn.bias) + 0.1 * i)
                    bn.running_mean.copy_(0.2 * torch.randn_like(bn.running_mean))
                    bn.running_var.copy_(1 + 0.5 * torch.rand_like(bn.running_var) + 0.3 * i)
    return net


# ---- the reference's state-dict names → ours -------------------------------------------------------------

HEAD = {"fc1": "0", "bn1": "1", "fc2": "3", "bn2": "4", "fc3": "6", "bn3": "7"}


def ours_key(ref_key: str, backbone: str = "", head: str = "head.") -> str | None:
    """``layer2.0.downsample.bn.bn_list.1.weight`` → ``<backbone>layer2.0.downsample.1.adv.weight``,
    ``fc.bn2.bn_list.0.running_mean`` → ``<head>layers.4.clean.running_mean``; None for the normalisation
    buffers (ours are not weights: compared by value instead)."""
    if ref_key.startswith("normalize."):
        return None
    key = ref_key.replace(".bn_list.0.", ".clean.").replace(".bn_list.1.", ".adv.")
    key = key.replace("downsample.conv.", "downsample.0.").replace("downsample.bn.", "downsample.1.")
    parts = key.split(".")
    if parts[0] == "fc" and parts[1] in HEAD:  # proj_head
        return f"{head}layers.{HEAD[parts[1]]}." + ".".join(parts[2:])
    return backbone + key


def copy_into_ours(ref: nn.Module, ours: nn.Module, prefixes: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Load ``ref``'s weights into ``ours`` by name (strict: every weight of ours from exactly one of theirs).
    ``prefixes``: reference prefix → (our backbone prefix, our head prefix). Returns the key map."""
    mapping = {}
    for k in ref.state_dict():
        ref_prefix = next(p for p in sorted(prefixes, key=len, reverse=True) if k.startswith(p))
        mapped = ours_key(k[len(ref_prefix) :], *prefixes[ref_prefix])
        if mapped is not None:
            mapping[k] = mapped
    assert len(set(mapping.values())) == len(mapping)
    ours.load_state_dict(
        {mapping[k]: v.clone() for k, v in ref.state_dict().items() if k in mapping}, strict=True
    )
    return mapping


def assert_same(ref: nn.Module, ours: nn.Module, mapping: dict[str, str], atol: float = 1e-5) -> None:
    state = ours.state_dict()
    for k, v in ref.state_dict().items():
        if k in mapping:
            torch.testing.assert_close(state[mapping[k]], v, atol=atol, rtol=0, msg=k)


def assert_same_normalisation(ref: ResNet, ours_backbone: nn.Module) -> None:
    torch.testing.assert_close(ours_backbone.normalize.mean.flatten(), ref.normalize.mean)
    torch.testing.assert_close(ours_backbone.normalize.std.flatten(), ref.normalize.std)


def recipe(name: str, overrides: list[str] | None = None):
    return load_config(CONFIGS / name, overrides)


def our_backbone(cfg) -> nn.Module:
    return convert_to_dual_bn(cfg.model.build(0))  # the recipe's network: resnet18_cifar, its mean/std


def views(seed: int):
    """Per step: (view 1, view 2), the reference's interleaved layout, the attack start δ (reference layout),
    and the un-augmented originals (AIR); all inside [ε, 1 − ε], where the start clamp is a no-op."""
    g = torch.Generator().manual_seed(seed)

    def img(n):
        return EPS + (1 - 2 * EPS) * torch.rand(n, 3, PX, PX, generator=g)

    for _ in range(STEPS):
        v1, v2 = img(B), img(B)
        delta = torch.rand(2 * B, 3, PX, PX, generator=g) * EPS * 2 - EPS
        yield (v1, v2), torch.stack([v1, v2], 1).view(2 * B, 3, PX, PX), delta, img(B)


# ---- contrastive steps: ACL, DynACL, ACL-AIR -------------------------------------------------------------


def _contrastive(
    monkeypatch,
    recipe_name: str,
    epoch: int,
    momentum: bool,
    air: bool = False,
    weight_adv=None,
    strength=None,
):
    cfg = recipe(recipe_name, ["pretrain.attack.steps=3"])  # the re-typed PGD_contrastive's ITERS
    if momentum:
        q, k = reference_network("proj"), reference_network("proj", seed=1)
        ref = resnet18_momentum(q, k, 512, m=cfg.pretrain.dynacl.momentum)
        ref._init_encoder_k()  # train_DynACL.py: the key copies the query's parameters (its buffers are its own)
        prefixes = {"encoder_q.": ("backbone.", "head."), "encoder_k.": ("key.backbone.", "key.head.")}
    else:
        ref, prefixes = reference_network("proj"), {"": ("backbone.", "head.")}
    backbone = our_backbone(cfg)
    ours = ContrastiveModel(
        backbone,
        build_head("acl", backbone.num_features, dual_bn=True),
        momentum=cfg.pretrain.dynacl.momentum if momentum else 0.0,
    )
    mapping = copy_into_ours(ref, ours, prefixes)
    assert_same_normalisation(ref.encoder_q if momentum else ref, ours.backbone)
    method = pretrain_method(cfg.pretrain, cfg.pretrain.epochs)
    assert method.head == "acl" and bool(method.air) == air and (method.momentum > 0) == momentum
    objective = ContrastiveObjective(method, ours, ours, cfg.pretrain, gather=False)
    opt_ours = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=LR)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=LR)
    ours.train()
    for (v1, v2), inputs, delta, original in views(seed=7):
        monkeypatch.setitem(STARTS._items, "uniform", lambda x, c, d=torch.cat([delta[::2], delta[1::2]]): d)
        opt_ours.zero_grad()
        loss, _ = objective.step((v1, v2, original) if air else (v1, v2), SimpleNamespace(epoch=epoch))
        loss.backward()
        opt_ours.step()
        if air:
            theirs = air_reference_step(ref, opt_ref, inputs, original, delta.clone(), strength)
        else:
            theirs = reference_step(ref, opt_ref, inputs, delta.clone(), weight_adv)
        assert float(loss.detach()) == pytest.approx(theirs, abs=1e-6)
    assert_same(ref, ours, mapping)


def test_acl_step_on_the_reference_network(monkeypatch):
    _contrastive(monkeypatch, "cifar10_acl_gpu.yaml", epoch=0, momentum=False)


@pytest.mark.slow
def test_dynacl_step_on_the_reference_network(monkeypatch):
    # 0-based epoch 100 of 1,000 with K = 50 = train_DynACL.py's epoch 101: weight_adv = 1 + (101 // 50)·(50/1000)·2/3
    _contrastive(
        monkeypatch,
        "cifar10_dynacl_gpu.yaml",
        epoch=100,
        momentum=True,
        weight_adv=min(1.0 + (101 // 50) * (50 / 1000) * (2 / 3), 2),
    )


@pytest.mark.slow
def test_acl_air_step_on_the_reference_network(monkeypatch):
    _contrastive(monkeypatch, "cifar10_acl_air_gpu.yaml", epoch=0, momentum=False, air=True)


# ---- supervised steps: AFF (RobustSSL) and LP-AFT's TRADES phase (DynACL) --------------------------------


def _labelled(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    return [
        (0.05 + 0.9 * torch.rand(n, 3, PX, PX, generator=g), torch.randint(0, 10, (n,), generator=g))
        for _ in range(STEPS)
    ]


def _classifier(cfg) -> nn.Module:
    net = cfg.model.build(10)
    for p in net.get_classifier().parameters():
        nn.init.zeros_(p)
    return convert_to_dual_bn(net)


def test_aff_trades_dual_on_the_reference_network():
    """RobustSSL's ``trades_loss_dual`` (natural 'normal', adversarial 'pgd') on ``resnet_multi_bn``'s classifier."""
    cfg = recipe("cifar10_dynacl_gpu.yaml")
    ref, ours = reference_network("linear"), _classifier(cfg)
    mapping = copy_into_ours(ref, ours, {"": ("", "")})
    assert_same_normalisation(ref, ours)
    opt_ref, opt_ours = _sgd(ref.parameters()), _sgd(ours.parameters())
    attack = AttackConfig(
        eps=cfg.finetune.attack.eps, step_size=cfg.finetune.attack.step_size, steps=K, start=""
    )
    objective = SupervisedObjective(
        cfg.finetune.objective_name(), ours, ours, attack, cfg.finetune.beta, 10, dual_bn=cfg.finetune.dual_bn
    )
    for (x, y), seed in zip(_labelled(3), (31, 32), strict=True):
        torch.manual_seed(seed)
        noise = 0.001 * torch.randn(x.shape)
        loss = _ref_trades_loss_dual(ref, ref, x, y, opt_ref, noise)
        opt_ref.zero_grad()
        loss.backward()
        opt_ref.step()
        ours.train()
        torch.manual_seed(seed)  # our TRADES start draws the same x + 0.001·N
        mine, _ = objective.step((x, y), None)
        opt_ours.zero_grad()
        mine.backward()
        opt_ours.step()
        assert float(mine.detach()) == pytest.approx(float(loss.detach()), abs=1e-6)
    assert_same(ref, ours, mapping)


def _dynacl_trades_loss_dual(model, x_natural, y, steps, step_size, epsilon, beta=6.0, natural_mode="pgd"):
    """DynACL ``utils.py`` ``trades_loss_dual``: the attack starts at x itself, both predictions through
    ``'pgd'`` (``natural_mode``), recomputed at every step in eval(); the loss in train()."""
    criterion_kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x_natural.detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            model.eval()
            loss_kl = criterion_kl(
                F.log_softmax(model(x_adv, "pgd"), dim=1), F.softmax(model(x_natural, natural_mode), dim=1)
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon), 0.0, 1.0)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    model.train()
    logits = model(x_natural, natural_mode)
    loss = F.cross_entropy(logits, y)
    logits_adv = model(x_adv, "pgd")
    return loss + beta * (1.0 / len(x_natural)) * criterion_kl(
        F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1)
    )


def test_lpaft_trades_phase_on_the_reference_network():
    """DynACL++'s TRADES phase (``LPAFT_AFF.py`` ``train``: SGD 0.1 / 0.9 / 1e-4) on ``resnet_multi_bn``."""
    cfg = recipe("cifar10_dynacl_pp_gpu.yaml", ["pretrain.lpaft.attack.steps=3"])
    lp = cfg.pretrain.lpaft
    ref = reference_network("linear")
    ours = classifier_from(our_backbone(cfg), lp.clusters)
    mapping = copy_into_ours(ref, ours, {"": ("", "")})
    assert_same_normalisation(ref, ours)
    model = phase_model("trades", ours)
    objective = phase_objective("trades", model, model, lp)
    o = lp.trades.optim
    opt_ours = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for x, y in _labelled(4):
        loss = _dynacl_trades_loss_dual(ref, x, y, 3, 2 / 255, 8 / 255)
        opt_ref.zero_grad()
        loss.backward()
        opt_ref.step()
        model.train()
        with bn_branch(ours, "adv"):  # post_process: every LP-AFT forward through the adversarial branch
            mine, _ = objective.step((x, y), None)
        opt_ours.zero_grad()
        mine.backward()
        opt_ours.step()
        assert float(mine.detach()) == pytest.approx(float(loss.detach()), abs=1e-6)
    assert_same(ref, ours, mapping)


# ---- RCS's selection -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rcs_selection_on_the_reference_network(monkeypatch):
    """``RCS.update_subset_indice`` on ``resnet_multi_bn`` (its ``get_feature`` and ``fc`` = ``proj_head``)
    against our selector on the ACL-RCS recipe's network: every score after every pick, the same picks."""
    cfg = recipe("cifar10_acl_rcs_gpu.yaml")
    ref = reference_network("proj")
    backbone = our_backbone(cfg)
    ours = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True))
    copy_into_ours(ref, ours, {"": ("backbone.", "head.")})
    g = torch.Generator().manual_seed(11)

    def img(n):
        return EPS + (1 - 2 * EPS) * torch.rand(n, 3, PX, PX, generator=g)

    def start(n):
        return torch.rand(n, 3, PX, PX, generator=g) * EPS * 2 - EPS

    candidates = [(img(B), img(B)) for _ in range(N_CAND)]
    val = img(N_VAL)
    val_starts, cand_starts = [start(N_VAL) for _ in range(N_PICK)], [start(2 * B) for _ in range(N_CAND)]
    ref_cands = [
        (list(range(i * B, (i + 1) * B)), torch.stack([v1, v2], 1)) for i, (v1, v2) in enumerate(candidates)
    ]
    ref_val = [torch.stack([v, v], 1) for v in val.split(VAL_BS)]
    picked_ref, gains_ref = update_subset_indice(
        ref, ref_val, ref_cands, _ref_noise(val_starts, cand_starts), N_PICK, cfg.pretrain.rcs.lr
    )
    cand_noise, val_noise = iter([torch.cat([c[::2], c[1::2]]) for c in cand_starts]), iter(val_starts)
    monkeypatch.setitem(
        STARTS._items, "uniform", lambda x, c: next(val_noise) if x.shape[0] == N_VAL else next(cand_noise)
    )
    attack = AttackConfig(eps=EPS, step_size=2 / 255 * 5 / PGD_ITER, steps=PGD_ITER, start="uniform")
    rcs = RCSConfig(fraction=0.5, val_attack_steps=VAL_ITER, lr=cfg.pretrain.rcs.lr, val_batch_size=VAL_BS)
    selector = CoresetSelector(ours.backbone, ours.head, attack, rcs, temperature=cfg.pretrain.temperature)
    picked = selector.select(candidates, val, N_PICK)
    assert [i for c in picked for i in range(c * B, (c + 1) * B)] == picked_ref
    for a, b in zip(selector.gains, gains_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_forward_routing_matches_the_reference_network():
    """Per BN name, in train() and eval(): the reference's ``model(x, 'normal' | 'pgd')`` equals ours routed
    through the clean / adversarial branch — backbone features, projection head and classifier."""
    cfg = recipe("cifar10_acl_gpu.yaml")
    x = torch.rand(4, 3, PX, PX, generator=torch.Generator().manual_seed(2))
    ref = reference_network("proj")
    backbone = our_backbone(cfg)
    ours = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True))
    copy_into_ours(ref, ours, {"": ("backbone.", "head.")})
    ref_cls, ours_cls = reference_network("linear"), _classifier(cfg)
    copy_into_ours(ref_cls, ours_cls, {"": ("", "")})
    with torch.no_grad():
        nn.init.normal_(ref_cls.fc.weight)  # a non-zero classifier, so its output says something
        ours_cls.fc.weight.copy_(ref_cls.fc.weight)
    for mode in ("eval", "train"):
        for name, branch in (("normal", "clean"), ("pgd", "adv")):
            for r, o in ((ref, ours), (ref_cls, ours_cls)):
                r.train(mode == "train"), o.train(mode == "train")
                with torch.no_grad(), bn_branch(o, branch):
                    torch.testing.assert_close(o(x), r(x, name), atol=1e-10, rtol=0, msg=f"{mode} {name}")
                with torch.no_grad(), bn_branch(o, branch):
                    torch.testing.assert_close(
                        o.backbone(x)
                        if o is ours
                        else o.forward_head(o.forward_features(x), pre_logits=True),
                        r.get_feature(x, name),
                        atol=1e-10,
                        rtol=0,
                    )
    with torch.no_grad(), bn_branch(ours, "adv"):  # and the branches do differ
        assert not torch.allclose(ours.eval()(x), ref.eval()(x, "normal"))


def test_the_key_map_covers_both_networks():
    """Cheap structural check (no steps): every reference weight has one counterpart of the same shape and
    every weight of ours one source — for the contrastive model (with a momentum copy) and the classifier."""
    cfg = recipe("cifar10_dynacl_gpu.yaml")
    q, k = reference_network("proj"), reference_network("proj", seed=1)
    ref = resnet18_momentum(q, k, 512)
    backbone = our_backbone(cfg)
    ours = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True), momentum=0.99)
    mapping = copy_into_ours(
        ref, ours, {"encoder_q.": ("backbone.", "head."), "encoder_k.": ("key.backbone.", "key.head.")}
    )
    assert set(mapping.values()) == set(ours.state_dict())
    assert sum(".adv." in v for v in mapping.values()) == sum(".clean." in v for v in mapping.values()) > 0
    assert (
        copy.deepcopy(mapping)["encoder_q.layer2.0.downsample.bn.bn_list.1.weight"]
        == "backbone.layer2.0.downsample.1.adv.weight"
    )
