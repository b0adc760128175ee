"""FARE [0]: label-free robust fine-tuning of a pretrained encoder against a frozen copy of itself.

One step (B images, no augmentation; chs20/RobustVLM ``train/adversarial_training_clip.py`` 296-366):
  1. target t = f₀(x), f₀ the frozen starting weights in ``eval()``, no gradients;
  2. attack in ``eval()`` (input gradients only): PGD with momentum or APGD (``attacks/embedding.py``)
     maximising ‖f(x + δ) − t‖²;
  3. outer loss in ``train()``: (1 − w)·mean_b ‖f(x_adv) − t‖² + w·mean_b ‖f(x) − t‖² (w = clean_weight,
     0 in the reference's FARE recipe); the optimiser and the warm-up + cosine schedule are the training
     loop's (``pretrain.optim``: AdamW, lr 1e-5, weight decay 1e-4 in the recipe).

BatchNorm (CNN backbones; CLIP ViTs have none): with ``update_bn_statistics=false`` (our default) every BN
layer stays in ``eval()`` in the outer step too, so it normalises with f₀'s running statistics and they are
never updated. Why: the loss anchors f to f₀ *in eval mode*, the attack and every later use (fine-tuning
init, evaluation, export) run f in eval mode, so training on batch statistics would optimise a different
network than the one judged, and would drift the statistics towards the user's (and the adversarial)
images that f₀'s users never see. ``true`` is the reference literally (``model.train()``): batch statistics
in the outer step, running statistics updated by the clean and then the adversarial forward.

[0] Schlarmann et al., Robust CLIP: Unsupervised Adversarial Fine-Tuning of Vision Embeddings for Robust
    Large Vision-Language Models, ICML 2024.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..attacks import AttackConfig
from ..attacks.embedding import embedding_apgd, embedding_pgd, squared_l2
from ..models import eval_mode
from ..validation import check, check_choice
from .contrastive import PRETRAIN_METHODS, ContrastiveConfig

FARE_ATTACKS = ("pgd", "apgd", "none")


@dataclass
class FAREConfig:
    """``pretrain.fare:`` — FARE's own settings; ε, steps, step size and norm are ``pretrain.attack``'s."""

    attack: str = "pgd"  # pgd (with momentum, the recipe's) | apgd | none (FARE_ATTACKS)
    momentum: float = 0.9  # PGD's momentum on the normalised gradient (pgd_train.py's default)
    # L2-normalise embeddings before the loss (the reference's --output_normalize; False for FARE). APGD
    # normalises the attacked embedding regardless, as the reference's apgd_train does
    output_normalize: bool = False
    clean_weight: float = 0.0  # w of the clean term ‖f(x) − f₀(x)‖² (the reference's --clean_weight)
    # BN layers in train() during the outer step (batch statistics, running statistics updated: the
    # reference's model.train()); false keeps them at f₀'s statistics (why: pipeline/objectives/fare.py)
    update_bn_statistics: bool = False
    # the embedding report (embedding_report.json): this many held-out images (the val split, else test),
    # attacked with FARE's PGD of report_steps steps of report_step_size at pretrain.attack.eps, the same
    # images, noise and attack for the original and the trained network; 0 = no report
    report_images: int = 256
    report_steps: int = 10
    report_step_size: float = 1 / 255

    def check(self) -> None:
        check_choice("attack", self.attack, FARE_ATTACKS)
        check(0 <= self.momentum < 1, "momentum", self.momentum, "use a value in [0, 1) (0.9 in FARE)")
        check(0 <= self.clean_weight <= 1, "clean_weight", self.clean_weight, "use a value in [0, 1]")
        check(self.report_images >= 0, "report_images", self.report_images, "use 0 (no report) or more")
        check(self.report_steps >= 0, "report_steps", self.report_steps, "use 0 or more")
        check(
            0 < self.report_step_size <= 1,
            "report_step_size",
            self.report_step_size,
            "use a value in (0, 1] (1/255 = 0.0039)",
        )


@PRETRAIN_METHODS.register("fare")
class FARE:
    """The method's flags the pretrain checks read: no contrastive views, head or coreset."""

    adversarial = False  # not a contrastive adversarial method (RCS coresets score NT-Xent batches)
    air = False
    uses_momentum = False
    default_head = ""
    default_crop_interpolation = ""

    def __init__(self, cfg: ContrastiveConfig, epochs: int):
        self.cfg, self.epochs, self.momentum = cfg, epochs, 0.0
        self.head, self.crop_interpolation = "", ""


def frozen_copy(backbone: nn.Module) -> nn.Module:
    """f₀: a copy of the starting weights, in ``eval()``, without gradients."""
    original = copy.deepcopy(backbone).eval()
    original.requires_grad_(False)
    return original


def freeze_bn_statistics(model: nn.Module) -> None:
    """BN layers to ``eval()`` (normalise with, and keep, their running statistics); the rest unchanged."""
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


class FAREObjective:
    """``step(batch, state) -> (loss, metrics)`` for the trainer. ``model``: the network being trained as the
    trainer wraps it (DDP); ``raw``: the same network unwrapped (attacks, no collectives); ``original``: f₀."""

    def __init__(
        self, cfg: FAREConfig, attack: AttackConfig, model: nn.Module, raw: nn.Module, original: nn.Module
    ):
        self.cfg, self.attack_cfg = cfg, attack
        self.model, self.raw, self.original = model, raw, original
        self.has_bn = any(isinstance(m, _BatchNorm) for m in raw.modules())

    def embed(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        z = net(x)  # (B, D) pooled features
        return F.normalize(z, dim=-1) if self.cfg.output_normalize else z

    def attack(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a, name = self.attack_cfg, self.cfg.attack
        if name == "none":
            return x
        # eval(): BN statistics must not see attack iterates; freeze_params: input gradients only
        with eval_mode(self.raw, freeze_params=True):
            if name == "pgd":
                return embedding_pgd(
                    lambda xa: self.embed(self.raw, xa),
                    x,
                    target,
                    norm=a.norm,
                    eps=a.eps,
                    steps=a.steps,
                    step_size=a.step_size,
                    momentum=self.cfg.momentum,
                )
            # adversarial_training_clip.py:323 "apgd currently always applies output normalization"
            # (apgd_train.py:181,288: model(x_adv, output_normalize=True)), whatever output_normalize says
            return embedding_apgd(
                lambda xa: F.normalize(self.raw(xa), dim=-1), x, target, norm=a.norm, eps=a.eps, steps=a.steps
            )

    def step(self, batch, state) -> tuple[torch.Tensor, dict]:
        """``batch``: ``(x,)``, (B, 3, H, W) in [0,1] (labels are never read)."""
        x = batch[0]
        b = x.shape[0]
        with torch.no_grad():
            target = self.embed(self.original, x)  # (B, D), f₀ in eval()
        x_adv = self.attack(x, target)
        if not self.cfg.update_bn_statistics:
            freeze_bn_statistics(self.raw)  # after the trainer's train(): BN keeps f₀'s statistics
        w = self.cfg.clean_weight
        metrics: dict = {"images": b}
        loss = torch.zeros((), device=x.device)
        if w > 0:
            loss_clean = squared_l2(self.embed(self.model, x), target).mean()
            loss = loss + w * loss_clean
            metrics["loss_clean"] = float(loss_clean.detach())
        elif self.cfg.update_bn_statistics and self.has_bn:
            with (
                torch.no_grad()
            ):  # the reference's clean forward: it moves BN statistics before the adversarial one
                self.embed(self.raw, x)
        z_adv = self.embed(self.model, x_adv)
        loss_adv = squared_l2(z_adv, target).mean()
        loss = loss + (1 - w) * loss_adv
        metrics["loss_adv"] = float(loss_adv.detach())
        metrics["cos_adv"] = float(F.cosine_similarity(z_adv.detach(), target, dim=1).mean())
        steps = self.attack_cfg.steps if self.cfg.attack != "none" else 0
        clean = int(w > 0 or (self.cfg.update_bn_statistics and self.has_bn))
        metrics["forward_passes"] = b * (1 + steps + 1 + clean)  # f₀, attack, adversarial (+ clean)
        metrics["backward_passes"] = b * (steps + 1 + int(w > 0))
        return loss, metrics


def _distances(net: nn.Module, original_z: torch.Tensor, x: torch.Tensor, x_adv: torch.Tensor) -> dict:
    with torch.no_grad():
        z, z_adv = net(x), net(x_adv)
    return {
        "cos": F.cosine_similarity(z, original_z, dim=1),
        "clean": (z - original_z).norm(dim=1),
        "adv": (z_adv - original_z).norm(dim=1),
        "adv_sq": squared_l2(z_adv, original_z),
    }


def embedding_report(
    model: nn.Module,
    original: nn.Module,
    images: torch.Tensor,
    cfg: FAREConfig,
    attack: AttackConfig,
    *,
    seed: int,
    batch_size: int,
    device: torch.device,
) -> dict:
    """Both halves of FARE's promise on held-out images (uint8, (N, 3, H, W)), in the raw embedding space:
    ``clean_cosine`` (f(x) to f₀(x), mean) and the embedding distance under attack ‖f(x + δ) − f₀(x)‖₂
    (mean), for f = f₀ (``before``) and the trained f (``after``), δ from FARE's PGD maximising that
    distance for the network at hand — the same images, start noise (seeded per batch) and attack."""
    sums: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    with eval_mode(model):
        for i, start in enumerate(range(0, len(images), batch_size)):
            x = images[start : start + batch_size].to(device).float() / 255
            with torch.no_grad():
                t = original(x)
            for name, net in (("before", original), ("after", model)):
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(seed + i)  # the same start noise for both networks
                    with eval_mode(net, freeze_params=True):
                        x_adv = embedding_pgd(
                            net,
                            x,
                            t,
                            norm=attack.norm,
                            eps=attack.eps,
                            steps=cfg.report_steps,
                            step_size=cfg.report_step_size,
                            momentum=cfg.momentum,
                        )
                for key, v in _distances(net, t, x, x_adv).items():
                    sums[name][key] = sums[name].get(key, 0.0) + float(v.sum())
    n = max(1, len(images))
    out: dict = {
        name: {
            "clean_cosine": s.get("cos", 0.0) / n,
            "clean_distance": s.get("clean", 0.0) / n,
            "adversarial_distance": s.get("adv", 0.0) / n,
            "adversarial_squared_distance": s.get("adv_sq", 0.0) / n,
        }
        for name, s in sums.items()
    }
    before = out["before"]["adversarial_distance"]
    out.update(
        images=len(images),
        attack=f"FARE PGD, {cfg.report_steps} steps of {cfg.report_step_size:.6g}, {attack.norm} "
        f"eps {attack.eps:.6g}, momentum {cfg.momentum}, seed {seed}",
        distance_ratio=out["after"]["adversarial_distance"] / before if before > 0 else None,
    )
    return out
