"""ACL-AIR and DynACL-AIR training steps against AIR's reference (GodXuxilie/Enhancing_ACL_via_AIR), re-typed
here in its own structure: ``AIR_Loss.forward`` (``AIR.py``) and the ``--ACL_DS`` branch of ``train()``
(``pretraining.py``), with and without ``--DynAug``. The network, the attack ``PGD_contrastive``, the
reference's view layout and the key mapping come from ``test_contrastive_parity.py`` (the same ACL code:
AIR's ``pretraining.py`` copies ACL's ``PGD_contrastive`` and ``proj_head``).

Both sides start from the same weights, see the same views, originals and attack start δ, and take three
plain-SGD steps in float64 (why float64: see ``test_contrastive_parity.py``); losses must agree to 1e-6,
every weight and BN statistic to 1e-5.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_contrastive_parity import EPS, ITERS, B, PGD_contrastive, assert_same_weights, batches, make_pair

from pipeline.attacks.base import STARTS
from pipeline.config import load_config
from pipeline.objectives import ContrastiveObjective, air_regularisers, pretrain_method

LR, EPOCHS = 0.5, 10


@pytest.fixture(autouse=True)
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


# ---- the reference, re-typed (AIR.py: AIR_Loss; pretraining.py: train()) -----------------------------


def _contrastive(zi_norm, zj_norm, mask, labels, temperature):
    bs = zi_norm.shape[0]
    logits_ii = torch.mm(zi_norm, zi_norm.t()) / temperature
    logits_ij = torch.mm(zi_norm, zj_norm.t()) / temperature
    logits_ji = torch.mm(zj_norm, zi_norm.t()) / temperature
    logits_jj = torch.mm(zj_norm, zj_norm.t()) / temperature
    logits_ij_pos = logits_ij[torch.logical_not(mask)]
    logits_ji_pos = logits_ji[torch.logical_not(mask)]
    logits_ii_neg = logits_ii[mask].reshape(bs, -1)
    logits_ij_neg = logits_ij[mask].reshape(bs, -1)
    logits_ji_neg = logits_ji[mask].reshape(bs, -1)
    logits_jj_neg = logits_jj[mask].reshape(bs, -1)
    pos = torch.cat((logits_ij_pos, logits_ji_pos), dim=0).unsqueeze(1)
    neg_i = torch.cat((logits_ii_neg, logits_ij_neg), dim=1)
    neg_j = torch.cat((logits_ji_neg, logits_jj_neg), dim=1)
    neg = torch.cat((neg_i, neg_j), dim=0)
    logits = torch.cat((pos, neg), dim=1)
    return F.cross_entropy(logits, labels)


def air_loss(zi, zj, z_orig, zi_adv, zj_adv, weight=0.0, temperature=0.5, lambda1=0.5, lambda2=0.5):
    """``AIR_Loss(normalize=True, temperature=0.5, lambda1, lambda2).forward`` — the two contrastive blocks
    are the same lines in the reference, written once here (``_contrastive``)."""
    bs = zi.shape[0]
    labels = torch.zeros((2 * bs,)).long()
    mask = torch.ones((bs, bs), dtype=bool).fill_diagonal_(0)
    zi_norm, zj_norm, zo_norm = (
        F.normalize(zi, p=2, dim=-1),
        F.normalize(zj, p=2, dim=-1),
        F.normalize(z_orig, p=2, dim=-1),
    )
    zi_adv_norm, zj_adv_norm = F.normalize(zi_adv, p=2, dim=-1), F.normalize(zj_adv, p=2, dim=-1)
    nat_contrastive_loss = _contrastive(zi_norm, zj_norm, mask, labels, temperature)
    adv_contrastive_loss = _contrastive(zi_adv_norm, zj_adv_norm, mask, labels, temperature)

    logits_io = torch.mm(zi_norm, zo_norm.t()) / temperature
    logits_jo = torch.mm(zj_norm, zo_norm.t()) / temperature
    probs_io_zi = F.softmax(logits_io[torch.logical_not(mask)], -1)
    probs_jo_zj = F.log_softmax(logits_jo[torch.logical_not(mask)], -1)
    SIR_loss = F.kl_div(probs_io_zi, probs_jo_zj, log_target=True, reduction="sum")  # noqa: N806

    logits_io = torch.mm(zi_adv_norm, zi_norm.t()) / temperature
    logits_jo = torch.mm(zj_adv_norm, zj_norm.t()) / temperature
    probs_io_zi_adv_consis = F.softmax(logits_io[torch.logical_not(mask)], -1)
    probs_jo_zj_adv_consis = F.softmax(logits_jo[torch.logical_not(mask)], -1)
    logits_io = torch.mm(zi_adv_norm, zo_norm.t()) / temperature
    logits_jo = torch.mm(zj_adv_norm, zo_norm.t()) / temperature
    probs_io_zi_adv = F.softmax(logits_io[torch.logical_not(mask)], -1)
    probs_jo_zj_adv = F.softmax(logits_jo[torch.logical_not(mask)], -1)
    probs_io_zi_adv = torch.mul(probs_io_zi_adv, probs_io_zi_adv_consis)
    probs_jo_zj_adv = torch.mul(probs_jo_zj_adv, probs_jo_zj_adv_consis)
    AIR_loss = F.kl_div(probs_io_zi_adv, torch.log(probs_jo_zj_adv), log_target=True, reduction="sum")  # noqa: N806
    total = (
        nat_contrastive_loss * (1 - weight)
        + adv_contrastive_loss * (1 + weight)
        + lambda1 * SIR_loss
        + lambda2 * AIR_loss
    )
    return total, nat_contrastive_loss, adv_contrastive_loss, SIR_loss, AIR_loss


def reference_step(model, optimizer, inputs, ori_inputs, delta, strength=None):
    """One iteration of ``train()`` with ``--ACL_DS`` (``strength`` given: ``--DynAug``, LAMBDA = 2/3)."""
    d0 = ori_inputs.shape[0]
    inputs_adv = PGD_contrastive(model, inputs, delta)
    features_adv = model.train()(inputs_adv, "pgd")
    features = model.train()(inputs, "normal")
    z_orig = model.train()(ori_inputs, "normal")
    zi = features[[int(2 * i) for i in range(d0)]]
    zj = features[[int(2 * i + 1) for i in range(d0)]]
    zi_adv = features_adv[[int(2 * i) for i in range(d0)]]
    zj_adv = features_adv[[int(2 * i + 1) for i in range(d0)]]
    weight = 2 / 3 * (1 - strength) if strength is not None else 0
    loss, *_ = air_loss(zi, zj, z_orig, zi_adv, zj_adv, weight)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach().cpu())


# ---- the tests -------------------------------------------------------------------------------------------


def run_both(monkeypatch, method, epoch=0, strength=None):
    ours, ref, encoders = make_pair(0.0)
    cfg = load_config(
        None,
        [
            f"pretrain.method={method}",
            f"pretrain.attack.steps={ITERS}",
            "pretrain.dynacl.momentum=0",
            "pretrain.clean_weight=1",
            "pretrain.adv_weight=1",
            "pretrain.dynacl.strength_period_epochs=1",
        ],
    ).pretrain
    objective = ContrastiveObjective(pretrain_method(cfg, EPOCHS), ours, ours, cfg, gather=False)
    assert objective.method.air and objective.method.head == "acl"
    opt_ours, opt_ref = torch.optim.SGD(ours.parameters(), lr=LR), torch.optim.SGD(ref.parameters(), lr=LR)
    g = torch.Generator().manual_seed(5)
    ours.train()
    losses = []
    for (v1, v2), inputs, delta in batches():
        original = EPS + (1 - 2 * EPS) * torch.rand(B, 3, 32, 32, generator=g)
        monkeypatch.setitem(
            STARTS._items, "uniform", lambda x, cfg, d=torch.cat([delta[::2], delta[1::2]]): d
        )
        opt_ours.zero_grad()
        loss, metrics = objective.step((v1, v2, original), SimpleNamespace(epoch=epoch))
        loss.backward()
        opt_ours.step()
        losses.append(
            (float(loss.detach()), reference_step(ref, opt_ref, inputs, original, delta.clone(), strength))
        )
    assert {"loss_sir", "loss_air"} <= set(metrics)
    return ours, ref, encoders, losses


@pytest.mark.parametrize(
    "method, epoch, strength",
    [
        ("acl_air", 0, None),  # pretraining.py --ACL_DS: weight 0
        # --DynAug at the reference's epoch 5 of 10 with K = 1: strength = 1 − int(4/1)·1/10 = 0.6 → weight 0.267;
        # our schedule at 0-based epoch 4 (progress 0.4) with clean_weight = adv_weight = 1 gives (1 ∓ 0.267)
        ("dynacl_air", 4, 1 - int((5 - 1) / 1) * 1 / EPOCHS),
    ],
)
def test_air_step_parity_with_pretraining_py(monkeypatch, method, epoch, strength):
    ours, ref, encoders, losses = run_both(monkeypatch, method, epoch, strength)
    for a, b in losses:
        assert a == pytest.approx(b, abs=1e-6)
    assert_same_weights(ours, ref, encoders)  # both BN branches' weights and running statistics included
    moved = make_pair(0.0)[0].state_dict()
    assert any(not torch.allclose(moved[k], v) for k, v in ours.state_dict().items())


def test_regularisers_equal_the_reference_terms():
    """SIR/AIR alone, on random projections: the diagonal-only computation equals the reference's B×B one."""
    g = torch.Generator().manual_seed(3)
    z = [torch.randn(16, 32, generator=g) for _ in range(5)]
    _, _, _, sir_ref, air_ref = air_loss(*z)
    sir, air = air_regularisers(*z, temperature=0.5)
    assert float(sir) == pytest.approx(float(sir_ref), abs=1e-12)
    assert float(air) == pytest.approx(float(air_ref), abs=1e-12)
    # the reference's kl_div receives probabilities where it expects log-probabilities: the "SIR" it
    # optimises is Σ q·(log q − p), negative here, not a KL divergence (which would be ≥ 0)
    assert float(sir) < 0


def test_dynacl_air_refuses_a_momentum_encoder():
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="pretrain.dynacl.momentum"):
        load_config(None, ["pretrain.method=dynacl_air"])
    load_config(None, ["pretrain.method=acl_air"])  # ACL-AIR has no momentum copy to refuse
