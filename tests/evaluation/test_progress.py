"""The evaluation's progress in a log: one line per phase and per chunk, running accuracies, no ``\\r``."""

import torch
from torch import nn

import pipeline
from pipeline.evaluation.config import AutoAttackConfig, CalibrationConfig, PGDEvalConfig, SweepConfig


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    x = torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point clean-correct: the attacks have something to break
    cfg = pipeline.EvaluateConfig(
        chunk_size=3,
        batch_size=3,
        pgd=PGDEvalConfig(steps=2),
        sweep=SweepConfig(enabled=False),
        calibration=CalibrationConfig(enabled=False),
        autoattack=AutoAttackConfig(version="custom", attacks=["apgd-ce"]),
    )
    return model, x, y, cfg


def test_a_log_gets_a_line_per_phase_and_chunk(capsys):
    model, x, y, cfg = _tiny()
    report = pipeline.evaluate_model(model, x, y, cfg)  # pytest's captured stdout is not a terminal
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert "\r" not in out.out + out.err  # no tqdm frames: stderr is not a terminal either
    assert lines[0] == "[evaluate] 6 examples in 2 chunks"
    for phase in ("clean", "pgd", "autoattack:apgd-ce"):
        mine = [line for line in lines if f"  {phase} " in line]
        assert len(mine) == 2, (phase, lines)  # one per chunk
        assert "elapsed 0:00:" in mine[0]
    clean = [line for line in lines if "  clean " in line]
    assert "accuracy 100.0% (n=3)" in clean[0] and "accuracy 100.0% (n=6)" in clean[1]  # running, over chunks
    last_aa = [line for line in lines if "autoattack:apgd-ce" in line][-1]
    assert f"robust {report.robust_accuracy['autoattack']:.1%} (n=6)" in last_aa  # the report's number
    done = [line for line in lines if "done in" in line]
    assert len(done) == 2 and "ETA 0:00:00" in done[-1] and "chunk 2/2" in done[-1]


def test_progress_false_is_silent(capsys):
    model, x, y, cfg = _tiny()
    pipeline.evaluate_model(model, x, y, cfg, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_further_threat_gets_its_own_lines_and_tallies(capsys):
    from pipeline.evaluation.config import ThreatModel

    model, x, y, cfg = _tiny()
    cfg.threats = [ThreatModel(norm="Linf", eps=8 / 255), ThreatModel(norm="L2", eps=0.5)]
    report = pipeline.evaluate_model(model, x, y, cfg)
    lines = capsys.readouterr().out.splitlines()
    l2 = [line for line in lines if "L2" in line and "autoattack:apgd-ce" in line]
    assert len(l2) == 2 and "(n=6)" in l2[-1], lines  # its own running count, not pooled with Linf's
    second = report.sections["threats"][1]["robust_accuracy"]["autoattack"]
    assert f"robust {second:.1%} (n=6)" in l2[-1]
    linf = [line for line in lines if "L2" not in line and "autoattack:apgd-ce" in line]
    assert "(n=6)" in linf[-1]
