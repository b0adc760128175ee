"""AIR [0]: adversarial invariant regularisation on top of ACL / DynACL (``acl_air``, ``dynacl_air``).

The reference (GodXuxilie/Enhancing_ACL_via_AIR, ``AIR.py`` ``AIR_Loss`` and ``pretraining.py`` ``train()``)
adds two terms to the clean and adversarial NT-Xent of ACL, each computed from the *original* image x (only
``ToTensor``: no crop, no colour) next to its two augmented views x1, x2 and their adversarial versions::

    loss = (1 − w)·NT-Xent(z1, z2) + (1 + w)·NT-Xent(z1', z2') + λ1·SIR + λ2·AIR

z = the L2-normalised projection; z1, z2, zo through the clean BN branch, z1', z2' through the adversarial
one, all in ``train()``. w = 2/3·(1 − strength) with DynACL's augmentation schedule (``--DynAug``), else 0 —
our DynACL schedule with clean_weight = adv_weight = 1 gives exactly these weights. λ1 = λ2 = 0.5.

SIR and AIR compare, over the images of the batch, how similar each view is to its own original:
    s_k = ⟨z_k[i], zo[i]⟩/τ for every image i (the diagonal of z_k·zoᵀ/τ), k = 1, 2;
    SIR = kl_div(softmax(s_1), log_softmax(s_2), log_target=True, sum)
    a_k = softmax(⟨z_k'[i], zo[i]⟩/τ) ⊙ softmax(⟨z_k'[i], z_k[i]⟩/τ)
    AIR = kl_div(a_1, log(a_2), log_target=True, sum)
The softmax runs over the batch (dim −1 of a (B,) vector), not over candidates per image. Note that the
reference hands ``F.kl_div`` *probabilities* where it expects log-probabilities, so its SIR is
Σ q·(log q − p) rather than KL(q‖p); we keep that form, because the published numbers (and the recipe's
λ's) come from it — ``tests/objectives/test_air_parity.py`` pins it against a transcription.

[0] Xu et al., Enhancing Adversarial Contrastive Learning via Adversarial Invariant Regularization, NeurIPS 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import to_tensor

from ..validation import check


@dataclass
class AIRConfig:
    """The regularisers' weights (``pretraining.py``: ``--lambda1`` / ``--lambda2``, both 0.5 by default)."""

    lambda1: float = 0.5  # weight of SIR: invariance of the clean (standard) representations
    lambda2: float = 0.5  # weight of AIR: invariance of the adversarial (robust) representations

    def check(self) -> None:
        for key in ("lambda1", "lambda2"):
            check(getattr(self, key) >= 0, key, getattr(self, key), "use 0 or a positive weight (0.5 in AIR)")


class ViewsWithOriginal:
    """Two augmented views and the original image (``ToTensor`` only): AIR's loader
    (``CustomCIFAR10.__getitem__`` returns the stacked views and ``ori_transfor(img)``)."""

    def __init__(self, views):
        self.views = views

    def __call__(self, img):
        return (*self.views(img), to_tensor(img))


def _diagonal_logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B,) ⟨a_i, b_i⟩/τ for normalised rows: the diagonal of a·bᵀ/τ without the B×B product."""
    return (a * b).sum(dim=1) / temperature


def air_regularisers(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_orig: torch.Tensor,
    z1_adv: torch.Tensor,
    z2_adv: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(SIR, AIR) for projections of shape (B, D) each; gradients flow through every input."""
    n1, n2, no = (F.normalize(z, p=2, dim=-1) for z in (z1, z2, z_orig))
    n1_adv, n2_adv = F.normalize(z1_adv, p=2, dim=-1), F.normalize(z2_adv, p=2, dim=-1)
    p1 = F.softmax(_diagonal_logits(n1, no, temperature), dim=-1)  # over the batch
    log_p2 = F.log_softmax(_diagonal_logits(n2, no, temperature), dim=-1)
    sir = F.kl_div(p1, log_p2, log_target=True, reduction="sum")  # reference's argument order (see above)
    a1 = F.softmax(_diagonal_logits(n1_adv, no, temperature), dim=-1) * F.softmax(
        _diagonal_logits(n1_adv, n1, temperature), dim=-1
    )
    a2 = F.softmax(_diagonal_logits(n2_adv, no, temperature), dim=-1) * F.softmax(
        _diagonal_logits(n2_adv, n2, temperature), dim=-1
    )
    air = F.kl_div(a1, torch.log(a2), log_target=True, reduction="sum")
    return sir, air
