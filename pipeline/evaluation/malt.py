"""MALT target selection [0] and pyautoattack's targeted APGD run on the targets it picks.

AutoAttack's APGD-T attacks, for every point, the classes ranked 2nd to 10th by logit. MALT ranks the
classes t ≠ y instead by the perturbation a *linear* model of the network at x would need to make t beat
y — the DeepFool-style distance to the y/t boundary in the threat model's norm:

    score_t = (z_y(x) − z_t(x)) / ‖∇ₓ(z_y − z_t)(x)‖_q        (q: the dual norm — L1 for Linf, L2 for L2)

and attacks the classes with the smallest scores [0]. Justified by the network being almost linear at the
scale of ε ("mesoscopic almost linearity"), the successful target tends to come early in that order.

The ranking follows the authors' code (github.com/odeliamel/MALT, ``targeting.get_k_best_target_classes``
and ``MALT_attack.MALTAttack``): only the ``candidates`` (100) largest logits other than the label are
scored, the others rank last; a class whose gradient row ‖∇ₓ(z_y − z_t)‖ is exactly 0 scores 0, so it
ranks *first* (the authors' score matrix starts at zero and only non-zero rows are divided); the
``n_targets`` smallest scores are attacked in order, 9 by default (their ``MALTAttack(k=9)`` and their
demo; AutoAttack's APGD-T also takes 9). ``tests/evaluation/test_fast_autoattack.py`` transcribes their
ranking and compares. Three differences remain, none of which changes the targets of a point we attack:
their numerator uses the *predicted* class's logit (the label's here: the points attacked are correctly
classified, so the two agree); their gradients come from one backward per (point, class), ours from one
batched backward per class (the same vector-Jacobian product; float rounding may differ); and they count a
target attack as successful only when it reaches the target, while here — as in pyautoattack's APGD-T — any
misclassification breaks the point (a point pushed to a third class is broken, not attacked again).
The scores cost one forward and K input gradients per point (K classes).

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
CANDIDATES = 100  # classes scored per point: the largest logits other than the label (the authors' testk)


def malt_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str,
                candidates: int = CANDIDATES) -> torch.Tensor:
    """(B, K) linear-model distance from each point to the boundary with each class: 0 where that
    boundary's gradient is exactly 0, +inf for the label and for classes outside the ``candidates``
    largest other logits."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)  # (B, K)
    rows = torch.arange(len(y), device=y.device)
    z_y = logits[rows, y]  # (B,)
    others = logits.detach().scatter(1, y[:, None], float("-inf"))
    scored = torch.zeros_like(others, dtype=torch.bool)
    scored[rows[:, None], others.topk(min(candidates, logits.shape[1] - 1), dim=1).indices] = True
    scores = torch.full_like(logits, float("inf"), dtype=torch.float32)
    for t in range(logits.shape[1]):
        if not scored[:, t].any():
            continue
        margin = z_y - logits[:, t]  # (B,)
        # one input gradient per class; samples are independent in eval(), so the gradient of a batch sum is
        # the per-sample gradient
        (g,) = torch.autograd.grad(margin.sum(), x, retain_graph=True)
        dual = g.flatten(1).norm(p=DUAL_NORM[norm], dim=1).float()
        score = torch.where(dual != 0, margin.detach().float() / dual, torch.zeros_like(dual))
        scores[:, t] = torch.where(scored[:, t], score, scores[:, t])
    return scores


def malt_targets(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, n_targets: int
) -> torch.Tensor:
    """(B, n_targets) classes to attack per point, the smallest MALT score first."""
    return malt_scores(model, x, y, norm).topk(n_targets, dim=1, largest=False).indices


class MALTTargetedAPGD(APGDAttack_targeted):
    """pyautoattack's targeted APGD with the targets given per point (see the module docstring)."""

    @classmethod
    def like(cls, ref: APGDAttack_targeted, model, seed: int) -> MALTTargetedAPGD:
        """The same attack settings as ``ref`` (AutoAttack's own ``apgd_targeted`` after its version's
        settings were applied: iterations, restarts, ρ, EOT, ε, norm)."""
        return cls(model, n_iter=ref.n_iter, norm=ref.norm, n_restarts=ref.n_restarts, eps=ref.eps, seed=seed,
                   eot_iter=ref.eot_iter, rho=ref.thr_decr, device=ref.device, logger=ref.logger)

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
