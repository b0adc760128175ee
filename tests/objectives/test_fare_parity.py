"""FARE step for step against a re-typed transcription of its reference loop (chs20/RobustVLM at 7de10ee2:
``train/adversarial_training_clip.py`` train_one_epoch 296-366, ``train/pgd_train.py`` pgd 5-68,
``train/apgd_train.py`` apgd_train 125-373 for Linf/L2, ``vlm_eval/attacks/utils.py`` 8-26, and open_clip's
``training/scheduler.py`` cosine_lr that the loop imports). The transcription keeps the reference's order of
operations, its wrapper (``forward(vision, output_normalize)``) and its quirks: the unclamped uniform start,
the clean forward computed even at clean_weight 0, APGD's always-normalised attacked embedding, and the
scheduler called *after* each optimiser step.

Same weights, batch and noise (global RNG seeded alike): the losses agree to 1e-6 and the weights (and BN
statistics) to 1e-5 after three AdamW steps, for a tiny timm ViT and a CNN with BatchNorm, PGD and APGD.
Float64 so that a last-bit difference cannot flip a sign step and hide or fake a disagreement.
"""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks import AttackConfig
from pipeline.objectives.fare import FAREConfig, FAREObjective, frozen_copy
from pipeline.train.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor

EPS, STEP = 4 / 255, 1 / 255

# ---- the reference, re-typed -----------------------------------------------------------------------------


def ref_project_perturbation(perturbation, eps, norm):
    if norm in ("inf", "linf", "Linf"):
        return torch.clamp(perturbation, -eps, eps)
    return torch.renorm(perturbation, p=2, dim=0, maxnorm=eps)


def ref_normalize_grad(grad, p):
    if p in ("inf", "linf", "Linf"):
        return grad.sign()
    bs = grad.shape[0]
    return F.normalize(grad.view(bs, -1), p=2, dim=1).view_as(grad)


def ref_pgd(forward, loss_fn, data_clean, targets, norm, eps, iterations, stepsize, output_normalize,
            perturbation=None, mode="min", momentum=0.9):  # fmt: skip
    assert torch.max(data_clean) < 1.0 + 1e-6 and torch.min(data_clean) > -1e-6
    if perturbation is None:
        perturbation = torch.zeros_like(data_clean, requires_grad=True)
    velocity = torch.zeros_like(data_clean)
    for _ in range(iterations):
        perturbation.requires_grad = True
        with torch.enable_grad():
            out = forward(data_clean + perturbation, output_normalize=output_normalize)
            loss = loss_fn(out, targets)
        with torch.no_grad():
            gradient = torch.autograd.grad(loss, perturbation)[0]
            if gradient.isnan().any():
                gradient[gradient.isnan()] = 0.0
            gradient = ref_normalize_grad(gradient, p=norm)
            velocity = momentum * velocity + gradient
            velocity = ref_normalize_grad(velocity, p=norm)
            if mode == "min":
                perturbation = perturbation - stepsize * velocity
            else:
                perturbation = perturbation + stepsize * velocity
            perturbation = ref_project_perturbation(perturbation, eps, norm)
            perturbation = torch.clamp(data_clean + perturbation, 0, 1) - data_clean
    return data_clean + perturbation.detach()


def ref_L2_norm(x, keepdim=False):
    z = (x**2).view(x.shape[0], -1).sum(-1).sqrt()
    if keepdim:
        z = z.view(-1, *[1] * (len(x.shape) - 1))
    return z


def ref_check_oscillation(x, j, k, y5, k3=0.75):
    t = torch.zeros(x.shape[1]).to(x.device)
    for counter5 in range(k):
        t += (x[j - counter5] > x[j - counter5 - 1]).float()
    return (t <= k * k3 * torch.ones_like(t)).float()


def _ref_l2_ball(x, x_adv_1, eps):
    return torch.clamp(
        x
        + (x_adv_1 - x)
        / (ref_L2_norm(x_adv_1 - x, keepdim=True) + 1e-12)
        * torch.min(eps * torch.ones_like(x), ref_L2_norm(x_adv_1 - x, keepdim=True)),
        0.0,
        1.0,
    )


def ref_apgd_train(model, x, y, norm, eps, n_iter=10, loss_fn=None, initial_stepsize=None):
    assert not model.training
    device = x.device
    ndims = len(x.shape) - 1
    x_adv = x.clone()
    x_adv = x_adv.clamp(0.0, 1.0)
    x_best = x_adv.clone()
    x_best_adv = x_adv.clone()
    loss_steps = torch.zeros([n_iter, x.shape[0]], device=device)
    loss_best_steps = torch.zeros([n_iter + 1, x.shape[0]], device=device)
    acc_steps = torch.zeros_like(loss_best_steps)
    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)
    k = n_iter_2 + 0
    thr_decr = 0.75
    alpha = 2.0
    if initial_stepsize:
        alpha = initial_stepsize / eps
    step_size = alpha * eps * torch.ones([x.shape[0], *[1] * ndims], device=device)
    counter3 = 0
    x_adv.requires_grad_()
    logits = model(x_adv, output_normalize=True)
    loss_indiv = loss_fn(logits, y)
    loss = loss_indiv.sum()
    grad = torch.autograd.grad(loss, [x_adv])[0].detach()
    grad_best = grad.clone()
    x_adv.detach_()
    loss_indiv.detach_()
    loss.detach_()
    acc = logits.detach().max(1)[1] == y
    acc_steps[0] = acc + 0
    loss_best = loss_indiv.detach().clone()
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones_like(loss_best)
    x_adv_old = x_adv.clone().detach()
    for i in range(n_iter):
        x_adv = x_adv.detach()
        grad2 = x_adv - x_adv_old
        x_adv_old = x_adv.clone()
        a = 0.75 if i > 0 else 1.0
        if norm == "Linf":
            x_adv_1 = x_adv + step_size * torch.sign(grad)
            x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
            x_adv_1 = torch.clamp(
                torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps),
                0.0,
                1.0,
            )
        else:
            x_adv_1 = x_adv + step_size * grad / (ref_L2_norm(grad, keepdim=True) + 1e-12)
            x_adv_1 = _ref_l2_ball(x, x_adv_1, eps)
            x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
            x_adv_1 = _ref_l2_ball(x, x_adv_1, eps)
        x_adv = x_adv_1 + 0.0
        x_adv.requires_grad_()
        logits = model(x_adv, output_normalize=True)
        loss_indiv = loss_fn(logits, y)
        loss = loss_indiv.sum()
        if i < n_iter - 1:
            grad = torch.autograd.grad(loss, [x_adv])[0].detach()
        x_adv.detach_()
        loss_indiv.detach_()
        loss.detach_()
        pred = logits.detach().max(1)[1] == y
        acc = torch.min(acc, pred)
        acc_steps[i + 1] = acc + 0
        ind_pred = (pred == 0).nonzero().squeeze()
        x_best_adv[ind_pred] = x_adv[ind_pred] + 0.0
        y1 = loss_indiv.detach().clone()
        loss_steps[i] = y1 + 0
        ind = (y1 > loss_best).nonzero().squeeze()
        x_best[ind] = x_adv[ind].clone()
        grad_best[ind] = grad[ind].clone()
        loss_best[ind] = y1[ind] + 0
        loss_best_steps[i + 1] = loss_best + 0
        counter3 += 1
        if counter3 == k:
            fl_oscillation = ref_check_oscillation(loss_steps, i, k, loss_best, k3=thr_decr)
            fl_reduce_no_impr = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best).float()
            fl_oscillation = torch.max(fl_oscillation, fl_reduce_no_impr)
            reduced_last_check = fl_oscillation.clone()
            loss_best_last_check = loss_best.clone()
            if fl_oscillation.sum() > 0:
                ind_fl_osc = (fl_oscillation > 0).nonzero().squeeze()
                step_size[ind_fl_osc] /= 2.0
                x_adv[ind_fl_osc] = x_best[ind_fl_osc].clone()
                grad[ind_fl_osc] = grad_best[ind_fl_osc].clone()
            counter3 = 0
            k = max(k - size_decr, n_iter_min)
    return x_best_adv


def ref_l2(out, targets, reduction="none"):
    assert out.shape == targets.shape
    squared_error_batch = F.mse_loss(out, targets, reduction="none")
    if reduction == "mean":
        return torch.mean(squared_error_batch.sum(dim=1))
    return squared_error_batch.sum(dim=1)


class RefClipVisionModel(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, vision, output_normalize):
        embedding = self.model(vision)  # our networks normalise inside, as ClipVisionModel's normalize does
        if output_normalize:
            embedding = F.normalize(embedding, dim=-1)
        return embedding


def ref_cosine_lr(optimizer, base_lr, warmup_length, steps):
    def _lr_adjuster(step):
        if step < warmup_length:
            lr = base_lr * (step + 1) / warmup_length
        else:
            e = step - warmup_length
            es = steps - warmup_length
            lr = 0.5 * (1 + math.cos(math.pi * e / es)) * base_lr
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        return lr

    return _lr_adjuster


def ref_train(model, model_orig, batches, args, bn_frozen=False):
    """train_one_epoch's loop; ``bn_frozen``: BN layers back to eval() after each model.train() (our
    update_bn_statistics=false, the one line that differs from the reference)."""
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=args["lr"], weight_decay=args["wd"])
    scheduler = ref_cosine_lr(optimizer, args["lr"], args["warmup"], args["steps"])
    losses = []
    model_orig.eval()
    model.train()
    step_total = 0
    for data in batches:
        targets = -torch.ones(data.shape[0], dtype=torch.long)  # no labels: argmax(embedding) never equals it
        with torch.no_grad():
            embedding_orig = model_orig(vision=data, output_normalize=args["output_normalize"])
        reduction = "none" if args["attack"] == "apgd" else "mean"

        def loss_inner_wrapper(embedding, targets, embedding_orig=embedding_orig, reduction=reduction):
            return ref_l2(embedding, embedding_orig, reduction=reduction)

        model.eval()
        if args["attack"] == "pgd":
            data_adv = ref_pgd(
                forward=model, loss_fn=loss_inner_wrapper, data_clean=data, targets=targets,
                norm=args["norm"], eps=args["eps"], iterations=args["iterations_adv"],
                stepsize=args["stepsize_adv"], output_normalize=args["output_normalize"],
                perturbation=torch.zeros_like(data).uniform_(-args["eps"], args["eps"]).requires_grad_(True),
                mode="max",
            )  # fmt: skip
        else:
            data_adv = ref_apgd_train(
                model=model, loss_fn=loss_inner_wrapper, x=data, y=targets, norm=args["norm"],
                eps=args["eps"], n_iter=args["iterations_adv"],
            )  # fmt: skip
        model.train()
        if bn_frozen:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        embedding_clean = model(data, output_normalize=args["output_normalize"])
        if args["clean_weight"] > 0.0:
            loss_clean = ref_l2(embedding_clean, embedding_orig, reduction="mean")
        else:
            loss_clean = 0.0
        embedding_adv = model(data_adv, output_normalize=args["output_normalize"])
        loss = ref_l2(embedding_adv, embedding_orig, reduction="mean")
        loss_total = args["clean_weight"] * loss_clean + (1 - args["clean_weight"]) * loss
        loss_total.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_total += 1
        scheduler(step_total)
        losses.append(float(loss_total.detach()))
    return losses


# ---- ours, as the trainer drives it ------------------------------------------------------------------------


def ours_train(backbone, batches, args, bn_update):
    original = frozen_copy(backbone)
    fare = FAREConfig(
        attack=args["attack"],
        output_normalize=args["output_normalize"],
        clean_weight=args["clean_weight"],
        update_bn_statistics=bn_update,
    )
    attack = AttackConfig(
        norm=args["norm"], eps=args["eps"], steps=args["iterations_adv"], step_size=args["stepsize_adv"]
    )
    optim = OptimConfig(name="adamw", lr=args["lr"], weight_decay=args["wd"], warmup_epochs=0.0)
    optimizer = build_optimizer(backbone.parameters(), optim)
    scheduler = build_scheduler(optimizer, args["steps"], args["steps"], optim)
    objective = FAREObjective(fare, attack, backbone, backbone, original)
    losses = []
    for x in batches:
        backbone.train()  # what the trainer does before each step
        loss, _ = objective.step((x,), None)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    return losses


def tiny_vit():
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0
    )


class TinyBNNet(nn.Module):
    """conv → BN → ReLU → conv → BN → ReLU → pool: a CNN whose BN statistics the loop can move."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.num_features = 12

    def forward(self, x):
        return self.body((x - 0.5) / 0.25)


def _run_both(make, args, bn_update=False, seed=0):
    torch.manual_seed(seed)
    net = make().double()
    with torch.no_grad():  # move the BN statistics off their defaults, so freezing them is visible
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(seed + 1)
    batches = [torch.rand(6, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(3)]
    ref_net, our_net = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(seed + 2)
    ref_losses = ref_train(
        RefClipVisionModel(ref_net), RefClipVisionModel(copy.deepcopy(net)), batches, args, not bn_update
    )
    torch.manual_seed(seed + 2)
    our_losses = ours_train(our_net, batches, args, bn_update)
    return net, ref_net, our_net, ref_losses, our_losses


def _args(**kw):
    args = dict(
        attack="pgd", norm="Linf", eps=EPS, stepsize_adv=STEP, iterations_adv=4, output_normalize=False,
        clean_weight=0.0, lr=3e-3, wd=1e-4, warmup=0, steps=5,
    )  # fmt: skip
    args.update(kw)
    return args


CASES = {
    "vit-pgd": (tiny_vit, _args(), False),
    "vit-apgd": (tiny_vit, _args(attack="apgd", iterations_adv=10), False),
    "vit-pgd-normalised-clean": (tiny_vit, _args(output_normalize=True, clean_weight=0.3), False),
    "vit-pgd-L2": (tiny_vit, _args(norm="L2", eps=0.5, stepsize_adv=0.1), False),
    "vit-apgd-L2": (tiny_vit, _args(attack="apgd", norm="L2", eps=0.5), False),
    "bn-pgd-frozen-stats": (TinyBNNet, _args(), False),
    "bn-pgd-reference-stats": (TinyBNNet, _args(), True),
    "bn-apgd-reference-stats": (TinyBNNet, _args(attack="apgd", iterations_adv=10), True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_three_fare_steps_match_the_reference_loop(case):
    make, args, bn_update = CASES[case]
    start, ref_net, our_net, ref_losses, our_losses = _run_both(make, args, bn_update)
    assert len(ref_losses) == 3
    for r, o in zip(ref_losses, our_losses, strict=True):
        assert abs(r - o) <= 1e-6 * max(1.0, abs(r)), (ref_losses, our_losses)
    ref_state, our_state = ref_net.state_dict(), our_net.state_dict()
    moved = 0.0
    for key, value in ref_state.items():
        torch.testing.assert_close(our_state[key], value, rtol=0, atol=1e-5, msg=key)
        if value.is_floating_point():
            moved = max(moved, float((value - start.state_dict()[key]).abs().max()))
    assert moved > 1e-3  # three steps really moved the weights (a no-op on both sides cannot pass)
    if make is TinyBNNet:  # BN statistics: moved by the reference's model.train(), kept when frozen
        bn_moved = (our_state["body.1.running_mean"] - start.state_dict()["body.1.running_mean"]).abs().max()
        assert (bn_moved > 1e-4) if bn_update else (bn_moved == 0)


def test_pgd_variant_uses_fare_steps_not_a_no_op():
    """The attack itself (not only the outer loop) is compared: PGD's loss grows over its iterations."""
    torch.manual_seed(0)
    net = tiny_vit().double().eval()
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    from pipeline.attacks.embedding import embedding_pgd, squared_l2

    with torch.no_grad():
        t = net(x)
    x_adv = embedding_pgd(net, x, t, norm="Linf", eps=EPS, steps=10, step_size=STEP)
    assert (x_adv - x).abs().max() <= EPS + 1e-12 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert squared_l2(net(x_adv), t).mean() > 10 * squared_l2(net(x.clamp(0, 1)), t).mean() + 1e-12


def test_schedule_matches_open_clip_cosine_lr_after_the_first_step():
    """AdamW's lr per step: warm-up then cosine as the reference's cosine_lr, called after each step. Its
    first step runs at the full lr (the scheduler is first called after it); ours at lr / W (documented
    deviation, one step of 20,000)."""
    steps, warmup = 50, 7
    params = [nn.Parameter(torch.zeros(1))]
    ref_opt = torch.optim.AdamW(params, lr=1e-5)
    adjust = ref_cosine_lr(ref_opt, 1e-5, warmup, steps)
    ref = [ref_opt.param_groups[0]["lr"]]
    for s in range(1, steps):
        ref.append(adjust(s))
    cfg = OptimConfig(name="adamw", lr=1e-5, warmup_epochs=warmup / steps)
    ours = [1e-5 * lr_factor(s, steps, steps, cfg) for s in range(steps)]
    assert ref[0] == 1e-5 and ours[0] == pytest.approx(1e-5 / warmup)
    assert ours[1:] == pytest.approx(ref[1:], rel=1e-12, abs=1e-20)
