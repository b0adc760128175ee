"""``evaluate.autoattack.version=fast``: MALT's scores against a linear model's exact boundary distances,
the targeted APGD subclass equal to pyautoattack's own on the same targets, a cross-check whose breaks are
always counted and reported, and the label "not standard AutoAttack" wherever the number is printed."""

from __future__ import annotations

import pytest
import torch
from pyautoattack.autopgd_base import APGDAttack_targeted

from pipeline.errors import UsageError
from pipeline.evaluation import EvaluateConfig, evaluate_model
from pipeline.evaluation.autoattack_runner import make_autoattack
from pipeline.evaluation.counting import PassCounter
from pipeline.evaluation.fast_autoattack import FAST_ATTACKS, run_fast
from pipeline.evaluation.malt import MALTTargetedAPGD, malt_scores, malt_targets
from pipeline.evaluation.writers import summary_table


def test_malt_scores_are_a_linear_models_boundary_distances():
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 6))
    x, y = torch.rand(5, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4])
    w, b = lin[1].weight.detach(), lin[1].bias.detach()
    z = x.flatten(1) @ w.T + b
    for norm, p in (("Linf", 1), ("L2", 2)):
        scores = malt_scores(lin, x, y, norm)
        for i in range(5):
            for t in range(6):
                # for a linear model the smallest Lq perturbation that makes t tie with y has this size
                exact = (
                    float("inf") if t == y[i] else float((z[i, y[i]] - z[i, t]) / (w[y[i]] - w[t]).norm(p=p))
                )
                assert scores[i, t].item() == pytest.approx(exact, rel=1e-5)
    assert torch.equal(malt_targets(lin, x, y, "Linf", 2), malt_scores(lin, x, y, "Linf").argsort(1)[:, :2])


def _reference_malt_targets(model, x, y, p, k, testk=100, batch_size=50):
    """odeliamel/MALT's target ranking (``targeting.get_k_best_target_classes``), transcribed step by step:
    the candidates are the ``testk`` largest logits other than the label; each candidate's row is the input
    gradient of z_t - z_label, from one backward per (point, candidate) with grad_output e_t - e_label; its
    score is (z_predicted - z_t) / ||row||_q, left at 0 where the row norm is 0; every other class scores
    +inf; the ``k`` smallest scores are the targets (topk, largest=False)."""
    with torch.no_grad():
        out = model(x)
    pred = out.argmax(dim=1)
    n_cls = out.shape[-1]
    testk, k = min(testk, n_cls - 1), min(k, n_cls - 1)
    inxs = out.scatter(dim=1, index=y.unsqueeze(1), value=-float("inf")).topk(k=testk, dim=1)[1]
    images = torch.repeat_interleave(x, testk, dim=0)
    eye = torch.nn.functional.one_hot(inxs.reshape(-1), n_cls).float()
    eye = eye.scatter(dim=1, index=torch.repeat_interleave(y, testk).unsqueeze(1), value=-1)
    grads = []
    for s in range(0, images.shape[0], batch_size):
        xi = images[s : s + batch_size].clone().requires_grad_(True)
        model(xi).backward(eye[s : s + batch_size])
        grads.append(xi.grad.detach().flatten(1))
    rows = torch.cat(grads).reshape(x.shape[0], testk, -1)
    norms = rows.norm(p=p, dim=2)
    diffs = out[torch.arange(len(x)), pred].unsqueeze(1) - out[torch.arange(len(x)).unsqueeze(-1), inxs]
    eps = torch.zeros(x.shape[0], testk)
    nonzero = norms != 0
    eps[nonzero] = diffs[nonzero] / norms[nonzero]
    full = float("inf") * torch.ones(x.shape[0], n_cls)
    full[torch.arange(x.shape[0]).unsqueeze(-1), inxs] = eps
    return full.topk(dim=1, largest=False, k=k)[1]


class _TiedRows(torch.nn.Module):
    """A linear classifier whose class 5 copies class 2's weights (bias lower): for a point of class 2, the
    boundary with 5 has a zero gradient, which the reference scores 0 — the first target."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lin = torch.nn.Linear(3 * 8 * 8, 10)
        with torch.no_grad():
            self.lin.bias[2] += 0.55  # about half the points become class 2
            self.lin.weight[5] = self.lin.weight[2]
            self.lin.bias[5] = self.lin.bias[2] - 0.5

    def forward(self, x):
        return self.lin(x.flatten(1))


@pytest.mark.parametrize(("norm", "p"), [("Linf", 1), ("L2", 2)])
def test_malt_targets_are_the_reference_ranking(tiny_model, tiny_data, norm, p):
    x, y = tiny_data
    with torch.no_grad():
        right = tiny_model(x).argmax(dim=1) == y  # the points the fast version attacks: correctly classified
    x, y = x[right], y[right]
    assert torch.equal(
        malt_targets(tiny_model, x, y, norm, 9), _reference_malt_targets(tiny_model, x, y, p, 9)
    )
    tied = _TiedRows().eval()
    with torch.no_grad():
        y2 = tied(x).argmax(dim=1)
    ours, ref = malt_targets(tied, x, y2, norm, 9), _reference_malt_targets(tied, x, y2, p, 9)
    assert 0 < int((y2 == 2).sum()) < len(y2) and (ref[y2 == 2, 0] == 5).all()  # zero gradient: first
    assert torch.equal(ours, ref)


def test_given_targets_reproduce_pyautoattacks_targeted_apgd(tiny_model, tiny_data):
    """With the targets pyautoattack would pick itself (logit ranks 2..c+1), the subclass returns exactly
    the library's result: iterations, step rules, restarts and seeding are the library's."""
    x, y = tiny_data[0][:8], tiny_data[1][:8]
    common = dict(n_iter=20, norm="Linf", n_restarts=1, eps=8 / 255, seed=3, device=torch.device("cpu"))
    ref = APGDAttack_targeted(tiny_model, n_target_classes=3, **common)
    ours = MALTTargetedAPGD(tiny_model, **common)
    with torch.no_grad():
        ranked = tiny_model(x).sort(dim=1, descending=True)[1][:, 1:4]
    assert torch.equal(ours.perturb_targets(x, y, ranked), ref.perturb(x, y))


def _fast(model, x, y, weak_eps: float, fraction: float):
    """The fast version with its own two stages run at ``weak_eps`` (to make them miss on purpose) and the
    cross-check at 8/255."""
    counter = PassCounter(model)
    seeds = {"apgd-ce": 1, "apgd-t-malt": 2, "cross-check": 3}

    def make_aa(version, attacks, seed):
        eps = 8 / 255 if seed == seeds["cross-check"] else weak_eps
        return make_autoattack(
            counter,
            eps=eps,
            norm="Linf",
            version=version,
            attacks=attacks,
            seed=seed,
            device=torch.device("cpu"),
            num_classes=10,
        )

    return run_fast(make_aa, counter, x, y, 10, 64, 3, fraction, seeds.__getitem__)


def test_cross_check_breaks_count_and_are_reported(tiny_model, tiny_data):
    x, y = tiny_data[0][:8], tiny_data[1][:8]
    res, cc = _fast(
        tiny_model, x, y, weak_eps=1e-4, fraction=1.0
    )  # the fast stages can break (almost) nothing
    assert res.attacks == list(FAST_ATTACKS)
    assert cc.checked == cc.robust_before > 0 and cc.broken > 0  # the standard version found misses
    robust = res.final_pred == y
    assert not robust[cc.broken_index].any()  # every point the cross-check broke is scored broken
    assert int(robust.sum()) == cc.robust_before - cc.broken
    assert (res.pred_after["cross-check"][cc.broken_index] != y[cc.broken_index]).all()
    assert (res.x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_fast_version_in_the_report_is_never_called_autoattack(tiny_model, tiny_data):
    x, y = tiny_data[0][:20], tiny_data[1][:20]
    cfg = EvaluateConfig(chunk_size=20, batch_size=20)
    cfg.pgd.steps, cfg.sweep.enabled, cfg.calibration.enabled = 5, False, False
    cfg.autoattack.version, cfg.autoattack.cross_check = "fast", 0.25
    report = evaluate_model(tiny_model, x, y, cfg, num_classes=10, progress=False)
    aa = report.autoattack
    assert aa["version"] == "fast" and aa["standard_autoattack"] is False
    assert report.robust_accuracy["autoattack"] is None  # the standard key stays empty
    assert report.robust_accuracy["autoattack_fast"] == aa["robust_accuracy"]
    cc = aa["cross_check"]
    assert cc["checked"] == -(-cc["robust_before"] // 4) and cc["broken"] == len(cc["broken_index"])
    assert aa["first_broken_by"]["cross-check"] == cc["broken"]
    assert "not standard AutoAttack" in summary_table(report)
    # robust accuracy after the fast stages, less the cross-check's breaks, is what is reported
    assert aa["robust_accuracy"] * len(y) == cc["robust_before"] - cc["broken"]


def test_fast_needs_linf_or_l2():
    cfg = EvaluateConfig(norm="L1", eps=12.0)
    cfg.pgd.steps, cfg.autoattack.version = 0, "fast"
    with pytest.raises(UsageError, match=r"evaluate.autoattack.version='fast' .*version=standard"):
        cfg.validate()
