"""MIMIR [0]: adversarial masked image modelling for ViTs — an MAE whose encoder sees a masked *adversarial*
image and whose decoder reconstructs the *clean* one, plus an HSIC bottleneck term between the latent and the
adversarial input. As xiaoyunxxy/MIMIR (b5bc401) ``pretrain.py``, ``models/mae_vit.py``, ``pgd_mae/pgd_mae.py``,
``MI/hsic.py``; one step (B images):

  1. attack (``pgd_mae.py``), network in ``eval()``: PGD from a uniform start in the ε-ball, each step
     maximising the MAE loss of the *adversarial image against itself* under a fresh random mask (the
     reference calls ``model(adv_images)``: target = input, its default mask ratio 0.75);
  2. train, in ``train()``: a fresh mask; encoder on the masked adversarial image, decoder, loss against the
     clean image's (per-patch normalised, ``norm_pix_loss``) patches on the masked patches only;
  3. + ``hsic_weight`` · HSIC-nCCA(latent, x_adv), σ = 5 (``--mi_train hsic --mi_xpl``), skipped (as the
     reference) when it is not finite or exactly 0 (a singular kernel matrix).

What comes from lightly: the encoder is lightly's ``MaskedVisionTransformerTIMM`` around the timm ViT (its MAE
weight initialisation and fixed 2-D sin-cos position embedding are the reference's ``initialize_weights``), the
decoder lightly's ``MaskedVisionTransformerDecoderTIMM`` (timm blocks, fixed sin-cos embedding, mask token
N(0, 0.02)), patchify ``lightly.models.utils.patchify`` (the reference's einsum). What does not: the masking —
``lightly.models.utils.random_token_mask`` *sorts* the kept indices, but the reference keeps them in the shuffled
order (``ids_shuffle[:, :len_keep]``), the latent's token order is what the HSIC kernel compares across
samples, so the masking is written here; the decoder's input projection and pixel head are plain
``nn.Linear`` s outside lightly's decoder (lightly leaves them to the method); HSIC-nCCA is re-typed (no
library ships it).

Precision: the reference runs the step under fp16 autocast; here the trainer's autocast (bf16 on GPU, fp32 on
CPU), and HSIC always in fp32 (the reference casts its kernels to ``torch.FloatTensor``; its distance matrix is
computed before that cast, under fp16, ours in fp32).

[0] Xu et al., MIMIR: Masked Image Modeling for Mutual Information-based Adversarial Robustness, 2023.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
from lightly.models import utils as lightly_utils
from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
from lightly.models.modules.masked_vision_transformer_timm import init_weights
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..attacks import AttackConfig, run_attack
from ..errors import UsageError
from ..models import eval_mode
from ..validation import check
from .contrastive import PRETRAIN_METHODS

__all__ = ["MIMIRConfig", "MIMIRModel", "MIMIRObjective", "hsic_normalized_cca", "vit_of"]


@PRETRAIN_METHODS.register("mimir")
class MIMIR:
    """``pretrain.method=mimir``: run by ``stages/pretrain.py _run_mimir`` (not a contrastive method; the
    contrastive settings, head and views do not apply)."""

    adversarial = True
    air = False
    uses_momentum = False


@dataclass
class MIMIRConfig:
    """``pretrain.mimir``: MIMIR's masking, decoder and HSIC term (its attack is ``pretrain.attack``)."""

    mask_ratio: float = 0.75  # of the patches the encoder does not see (train_cifar10.sh --mask_ratio 0.75)
    # the attack's own mask ratio: the reference calls model(adv_images) with forward()'s default 0.75
    attack_mask_ratio: float = 0.75
    norm_pix_loss: bool = True  # per-patch normalised pixel targets (train_cifar10.sh --norm_pix_loss)
    decoder_dim: int = 128  # mae_vit.py smaller_decoder: 128 wide, 2 blocks, 16 heads
    decoder_depth: int = 2
    decoder_heads: int = 16
    decoder_mlp_ratio: float = 4.0
    hsic_weight: float = 1e-5  # --mi_xpl; 0 = plain adversarial MAE (no HSIC term)
    hsic_sigma: float = 5.0  # pretrain.py: hsic_normalized_cca(latent, h_data_adv, sigma=5)

    def check(self) -> None:
        for key in ("mask_ratio", "attack_mask_ratio"):
            check(0 <= getattr(self, key) < 1, key, getattr(self, key), "use a value in [0, 1)")
        for key in ("decoder_dim", "decoder_depth", "decoder_heads"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "use 1 or more")
        check(
            self.decoder_dim % self.decoder_heads == 0,
            "decoder_heads",
            self.decoder_heads,
            f"use a divisor of decoder_dim={self.decoder_dim}",
        )
        check(self.hsic_weight >= 0, "hsic_weight", self.hsic_weight, "use 0 or more")
        check(self.hsic_sigma > 0, "hsic_sigma", self.hsic_sigma, "use a positive kernel width")


def vit_of(backbone: nn.Module, model_name: str) -> tuple[VisionTransformer, nn.Module]:
    """(the timm ViT, the input normalisation to apply before it) of one of our backbones.

    Raises:
        UsageError: the backbone is not a timm ``VisionTransformer`` with a class token and patch embedding.
    """
    if isinstance(backbone, VisionTransformer):  # our registered ViTs: normalisation inside patch_embed
        vit, normalize = backbone, nn.Identity()
    else:  # timm:<name>: the wrapper normalises, its .model is the plain timm network
        vit, normalize = getattr(backbone, "model", None), getattr(backbone, "normalize", nn.Identity())
    if not isinstance(vit, VisionTransformer) or vit.cls_token is None or vit.reg_token is not None:
        raise UsageError(
            f"pretrain.method=mimir needs a ViT with a class token (e.g. model.name=vit_tiny_patch4_32 or "
            f"timm:vit_tiny_patch16_224); model.name={model_name} is not one"
        )
    return vit, normalize


def _random_keep(noise: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept patch indices in the reference's *shuffled* order (B, keep), binary mask (B, L), 1 = removed):
    ``mae_vit.py random_masking`` — argsort of uniform noise, small noise kept."""
    b, n = noise.shape
    keep = int(n * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(b, n, device=noise.device)
    mask[:, :keep] = 0
    return ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore)


class MIMIRModel(nn.Module):
    """The MAE around a timm ViT: lightly's masked encoder + decoder. ``backbone`` is trained in place and is
    what the stage exports (the decoder is not part of it)."""

    def __init__(
        self, backbone: nn.Module, cfg: MIMIRConfig, model_name: str = "model", pretrained: bool = False
    ):
        super().__init__()
        vit, self.normalize = vit_of(backbone, model_name)
        self.cfg = cfg
        # the exported module, kept out of the module tree: its ViT is registered once, as encoder.vit (a
        # second registration would put every weight twice in state_dict and in the checkpoints)
        self.__dict__["backbone"] = backbone
        # from scratch (the reference): lightly's MAE initialisation (= mae_vit.py initialize_weights) and a
        # frozen sin-cos position embedding; from model.pretrained weights: both kept as loaded
        skip = "skip" if pretrained else ""
        self.encoder = MaskedVisionTransformerTIMM(
            vit=vit, weight_initialization=skip, pos_embed_initialization=skip or "sincos"
        )
        # masking here keeps only the visible tokens (idx_keep), so lightly's encoder mask token is never used:
        # frozen, so that DDP does not wait for its gradient
        self.encoder.mask_token.requires_grad_(False)
        self.patch = vit.patch_embed.patch_size[0]
        self.num_patches = vit.patch_embed.num_patches
        self.decoder_embed = nn.Linear(vit.embed_dim, cfg.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.num_patches,
            embed_dim=cfg.decoder_dim,
            depth=cfg.decoder_depth,
            num_heads=cfg.decoder_heads,
            num_prefix_tokens=1,
            mlp_ratio=cfg.decoder_mlp_ratio,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
        in_chans = vit.patch_embed.proj.in_channels
        self.decoder_pred = nn.Linear(cfg.decoder_dim, self.patch**2 * in_chans)
        self.decoder_embed.apply(init_weights)  # xavier, as the reference's self.apply(_init_weights)
        self.decoder_pred.apply(init_weights)

    def encode(self, x: torch.Tensor, noise: torch.Tensor, ratio: float):
        """latent (B, 1 + keep, D): class token then the kept patches in shuffled order; idx_keep; mask."""
        kept, mask = _random_keep(noise, ratio)
        cls = torch.zeros(kept.shape[0], 1, dtype=kept.dtype, device=kept.device)
        idx_keep = torch.cat([cls, kept + 1], dim=1)  # sequence indices: 0 is the class token
        return self.encoder.encode(self.normalize(x), idx_keep=idx_keep), idx_keep, mask

    def decode(self, latent: torch.Tensor, idx_keep: torch.Tensor) -> torch.Tensor:
        """Pixel predictions (B, L, p²·C) for every patch."""
        x = self.decoder_embed(latent)
        # mask tokens everywhere, the encoded tokens put back at their positions (= the reference's unshuffle)
        full = lightly_utils.repeat_token(self.decoder.mask_token, (x.shape[0], self.num_patches + 1))
        full = lightly_utils.set_at_index(full, idx_keep, x.type_as(full))
        return self.decoder_pred(self.decoder(full))[:, 1:]

    def reconstruction_loss(self, x_in: torch.Tensor, target: torch.Tensor, ratio: float):
        """(MAE loss of reconstructing ``target`` from masked ``x_in``, latent). Draws the mask noise."""
        noise = torch.rand(x_in.shape[0], self.num_patches, device=x_in.device)
        latent, idx_keep, mask = self.encode(x_in, noise, ratio)
        pred = self.decode(latent, idx_keep)
        patches = lightly_utils.patchify(target, self.patch)
        if self.cfg.norm_pix_loss:
            mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
            patches = (patches - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred - patches) ** 2).mean(dim=-1)  # (B, L)
        return (per_patch * mask).sum() / mask.sum(), latent

    def forward(self, x_in: torch.Tensor, target: torch.Tensor, ratio: float):
        return self.reconstruction_loss(x_in, target, ratio)


def _centred_kernel(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """hsic.py ``kernelmat``: Gaussian kernel exp(−‖zi − zj‖² / (2σ²·d)), centred on the right (K·H)."""
    m = z.shape[0]
    r = (z * z).sum(dim=1, keepdim=True)
    dist = (r - 2 * z @ z.T + r.T).abs()
    k = torch.exp(-dist / (2.0 * sigma * sigma * z.shape[1]))
    h = torch.eye(m, device=z.device) - torch.full((m, m), 1.0 / m, device=z.device)
    return k @ h


def hsic_normalized_cca(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """HSIC normalised cross-covariance of two batches, each (m, d), in fp32 (``MI/hsic.py
    hsic_normalized_cca``, from the HSIC-bottleneck paper's code): Σ (Kx(Kx + εmI)⁻¹) ∘ (Ky(Ky + εmI)⁻¹)ᵀ with
    ε = 1e-5. Returns 0 when a matrix is singular (the reference's except branch)."""
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        m = x.shape[0]
        kx, ky = _centred_kernel(x, sigma), _centred_kernel(y, sigma)
        ridge = 1e-5 * m * torch.eye(m, device=x.device)
        try:
            rx = kx @ torch.linalg.inv(kx + ridge)
            ry = ky @ torch.linalg.inv(ky + ridge)
        except torch.linalg.LinAlgError:
            return torch.zeros((), device=x.device)
        return (rx * ry.T).sum()


@dataclass
class MIMIRObjective:
    """``step((x,), state) -> (loss, metrics)``; ``model`` the (possibly DDP-wrapped) :class:`MIMIRModel`,
    ``raw`` the unwrapped one the attack uses."""

    model: nn.Module
    raw: MIMIRModel
    cfg: MIMIRConfig
    attack: AttackConfig = field(default_factory=AttackConfig)

    def step(self, batch, state) -> tuple[torch.Tensor, dict]:
        x = batch[0]
        with eval_mode(self.raw):  # pgd_mae/attack.py __call__: model.eval() while attacking
            x_adv = run_attack(
                lambda z: self.raw.reconstruction_loss(z, z, self.cfg.attack_mask_ratio)[0], x, self.attack
            )
        # the training forward goes through the wrapped model (DDP's gradient hooks)
        loss, latent = self.model(x_adv, x, self.cfg.mask_ratio)
        metrics = {"images": x.shape[0], "loss_mae": float(loss.detach())}
        if self.cfg.hsic_weight > 0:
            hsic = hsic_normalized_cca(latent.flatten(1), x_adv.flatten(1), self.cfg.hsic_sigma)
            value = float(hsic.detach())
            metrics["hsic"] = value
            if math.isfinite(value) and value != 0:  # pretrain.py: skipped when not finite or 0
                loss = loss + self.cfg.hsic_weight * hsic
        metrics["passes"] = 1 + self.attack.steps
        return loss, metrics
