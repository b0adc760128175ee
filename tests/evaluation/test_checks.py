"""Sanity checks: eps=0 is clean accuracy, large eps is at most chance, masked gradients are flagged."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import FarMaskedNet, MaskedNet, NoisyNet

from pipeline.evaluation import EvaluateConfig, evaluate_model
from pipeline.evaluation.masking import run_checks
from pipeline.evaluation.measurements import Merged
from pipeline.evaluation.measurements.autoattack import AutoAttackResult
from pipeline.evaluation.measurements.clean import CleanResult
from pipeline.evaluation.measurements.pgd import PGDResult
from pipeline.evaluation.measurements.sweep import SweepResult


@pytest.fixture(scope="module")
def healthy_report(tiny_model, tiny_data):
    x, y = tiny_data
    cfg = EvaluateConfig(eps=16 / 255, seed=3, chunk_size=40, batch_size=64)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce", "apgd-t"]
    cfg.sweep.eps = [0.0, 16 / 255, 0.5]
    return evaluate_model(tiny_model, x[:30], y[:30], cfg, num_classes=10, progress=False)


def test_eps_zero_gives_exactly_clean_accuracy(healthy_report):
    r = healthy_report
    assert r.sweep["robust_accuracy"][0] == r.clean_accuracy
    assert r.per_sample["sweep_pred_eps=0"] == r.per_sample["clean_pred"]


def test_undefended_model_is_at_most_chance_at_large_eps(healthy_report):
    r = healthy_report
    assert r.clean_accuracy > 0.9
    assert r.sweep["robust_accuracy"][-1] <= 1 / r.num_classes
    assert r.sweep["robust_accuracy"] == sorted(r.sweep["robust_accuracy"], reverse=True)


def test_healthy_model_raises_no_warning(healthy_report):
    assert healthy_report.warnings == []
    assert healthy_report.robust_accuracy["pgd"] >= healthy_report.robust_accuracy["autoattack"]


def test_masked_gradients_are_flagged(tiny_model, tiny_data):
    """Zero input gradients: PGD and APGD stall; pyautoattack's zero-gradient check and ours must fire."""
    x, y = tiny_data
    cfg = EvaluateConfig(eps=16 / 255, seed=3, chunk_size=40, batch_size=64)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce", "apgd-t", "square"]
    cfg.sweep.eps = [0.5]
    cfg.sweep.attacks = ["apgd-ce"]
    report = evaluate_model(MaskedNet(tiny_model), x[:20], y[:20], cfg, num_classes=10, progress=False)
    text = "\n".join(report.warnings)
    assert "zero gradient" in text  # pyautoattack's own check (APGD-T's DLR loss), captured from its logger
    assert (
        "Square Attack has decreased the robust accuracy" in text
    )  # pyautoattack's Square check on merged numbers
    assert "grey image" in text  # ours: eps=0.5 leaves the grey image within reach, yet points survive
    assert report.autoattack["first_broken_by"]["square"] > 0


def _merged(
    label,
    clean_pred,
    num_classes,
    norm,
    eps,
    grey_pred,
    grey_dist,
    pgd_pred=None,
    aa_final=None,
    sweep_eps=None,
    sweep_pred=None,
) -> Merged:
    """Synthetic merged results: clean always, PGD / AutoAttack / the sweep when given."""
    results = {"clean": CleanResult(clean_pred, grey_pred, grey_dist)}
    if pgd_pred is not None:
        results["pgd"] = PGDResult(pgd_pred)
    if aa_final is not None:
        results["autoattack"] = AutoAttackResult([], {}, aa_final, [], "AutoAttack")
    if sweep_eps is not None:
        results["sweep"] = SweepResult(sweep_eps, sweep_pred)
    return Merged(EvaluateConfig(norm=norm, eps=eps), num_classes, label, results)


def _check_input(**kw) -> Merged:
    base = dict(
        label=torch.tensor([0, 1, 2, 3]),
        clean_pred=torch.tensor([0, 1, 2, 0]),
        num_classes=4,
        norm="Linf",
        eps=0.03,
        grey_pred=0,
        grey_dist=torch.full((4,), 0.4),
    )
    return _merged(**(base | kw))


def test_sweep_and_pgd_checks_on_synthetic_results():
    # eps=0 disagrees with the clean pass on one point; accuracy at eps 0.02 (2/4) stays inside the 95%
    # interval of eps 0.01's (1/4: [0.6%, 80.6%]), so no rise is claimed on 4 points
    sweep_pred = torch.tensor([[0, 1, 0, 0], [0, 9, 9, 0], [0, 1, 9, 0]])
    d = _check_input(
        sweep_eps=[0.0, 0.01, 0.02],
        sweep_pred=sweep_pred,
        pgd_pred=torch.tensor([9, 9, 2, 0]),
        aa_final=torch.tensor([0, 9, 2, 0]),
    )
    warnings, notes = run_checks(d, [["[pyautoattack] it seems to be a randomized defense!"], []])
    text = "\n".join(warnings)
    assert "randomized defense! (in 1 of 2 chunks)" in text
    assert "at eps=0 the attacks changed 1/4" in text
    assert "rises" not in text
    assert "PGD robust accuracy 25.00% is below AutoAttack's 50.00%" in text
    assert any("broken by PGD survive AutoAttack" in n for n in notes)


def test_grey_check_uses_the_exact_bound():
    # every point is within 0.4 of grey; labels 1 and 2 differ from f(grey)=0 and must be broken at eps=0.5
    d = _check_input(sweep_eps=[0.5], sweep_pred=torch.tensor([[0, 1, 9, 9]]))
    warnings, _ = run_checks(d, [])
    assert len(warnings) == 1 and "1 point(s) survive" in warnings[0] and "<= 25.00%" in warnings[0]
    d = _check_input(sweep_eps=[0.3], sweep_pred=torch.tensor([[0, 1, 9, 9]]))  # grey out of reach: no claim
    assert run_checks(d, [])[0] == []
    # saturated pixels are exactly 0.5 from grey: eps=0.5 reaches them
    d = _check_input(
        sweep_eps=[0.5], sweep_pred=torch.tensor([[0, 1, 9, 9]]), grey_dist=torch.full((4,), 0.5)
    )
    assert "1 point(s) survive" in run_checks(d, [])[0][0]


def test_l2_threat_model_reaches_chance_when_grey_is_in_reach(tiny_model, tiny_data):
    x, y = tiny_data
    cfg = EvaluateConfig(norm="L2", eps=0.5, seed=2, chunk_size=40, batch_size=64)
    cfg.pgd.step_size = 0.1
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce"]
    cfg.sweep.eps = [0.0, 7.0]  # sqrt(3·8·8)·0.5 ≈ 6.9: every image is within L2 reach of grey
    cfg.sweep.attacks = ["apgd-ce"]
    r = evaluate_model(tiny_model, x[:20], y[:20], cfg, num_classes=10, progress=False)
    assert r.threat_model == {"norm": "L2", "eps": 0.5}
    assert r.sweep["robust_accuracy"][0] == r.clean_accuracy and r.sweep["robust_accuracy"][1] <= 0.1
    assert r.warnings == []


def test_fewer_than_ten_classes_caps_the_targets():
    """Standard AutoAttack asks for 9 target classes; with 4 classes APGD-T would index out of range."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 4))
    x = torch.rand(12, 3, 4, 4)
    y = model(x).argmax(dim=1)
    cfg = EvaluateConfig(eps=1 / 255, chunk_size=12)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-t"]
    cfg.sweep.enabled = False
    r = evaluate_model(model, x, y, cfg, num_classes=4, progress=False)
    assert r.clean_accuracy == 1.0 and r.robust_accuracy["autoattack"] is not None
    assert any("3 target classes" in n for n in r.notes)


def _sweep_input(correct: list[int], n: int = 100, norm: str = "Linf") -> Merged:
    """Synthetic sweep results: ``correct[j]`` of ``n`` points survive radius j (eps = 0.01·(j + 1))."""
    label = torch.zeros(n, dtype=torch.long)
    pred = torch.stack([(torch.arange(n) >= c).long() for c in correct])  # the first c are correct
    return _merged(
        label=label,
        clean_pred=label,
        num_classes=10,
        norm=norm,
        eps=0.01,
        grey_pred=0,
        grey_dist=torch.full((n,), 100.0),
        sweep_eps=[0.01 * (j + 1) for j in range(len(correct))],
        sweep_pred=pred,
    )


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_monotonicity_tolerates_sampling_noise_but_not_a_real_rise(norm):
    assert run_checks(_sweep_input([50, 51, 55], norm=norm), [])[0] == []  # wobbles inside [39.8%, 60.2%]
    warnings = run_checks(_sweep_input([50, 70], norm=norm), [])[0]
    assert len(warnings) == 1 and "rises from 50.00% at eps=0.01 to 70.00% at eps=0.02" in warnings[0]
    # a slow climb, each step inside the previous interval, is measured against the lowest value so far
    warnings = run_checks(_sweep_input([30, 38, 46, 54], norm=norm), [])[0]
    assert warnings and all("from 30.00% at eps=0.01" in w for w in warnings)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_pgd_vs_autoattack_fires_for_both_norms(norm):
    d = _check_input(norm=norm, pgd_pred=torch.tensor([9, 9, 2, 0]), aa_final=torch.tensor([0, 9, 2, 0]))
    assert any("below AutoAttack's" in w for w in run_checks(d, [])[0])
    d = _check_input(norm=norm, pgd_pred=torch.tensor([0, 9, 2, 0]), aa_final=torch.tensor([0, 9, 9, 0]))
    assert run_checks(d, [])[0] == []


# (norm, threat-model eps, a large radius where FarMaskedNet masks every random start and grey is within
# reach of most 8×8 images, a radius that reaches grey from every image in [0,1]^(3×32×32))
NORMS = [("Linf", 16 / 255, 0.5, 0.5), ("L2", 0.5, 5.0, 28.0)]


def _run(model, x, y, norm, eps, radii, seed=0, attacks=("apgd-ce",)):
    cfg = EvaluateConfig(norm=norm, eps=eps, seed=seed, chunk_size=40, batch_size=64)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = list(attacks)
    cfg.sweep.attacks = ["apgd-ce"]
    cfg.sweep.eps = radii
    return evaluate_model(model, x, y, cfg, num_classes=10, progress=False)


@pytest.mark.parametrize(("norm", "eps", "far_eps", "big"), NORMS)
def test_each_check_fires_on_a_model_built_to_trip_it(tiny_model, tiny_data, norm, eps, far_eps, big):
    x, y = tiny_data[0][:30], tiny_data[1][:30]
    far = "\n".join(_run(FarMaskedNet(tiny_model), x, y, norm, eps, [0.0, eps, far_eps]).warnings)
    assert "robust accuracy rises" in far and "grey image" in far  # attacks stall only at the large radius
    noisy = "\n".join(_run(NoisyNet(tiny_model), x, y, norm, eps, [0.0]).warnings)
    assert "at eps=0 the attacks changed" in noisy and "randomized defense" in noisy
    masked = "\n".join(_run(MaskedNet(tiny_model), x, y, norm, eps, [big]).warnings)
    assert "grey image" in masked


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("norm", "eps"), [("Linf", 8 / 255), ("L2", 0.5)])
def test_honest_model_is_silent_with_the_default_radii(tiny_model, tiny_data, norm, eps, seed):
    x, y = tiny_data[0][:20], tiny_data[1][:20]
    r = _run(tiny_model, x, y, norm, eps, [], seed=seed)  # [] = the norm's default radii
    assert r.warnings == [], r.warnings
    assert r.sweep["eps"] == EvaluateConfig(norm=norm).sweep_radii() and r.sweep["robust_accuracy"][-1] == 0.0
    assert r.pgd["step_size"] == pytest.approx(2.5 * eps / 20) and r.pgd["step_size_rule"] == "2.5*eps/steps"
