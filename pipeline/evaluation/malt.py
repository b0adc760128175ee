"""MALT target selection [0] and pyautoattack's targeted APGD run on the targets it picks.

AutoAttack's APGD-T attacks, for every point, the classes ranked 2nd to 10th by logit. MALT ranks the
classes t ≠ y instead by the perturbation a *linear* model of the network at x would need to make t beat
y — the DeepFool-style distance to the y/t boundary in the threat model's norm:

    score_t = (z_y(x) − z_t(x)) / ‖∇ₓz_y(x) − ∇ₓz_t(x)‖_q        (q: the dual norm — L1 for Linf, L2 for L2)

and attacks only the few classes with the smallest scores [0]. Justified by the network being almost
linear at the scale of ε ("mesoscopic almost linearity"), it finds the successful target among far fewer
candidates. The scores cost one forward and K + 1 input gradients per point (K classes).

The authors' code could not be read here (no copy reachable from this machine); this follows the
paper's description: every class is scored (the paper first keeps the top-a classes by logit, a = 100
on ImageNet; with K ≤ 100 that keeps all), the ``n_targets`` smallest scores are attacked in order.

pyautoattack picks its targets inside ``APGDAttack_targeted.perturb``; :class:`MALTTargetedAPGD` is that
class with a ``perturb_targets`` that takes them per point instead. The attack itself — the
DLR-targeted loss, ``attack_single_run`` with its iterations, step-size halving and checkpoints,
restarts, and the seeding at the start of each call — is the library's, untouched.

[0] Melamed et al., MALT Powers Up Adversarial Attacks, NeurIPS 2024.
"""

from __future__ import annotations

import torch
from pyautoattack.autopgd_base import APGDAttack_targeted

DUAL_NORM = {"Linf": 1, "L2": 2, "L1": float("inf")}  # the norm a linear model's boundary distance divides by


def malt_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """(B, K) linear-model distance from each point to the boundary with each class; +inf for the label."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)  # (B, K)
    z_y = logits.gather(1, y[:, None]).squeeze(1)  # (B,)
    # one input gradient per class; samples are independent in eval(), so the gradient of a batch sum is
    # the per-sample gradient
    (g_y,) = torch.autograd.grad(z_y.sum(), x, retain_graph=True)
    scores = torch.empty_like(logits, dtype=torch.float32)
    for t in range(logits.shape[1]):
        (g_t,) = torch.autograd.grad(logits[:, t].sum(), x, retain_graph=True)
        dual = (g_y - g_t).flatten(1).norm(p=DUAL_NORM[norm], dim=1)
        scores[:, t] = (z_y - logits[:, t]).detach().float() / (dual.float() + 1e-12)
    scores[torch.arange(len(y), device=y.device), y] = float("inf")
    return scores


def malt_targets(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, n_targets: int
) -> torch.Tensor:
    """(B, n_targets) classes to attack per point, the smallest MALT score first."""
    return malt_scores(model, x, y, norm).argsort(dim=1)[:, :n_targets]


class MALTTargetedAPGD(APGDAttack_targeted):
    """pyautoattack's targeted APGD with the targets given per point (see the module docstring)."""

    @classmethod
    def like(cls, ref: APGDAttack_targeted, model, seed: int) -> MALTTargetedAPGD:
        """The same attack settings as ``ref`` (AutoAttack's own ``apgd_targeted`` after its version's
        settings were applied: iterations, restarts, ρ, EOT, ε, norm)."""
        return cls(
            model,
            n_iter=ref.n_iter,
            norm=ref.norm,
            n_restarts=ref.n_restarts,
            eps=ref.eps,
            seed=seed,
            eot_iter=ref.eot_iter,
            rho=ref.thr_decr,
            device=ref.device,
            logger=ref.logger,
        )

    def perturb_targets(self, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Attack each point with its targets in order (``targets``: (B, c)), stopping at the first success;
        returns the adversarial batch (the clean point where every target failed)."""
        self.init_hyperparam(x)
        x, y = x.detach().clone().float().to(self.device), y.detach().clone().long().to(self.device)
        with torch.no_grad():
            robust = self.model(x).argmax(dim=1) == y  # misclassified points are not attacked
        adv = x.clone()
        # the library's reseeding at the start of perturb: a batch's outcome depends on the seed only
        torch.random.manual_seed(self.seed)
        torch.cuda.random.manual_seed(self.seed)
        for rank in range(targets.shape[1]):
            for _ in range(self.n_restarts):
                idx = robust.nonzero().squeeze(1)
                if idx.numel() == 0:
                    return adv
                self.y_target = targets[idx, rank].to(self.device)
                _, acc, _, adv_curr = self.attack_single_run(x[idx], y[idx])
                fooled = ~acc.bool()
                robust[idx[fooled]] = False
                adv[idx[fooled]] = adv_curr[fooled]
        return adv
