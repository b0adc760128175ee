"""RCS's selection step against a re-typed transcription of ``RCS.update_subset_indice`` (GodXuxilie/
Efficient_ACL_via_RCS, ``ACL_RCS/small_scale_datasets/RCS.py``, CoresetLoss=KL) from the same weights,
candidate batches, validation images and injected attack starts (float64, as the other parity tests).

Injected noise: the reference draws each attack's start with ``torch.rand_like``; here both sides take the
same starts from one list, in the reference's order (validation attack, every candidate's attack, then a
validation attack after each pick). The reference's validation loader yields batches of ``val_batch_size``
images as two identical views, and its reshape keeps the first half of each batch's images, each twice: the
two copies get independent starts (as ``rand_like`` gives them), so they are attacked apart — our selector,
given all the held-out images, must pick the same rows and score them the same. Images lie in [ε, 1 − ε],
where the reference's unclamped attack start equals our clamped one.
"""

import torch
from test_contrastive_parity import BN_NAMES, EPS, TO_BRANCH, make_pair, nt_xent
from torch import nn

from pipeline.attacks.base import STARTS, AttackConfig
from pipeline.models import bn_branch
from pipeline.objectives.rcs import CoresetSelector, RCSConfig, validation_rows

# N_VAL held-out images in loader batches of VAL_BS (4 and 2): the reference attacks images 0, 0, 1, 1 and 4, 4
B, N_CAND, N_VAL, VAL_BS, PGD_ITER, VAL_ITER, N_PICK, LR = 4, 4, 6, 4, 2, 2, 3, 0.5


# ---- the reference, re-typed (RCS.py) --------------------------------------------------------------------


def normalize(AA):  # noqa: N803
    AA -= AA.min(1, keepdim=True)[0]
    AA /= AA.max(1, keepdim=True)[0]
    return AA


def kl_loss(nat, adv, reduction="mean"):
    P = torch.log(normalize(adv) + 1e-8)  # noqa: N806
    Q = normalize(nat) + 1e-8  # noqa: N806
    kld = torch.nn.KLDivLoss(reduction=reduction)
    return kld(P, Q)


def PGD(model, inputs, noise, eps=EPS, alpha=2 / 255, iters=10):  # noqa: N802  (loss_type='KL')
    delta = torch.nn.Parameter(next(noise))  # theirs: torch.rand_like(inputs) * eps * 2 - eps
    nat_feature = model.eval()(inputs, "normal")
    nat_feature = nat_feature.detach()
    for _ in range(iters):
        features = model.eval()(inputs + delta, "pgd")
        model.zero_grad()
        loss = kl_loss(features, nat_feature)
        loss.backward()
        delta.data = delta.data + alpha * delta.grad.sign()
        delta.grad = None
        delta.data = torch.clamp(delta.data, min=-eps, max=eps)
        delta.data = torch.clamp(inputs + delta.data, min=0, max=1) - inputs
    return (inputs + delta).detach()


def PGD_contrastive(model, inputs, noise, eps=EPS, iters=10):  # noqa: N802
    delta = torch.nn.Parameter(next(noise))
    alpha = 2 / 255 * 5 / iters
    for _ in range(iters):
        features = model.eval()(inputs + delta, "pgd")
        model.zero_grad()
        loss = torch.mean(nt_xent(features))
        loss.backward()
        delta.data = delta.data + alpha * delta.grad.sign()
        delta.grad = None
        delta.data = torch.clamp(delta.data, min=-eps, max=eps)
        delta.data = torch.clamp(inputs + delta.data, min=0, max=1) - inputs
    return (inputs + delta).detach()


def del_tensor_ele(arr, index):
    return torch.cat((arr[0:index], arr[index + 1 :]), dim=0)


def _val_grad(model, linear_layer, validation_loader, noise):
    feature_val_nat = feature_val_adv = None
    for valid_inputs in validation_loader:
        d = valid_inputs.size()
        valid_inputs = valid_inputs.view(d[0] * 2, d[2], d[3], d[4])
        valid_inputs = valid_inputs[: d[0]]
        valid_inputs_adv = PGD(model, valid_inputs, noise, iters=VAL_ITER, alpha=(10.0 / 255.0) / VAL_ITER)
        with torch.no_grad():
            features_adv_before_fc = model.get_feature(valid_inputs_adv, "pgd")
            features_before_fc = model.get_feature(valid_inputs, "normal")
            if feature_val_nat is None:
                feature_val_nat, feature_val_adv = (
                    features_before_fc.detach(),
                    features_adv_before_fc.detach(),
                )
            else:
                feature_val_nat = torch.cat([feature_val_nat, features_before_fc.detach()], dim=0)
                feature_val_adv = torch.cat([feature_val_adv, features_adv_before_fc.detach()], dim=0)
    linear_layer.zero_grad()
    features = linear_layer(feature_val_nat, "normal")
    features_adv = linear_layer(feature_val_adv, "pgd")
    valid_loss = kl_loss(features_adv, features)
    linear_layer.zero_grad()
    valid_loss.backward()
    valid_grad_list = [
        p.grad.detach().mean(dim=0).view(1, -1) for n, p in linear_layer.named_parameters() if "fc" in n
    ]
    return torch.cat(valid_grad_list, dim=1)


def update_subset_indice(model, validation_loader, train_loader, noise, batch_num, lr):
    """RCS.update_subset_indice's body (the validation re-gradient, repeated in the reference, is one helper)."""
    for param in model.parameters():
        param.requires_grad = False
    linear_layer = model.fc
    ori_linear_layer_state_dict = {k: v.clone() for k, v in linear_layer.state_dict().items()}
    for name, param in linear_layer.named_parameters():
        param.requires_grad = "fc" in name
    model.train()
    linear_layer.train()
    grad_val = _val_grad(model, linear_layer, validation_loader, noise)
    subset_index, per_batch_grads, per_batch_ori_grads, batch_index_list = [], [], [], []
    model.eval()
    linear_layer.eval()
    for idx, inputs in train_loader:
        linear_layer.load_state_dict(ori_linear_layer_state_dict)
        d = inputs.size()
        inputs = inputs.view(d[0] * 2, d[2], d[3], d[4])
        inputs_adv = PGD_contrastive(model, inputs, noise, iters=PGD_ITER)
        with torch.no_grad():
            features_adv_before_fc = model.get_feature(inputs_adv, "pgd").detach()
            features_before_fc = model.get_feature(inputs, "normal").detach()
        linear_layer.zero_grad()
        features = linear_layer(features_before_fc, "normal")
        features_adv = linear_layer(features_adv_before_fc, "pgd")
        batch_loss = torch.mean((nt_xent(features) + nt_xent(features_adv)) / 2)
        batch_loss.backward()
        batch_grad_ori_list = [p.grad.detach() for n, p in linear_layer.named_parameters() if "fc" in n]
        per_batch_ori_grads.append(batch_grad_ori_list)
        per_batch_grads.append(torch.cat([g.mean(dim=0).view(1, -1) for g in batch_grad_ori_list], dim=1))
        batch_index_list.append(idx)
    per_batch_grads = torch.cat(per_batch_grads, dim=0)
    index_list = torch.LongTensor(list(range(len(batch_index_list))))
    gains = []  # recorded for the comparison (not in the reference)
    for j in range(batch_num):
        grad_sample_list_curr = per_batch_grads[index_list]
        gain = torch.matmul(grad_sample_list_curr, grad_val.reshape(-1, 1)).squeeze()
        gains.append(gain)
        r = torch.argmax(gain, dim=0)
        subset_index.extend(batch_index_list[index_list[r]])
        if j == batch_num - 1:
            break
        g = per_batch_ori_grads[index_list[r]]
        linear_layer.fc1.weight.data = linear_layer.fc1.weight.data - lr * g[0]
        linear_layer.fc1.bias.data = linear_layer.fc1.bias.data - lr * g[1]
        linear_layer.fc2.weight.data = linear_layer.fc2.weight.data - lr * g[2]
        linear_layer.fc3.weight.data = linear_layer.fc3.weight.data - lr * g[3]
        model.fc.fc1.weight.data = model.fc.fc1.weight.data - lr * g[0]
        model.fc.fc1.bias.data = model.fc.fc1.bias.data - lr * g[1]
        model.fc.fc2.weight.data = model.fc.fc2.weight.data - lr * g[2]
        model.fc.fc3.weight.data = model.fc.fc3.weight.data - lr * g[3]
        model.train()
        linear_layer.train()
        grad_val = _val_grad(model, linear_layer, validation_loader, noise)
        index_list = del_tensor_ele(index_list, r)
    model.fc.load_state_dict(ori_linear_layer_state_dict)
    return subset_index, gains


# ---- both sides -------------------------------------------------------------------------------------------


def _inputs():
    g = torch.Generator().manual_seed(5)

    def img(n):
        return EPS + (1 - 2 * EPS) * torch.rand(n, 3, 32, 32, generator=g)

    candidates = [(img(B), img(B)) for _ in range(N_CAND)]
    val = img(N_VAL)  # the held-out images in loader order

    def start(n):
        return torch.rand(n, 3, 32, 32, generator=g) * EPS * 2 - EPS

    # the reference's order of attacks: validation, candidates, then validation after each of N_PICK-1 picks;
    # a validation attack is one start per attacked row (N_VAL rows: the first half of each batch, twice)
    val_starts = [start(N_VAL) for _ in range(N_PICK)]
    cand_starts = [start(2 * B) for _ in range(N_CAND)]
    return candidates, val, val_starts, cand_starts


def test_rcs_selection_parity_with_reference(monkeypatch):
    torch.set_default_dtype(torch.float64)
    try:
        ours, ref, _ = make_pair(0.0)
        ref.get_feature = lambda x, bn: _feature(ref, x, bn)
        candidates, val, val_starts, cand_starts = _inputs()
        # reference layouts: views interleaved; validation rows doubled (and their starts with them)
        ref_cands = [
            (list(range(i * B, (i + 1) * B)), torch.stack([v1, v2], 1))
            for i, (v1, v2) in enumerate(candidates)
        ]
        # the reference's validation loader: batches of VAL_BS, each image as two identical "views" (tfs_test)
        ref_val = [torch.stack([v, v], 1) for v in val.split(VAL_BS)]
        ref_noise = _ref_noise(val_starts, cand_starts)
        picked_ref, gains_ref = update_subset_indice(ref, ref_val, ref_cands, ref_noise, N_PICK, LR)

        ours_noise = iter([*[torch.cat([c[::2], c[1::2]]) for c in cand_starts]])
        val_noise = iter(val_starts)
        order = []  # our attacks: validation first, then candidates, then validation (same as theirs)

        def start(x, cfg):
            order.append(x.shape[0])
            if x.shape[0] != N_VAL:
                return next(ours_noise)
            rows = next(val_noise)
            attacked.append(x + rows)
            return rows

        attacked: list[torch.Tensor] = []
        monkeypatch.setitem(STARTS._items, "uniform", start)
        attack = AttackConfig(eps=EPS, step_size=2 / 255 * 5 / PGD_ITER, steps=PGD_ITER, start="uniform")
        cfg = RCSConfig(fraction=0.5, val_attack_steps=VAL_ITER, lr=LR, val_batch_size=VAL_BS)
        selector = CoresetSelector(ours.backbone, ours.head, attack, cfg, temperature=0.5)
        before = {k: v.clone() for k, v in ours.state_dict().items()}
        picked = selector.select(candidates, val, N_PICK)
        assert order == [N_VAL] + [2 * B] * N_CAND + [N_VAL] * (N_PICK - 1)
        rows = validation_rows(val, VAL_BS)  # images 0, 0, 1, 1 (first batch), 4, 4 (second)
        assert torch.equal(rows, val[[0, 0, 1, 1, 4, 4]])
        assert not torch.equal(attacked[0][0], attacked[0][1])  # the two copies start (and move) apart
        assert [i for c in picked for i in range(c * B, (c + 1) * B)] == picked_ref
        assert len(set(picked)) == N_PICK
        assert len(selector.gains) == len(gains_ref) == N_PICK
        for a, b in zip(selector.gains, gains_ref, strict=True):  # every score, after every head step
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        unpicked = [i for i in range(N_CAND) if i != picked[0]]
        assert not torch.allclose(selector.gains[1], selector.gains[0][unpicked])  # the head step moved g_val
        for k, v in ours.state_dict().items():  # the selection leaves the model exactly as it found it
            assert torch.equal(v, before[k]), k
    finally:
        torch.set_default_dtype(torch.float32)


def _feature(ref, x, bn):
    with bn_branch(ref.backbone, TO_BRANCH[bn]):
        return ref.backbone(x)


def _ref_noise(val_starts, cand_starts):
    # each validation pass attacks one batch at a time: its rows' starts, in order (the same rows ours gets)
    def per_batch(s):
        yield s[:VAL_BS]
        yield s[VAL_BS:]

    yield from per_batch(val_starts[0])
    yield from cand_starts
    for s in val_starts[1:]:
        yield from per_batch(s)


assert BN_NAMES and nn  # imported for the reference model's construction in make_pair
