"""MIMIR's pretraining step against a re-typed transcription of the reference's loop (xiaoyunxxy/MIMIR b5bc401:
``pretrain.py train_one_epoch`` and ``main``'s optimiser, ``models/mae_vit.py MaskedAutoencoderViT``,
``pgd_mae/pgd_mae.py PGD_MAE`` with ``pgd_mae/attack.py``'s eval()/train() switching, ``MI/hsic.py
hsic_normalized_cca``, ``util/lr_sched.py adjust_learning_rate``), in its order of operations: same weights,
batch, masks and noise (one seeded RNG stream, drawn in the reference's order), three optimiser steps.

Left out of the transcription, on purpose: fp16 autocast and the GradScaler (CPU, fp32 here), DDP, logging."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import pytest
import timm.optim
import torch
from timm.models.vision_transformer import Block, PatchEmbed
from torch import nn

from pipeline.attacks import AttackConfig
from pipeline.models import ModelConfig
from pipeline.objectives.mimir import MIMIRConfig, MIMIRModel, MIMIRObjective
from pipeline.train.optim import OptimConfig, build_optimizer, build_scheduler

STEPS, STEPS_PER_EPOCH, EPOCHS, WARMUP = 3, 2, 3, 1
LR, WD = 1e-3, 0.05
CFG = MIMIRConfig(decoder_dim=32, decoder_depth=1, decoder_heads=4, hsic_weight=0.05)
ATTACK = AttackConfig(eps=8 / 255, step_size=10 / 255, steps=2, start="uniform")


# ---- the transcription ----------------------------------------------------------------------------------


class RefMAE(nn.Module):
    """models/mae_vit.py MaskedAutoencoderViT, re-typed (weights are copied in, so no initialisation)."""

    def __init__(self, img, patch, dim, depth, heads, ddim, ddepth, dheads, norm_pix_loss):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(img, patch, 3, dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)]
        )
        self.norm = norm(dim)
        self.decoder_embed = nn.Linear(dim, ddim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, ddim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, ddim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(ddim, dheads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(ddepth)]
        )
        self.decoder_norm = norm(ddim)
        self.decoder_pred = nn.Linear(ddim, patch**2 * 3, bias=True)
        self.norm_pix_loss = norm_pix_loss

    def patchify(self, imgs):
        p = self.patch_embed.patch_size[0]
        h = w = imgs.shape[2] // p
        x = imgs.reshape(shape=(imgs.shape[0], 3, h, p, w, p))
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(shape=(imgs.shape[0], h * w, p**2 * 3))

    def random_masking(self, x, mask_ratio):
        N, L, D = x.shape
        len_keep = int(L * (1 - mask_ratio))
        noise = torch.rand(N, L, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([N, L], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x, mask_ratio):
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        cls_tokens = cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = (pred - target) ** 2
        loss = loss.mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs, mask_ratio=0.75, adv_images=None):
        if adv_images is not None:
            latent, mask, ids_restore = self.forward_encoder(adv_images, mask_ratio)
            pred = self.forward_decoder(latent, ids_restore)
            return self.forward_loss(imgs, pred, mask), pred, mask, latent
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask, latent


def ref_pgd_mae(model, images, eps, alpha, steps):
    """pgd_mae.py PGD_MAE.forward inside attack.py __call__ (eval() during, train() after)."""
    given_training = model.training
    model.eval()
    images = images.clone().detach()
    adv_images = images.clone().detach()
    adv_images = adv_images + torch.empty_like(adv_images).uniform_(-eps, eps)
    adv_images = torch.clamp(adv_images, min=0.0, max=1.0).detach()
    for _ in range(steps):
        adv_images.requires_grad = True
        loss, _, _, _ = model(adv_images)
        grad = torch.autograd.grad(loss, adv_images, retain_graph=False, create_graph=False)[0]
        adv_images = adv_images.detach() + alpha * grad.sign()
        delta = torch.clamp(adv_images - images, min=-eps, max=eps)
        adv_images = torch.clamp(images + delta, min=0.0, max=1.0).detach()
    if given_training:
        model.train()
    return adv_images


def ref_distmat(X):
    r = torch.sum(X * X, 1)
    r = r.view([-1, 1])
    a = torch.mm(X, torch.transpose(X, 0, 1))
    D = r.expand_as(a) - 2 * a + torch.transpose(r, 0, 1).expand_as(a)
    return torch.abs(D)


def ref_kernelmat(X, sigma):
    m = int(X.size()[0])
    H = torch.eye(m) - (1.0 / m) * torch.ones([m, m])
    Dxx = ref_distmat(X)
    variance = 2.0 * sigma * sigma * X.size()[1]
    Kx = torch.exp(-Dxx / variance).type(torch.FloatTensor)
    return torch.mm(Kx, H)


def ref_hsic_normalized_cca(x, y, sigma):
    m = int(x.size()[0])
    Kxc = ref_kernelmat(x, sigma=sigma)
    Kyc = ref_kernelmat(y, sigma=sigma)
    epsilon = 1e-5
    K_I = torch.eye(m)
    Kxc_i = torch.inverse(Kxc + epsilon * m * K_I)
    Kyc_i = torch.inverse(Kyc + epsilon * m * K_I)
    Rx = Kxc.mm(Kxc_i)
    Ry = Kyc.mm(Kyc_i)
    return torch.sum(torch.mul(Rx, Ry.t()))


def ref_adjust_learning_rate(optimizer, epoch, lr, min_lr, warmup_epochs, epochs):
    if epoch < warmup_epochs:
        lr = lr * epoch / warmup_epochs
    else:
        lr = min_lr + (lr - min_lr) * 0.5 * (
            1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs))
        )
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr


def run_reference(model, batches, cfg=CFG, attack=ATTACK):
    """pretrain.py main (optimiser) + train_one_epoch (accum_iter 1, --attack pgd_mae --mi_train hsic)."""
    param_groups = timm.optim.param_groups_weight_decay(model, WD)
    optimizer = torch.optim.AdamW(param_groups, lr=LR, betas=(0.9, 0.95))
    model.train(True)
    optimizer.zero_grad()
    losses = []
    for it, samples in enumerate(batches):
        epoch, data_iter_step = divmod(it, STEPS_PER_EPOCH)
        ref_adjust_learning_rate(optimizer, data_iter_step / STEPS_PER_EPOCH + epoch, LR, 0.0, WARMUP, EPOCHS)
        adv_images = ref_pgd_mae(model, samples, attack.eps, attack.step_size, attack.steps)
        loss, pred, _, latent = model(samples, mask_ratio=cfg.mask_ratio, adv_images=adv_images)
        latent = latent.view(latent.shape[0], -1)
        h_data_adv = adv_images.view(adv_images.shape[0], -1)
        h_xp_l = ref_hsic_normalized_cca(latent, h_data_adv, sigma=cfg.hsic_sigma)
        hsic_loss = cfg.hsic_weight * h_xp_l
        if math.isfinite(hsic_loss) and h_xp_l != 0:
            loss += hsic_loss
        losses.append(loss.item())
        loss.backward()  # NativeScaler without fp16: backward + step
        optimizer.step()
        optimizer.zero_grad()
    return losses


# ---- ours -----------------------------------------------------------------------------------------------


def build_ours(cfg: MIMIRConfig = CFG) -> MIMIRModel:
    torch.manual_seed(0)
    # mean 0 / std 1: the reference feeds [0,1] pixels (no --use_normalize)
    vit = ModelConfig(name="vit_micro_patch4_32", mean=[0.0] * 3, std=[1.0] * 3).build(0)
    return MIMIRModel(vit, cfg)


def run_ours(model, batches, cfg=CFG, attack=ATTACK, optim=None):
    optim = optim or OptimConfig(
        name="adamw", lr=LR, weight_decay=WD, decay_norm_and_bias=False, betas=[0.9, 0.95],
        warmup_epochs=WARMUP, warmup_from_zero=True, min_lr=0.0,
    )  # fmt: skip
    optimizer = build_optimizer(model.parameters(), optim)
    scheduler = build_scheduler(optimizer, STEPS_PER_EPOCH * EPOCHS, STEPS_PER_EPOCH, optim)
    objective = MIMIRObjective(model, model, cfg, attack)
    model.train()
    losses = []
    for x in batches:
        loss, _ = objective.step((x,), None)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return losses


def to_reference(ours: MIMIRModel) -> RefMAE:
    vit = ours.encoder.vit
    ref = RefMAE(32, 4, vit.embed_dim, len(vit.blocks), vit.blocks[0].attn.num_heads, CFG.decoder_dim,
                 CFG.decoder_depth, CFG.decoder_heads, CFG.norm_pix_loss)  # fmt: skip
    state = {}
    for name, t in ours.state_dict().items():
        for a, b in (
            ("encoder.vit.blocks.", "blocks."),
            ("encoder.vit.", ""),
            ("decoder.blocks.", "decoder_blocks."),
            ("decoder.mask_token", "mask_token"),
            ("decoder.pos_embed", "decoder_pos_embed"),
            ("decoder.norm.", "decoder_norm."),
        ):
            if name.startswith(a):
                name = b + name[len(a) :]
                break
        state[name] = t
    state = {k: v for k, v in state.items() if k in ref.state_dict()}
    missing = set(ref.state_dict()) - set(state)
    assert not missing, missing
    ref.load_state_dict(state)
    return ref


def weight_pairs(ours: MIMIRModel, ref: RefMAE):
    mapped = to_reference(ours).state_dict()
    return [(k, mapped[k], v) for k, v in ref.state_dict().items()]


def _batches():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(6, 3, 32, 32, generator=g) for _ in range(STEPS)]


def _both(cfg=CFG, attack=ATTACK, optim=None):
    ours = build_ours(cfg)
    ref = to_reference(ours)
    batches = _batches()
    torch.manual_seed(123)
    ours_losses = run_ours(ours, batches, cfg, attack, optim)
    torch.manual_seed(123)
    ref_losses = run_reference(ref, batches)
    return ours, ref, ours_losses, ref_losses


def _max_weight_gap(ours, ref) -> float:
    return max(float((a - b).abs().max()) for _, a, b in weight_pairs(ours, ref))


def test_mimir_step_matches_the_reference_loop():
    ours, ref, ours_losses, ref_losses = _both()
    assert len(ours_losses) == STEPS
    for a, b in zip(ours_losses, ref_losses, strict=True):
        assert abs(a - b) <= 1e-6, (ours_losses, ref_losses)
    assert _max_weight_gap(ours, ref) <= 1e-5
    # and training moved the weights (lr is 0 only at the first warm-up step)
    start = to_reference(build_ours()).state_dict()
    assert max(float((start[k] - v).abs().max()) for k, v in ref.state_dict().items()) > 1e-4


_SLOW = pytest.mark.slow  # each case is a full pair of runs; two stay in the fast suite


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(dict(cfg=replace(CFG, hsic_weight=0.5)), id="hsic_weight"),
        pytest.param(dict(cfg=replace(CFG, mask_ratio=0.5)), id="mask_ratio", marks=_SLOW),
        pytest.param(dict(cfg=replace(CFG, attack_mask_ratio=0.5)), id="attack_mask_ratio", marks=_SLOW),
        pytest.param(dict(cfg=replace(CFG, norm_pix_loss=False)), id="norm_pix_loss", marks=_SLOW),
        pytest.param(dict(attack=replace(ATTACK, step_size=2 / 255)), id="step_size", marks=_SLOW),
        pytest.param(
            dict(
                optim=OptimConfig(
                    name="adamw",
                    lr=LR,
                    weight_decay=WD,
                    decay_norm_and_bias=False,
                    warmup_epochs=WARMUP,
                    warmup_from_zero=True,
                )  # default betas (0.9, 0.999)
            ),
            id="betas",
        ),  # fmt: skip
    ],
)
def test_a_changed_hyperparameter_breaks_parity(change):
    """Mutation check: the comparison above can fail."""
    ours, ref, ours_losses, ref_losses = _both(**change)
    gap = max(abs(a - b) for a, b in zip(ours_losses, ref_losses, strict=True))
    assert gap > 1e-6 or _max_weight_gap(ours, ref) > 1e-5


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("vit_micro_patch4_32", {}),
        ("timm:vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "depth": 2}),
    ],
)
def test_unmasked_encoder_is_the_backbones_own_forward(name, kwargs):
    """With nothing masked and the identity order, lightly's masked encoder equals the exported backbone's
    forward_features (normalisation included): what MIMIR trains is what the timm folder computes."""
    backbone = ModelConfig(name=name, mean=[0.5] * 3, std=[0.25] * 3, kwargs=kwargs).build(0)
    model = MIMIRModel(backbone, CFG, name).eval()
    x = torch.rand(2, 3, 32, 32)
    noise = torch.arange(model.num_patches, dtype=torch.float32).repeat(2, 1)  # keep every patch, in order
    with torch.no_grad():
        latent, _, mask = model.encode(x, noise, 0.0)
        assert mask.sum() == 0
        torch.testing.assert_close(latent, backbone.forward_features(x), rtol=1e-5, atol=1e-5)
        loss, _ = model(x, x, 0.75)
    assert torch.isfinite(loss)


def test_each_weight_is_in_the_checkpoint_once(tmp_path):
    """The exported backbone is the encoder's ViT, registered once: a checkpoint holds each weight once and
    restores it (accelerate save_state / load_state, as the trainer checkpoints)."""
    from accelerate import Accelerator

    model = build_ours()
    keys = list(model.state_dict())
    assert len(keys) == len(set(keys)) and not any(k.startswith("backbone.") for k in keys)
    assert model.backbone.cls_token is model.encoder.vit.cls_token
    acc = Accelerator(cpu=True)
    prepared, opt = acc.prepare(model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad]))
    acc.save_state(str(tmp_path / "ckpt"))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    acc.load_state(str(tmp_path / "ckpt"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
