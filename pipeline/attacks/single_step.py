"""Single-step attacks for fast adversarial training: FGSM with a random start [0] and N-FGSM [1].

Each takes one input gradient, so an attack costs one forward plus one input-only backward, against k of
them for PGD-k. Their steps are the papers' rules, tied to ε — the config's ``step_size``, ``steps`` and
``start`` are not used (each paper fixes its own start and step):

  FGSM-RS  δ₀ ~ U[-ε, ε]ᵈ;   δ = clip_ε(δ₀ + 1.25ε·sign ∇ℓ(x + δ₀))           ‖δ‖∞ ≤ ε
  N-FGSM   η ~ U[-2ε, 2ε]ᵈ;  δ = η + ε·sign ∇ℓ(x + η), not projected onto the ε-ball   ‖δ‖∞ ≤ 3ε

Both clip x + δ to the image range [0,1], as the authors' code does (start and result). N-FGSM trains on
points outside the ε-ball on purpose: the larger noise is what keeps single-step training from
catastrophic overfitting without a projection that would shrink the step [1].

Catastrophic overfitting — PGD accuracy collapsing to ~0 within an epoch while FGSM accuracy soars — is
these methods' known failure; the fine-tuning validation watches for it (``pipeline/train/selection.py``).

[0] Wong, Rice & Kolter, Fast is better than free: revisiting adversarial training, ICLR 2020.
[1] de Jorge et al., Make some noise: reliable and efficient single-step adversarial training, NeurIPS 2022.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import ATTACKS, AttackConfig, LossFn

# the papers' constants, in units of ε
FGSM_RS_STEP = (
    1.25  # Wong et al.: α = 1.25ε, the largest step that did not overfit catastrophically at ε = 8/255
)
NFGSM_NOISE = 2.0  # de Jorge et al.: k = 2, noise drawn from U[-2ε, 2ε]
NFGSM_STEP = 1.0  # de Jorge et al.: α = ε
SINGLE_STEP_ATTACKS = ("fgsm_rs", "nfgsm")


def _input_gradient(
    loss_fn: LossFn, x_start: torch.Tensor, on_step: Callable[[int, float], None] | None
) -> torch.Tensor:
    x_start = x_start.detach().requires_grad_(True)
    loss = loss_fn(x_start)
    (grad,) = torch.autograd.grad(loss, x_start)  # input-only: no weight-gradient kernels
    if on_step is not None:
        on_step(0, float(loss.detach()))
    return grad


@ATTACKS.register("fgsm_rs")
def fgsm_rs_attack(
    loss_fn: LossFn, x: torch.Tensor, cfg: AttackConfig, on_step: Callable[[int, float], None] | None = None
) -> torch.Tensor:
    """FGSM from a uniform random start in the ε-ball, step 1.25ε, projected back onto the ball [0].

    Returns the adversarial batch, detached, inside the ε-ball and [0,1]."""
    x, eps = x.detach(), cfg.eps
    delta = torch.empty_like(x).uniform_(-eps, eps)
    x_start = (x + delta).clamp(0.0, 1.0)
    grad = _input_gradient(loss_fn, x_start, on_step)
    with torch.no_grad():
        delta = (x_start - x + FGSM_RS_STEP * eps * grad.sign()).clamp(-eps, eps)
        return (x + delta).clamp(0.0, 1.0)


@ATTACKS.register("nfgsm")
def nfgsm_attack(
    loss_fn: LossFn, x: torch.Tensor, cfg: AttackConfig, on_step: Callable[[int, float], None] | None = None
) -> torch.Tensor:
    """N-FGSM [1]: the gradient sign step of size ε taken from x + η, η ~ U[-2ε, 2ε], kept unprojected.

    Returns the batch, detached, in [0,1] and within 3ε of ``x`` in Linf (not within ε: by design)."""
    x, eps = x.detach(), cfg.eps
    eta = torch.empty_like(x).uniform_(-NFGSM_NOISE * eps, NFGSM_NOISE * eps)
    x_start = (x + eta).clamp(0.0, 1.0)
    grad = _input_gradient(loss_fn, x_start, on_step)
    with torch.no_grad():
        return (x_start + NFGSM_STEP * eps * grad.sign()).clamp(0.0, 1.0)


# the papers define both for Linf only (sign steps, coordinate-wise noise)
fgsm_rs_attack.norms = ("Linf",)
nfgsm_attack.norms = ("Linf",)
fgsm_rs_attack.single_step = nfgsm_attack.single_step = True  # AttackConfig.check asks for steps=1
