"""Our AutoAttack numbers are pyautoattack's numbers, point for point."""

from __future__ import annotations

import time

import pytest
import torch
from pyautoattack import AutoAttack

from pipeline.evaluation import EvaluateConfig, derive_seed, evaluate_model


def _cfg(**kw) -> EvaluateConfig:
    cfg = EvaluateConfig(**kw)
    cfg.sweep.enabled = False
    cfg.calibration.enabled = False
    return cfg


@pytest.mark.parametrize(
    ("n", "chunk_size"),
    [(24, 24), pytest.param(30, 15, marks=pytest.mark.slow)],  # the two-chunk case costs twice as much
)
def test_per_sample_equals_direct_run_standard_evaluation(tiny_model, tiny_data, n, chunk_size):
    """Attribution runs the attacks one by one; the outcome must equal one direct standard run per chunk."""
    x, y = tiny_data
    x, y = x[:n], y[:n]
    cfg = _cfg(eps=12 / 255, seed=5, chunk_size=chunk_size, batch_size=64)
    cfg.autoattack.batch_size = 10  # several batches per chunk, including a short last one
    report = evaluate_model(tiny_model, x, y, cfg, num_classes=10, progress=False)

    direct = []
    for chunk, start in enumerate(range(0, n, chunk_size)):
        aa = AutoAttack(
            tiny_model, eps=cfg.eps, norm="Linf", version="standard", seed=derive_seed(5, chunk, "autoattack")
        )
        _, y_adv = aa.run_standard_evaluation(
            x[start : start + chunk_size], y[start : start + chunk_size], batch_size=10
        )
        direct.append(y_adv)
    direct = torch.cat(direct)

    assert report.per_sample["aa_final_pred"] == direct.tolist()
    assert report.robust_accuracy["autoattack"] == (direct == y).double().mean().item()
    # the attribution is consistent with the final outcome, and some points reach the later attacks
    broken_by = report.per_sample["first_broken_by"]
    assert [b == "none" for b in broken_by] == (direct == y).tolist()
    counts = report.autoattack["first_broken_by"]
    assert sum(counts.values()) == n and counts["apgd-ce"] > 0 and counts["apgd-ce"] + counts["clean"] < n
    after = report.autoattack["robust_accuracy_after"]
    assert after["square"] == report.robust_accuracy["autoattack"]
    assert list(after.values()) == sorted(after.values(), reverse=True)


def test_pass_counts_and_timings_are_reported(tiny_model, tiny_data):
    x, y = tiny_data
    cfg = _cfg(eps=32 / 255, seed=1, chunk_size=40)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce"]
    cfg.pgd.steps = 5
    start = time.perf_counter()
    report = evaluate_model(tiny_model, x[:20], y[:20], cfg, num_classes=10, progress=False)
    assert time.perf_counter() - start < 30
    clean_ok = report.clean_accuracy * 20
    # PGD-5 on the correctly classified points: 5 forward+backward passes, one forward to read the result
    assert report.passes["pgd"] == {"forward": 6 * clean_ok, "backward": 5 * clean_ok}
    assert report.passes["clean"]["forward"] == 20 + 1  # + the grey image of the masking check
    # APGD-CE (standard settings: 100 iterations, 1 restart): one input-gradient per point per iteration + the start
    assert report.passes["autoattack:apgd-ce"]["backward"] == 101 * clean_ok
    assert report.timings["compute_seconds"]["autoattack:apgd-ce"] > 0
