"""Resuming from finished chunks, and the files a report writes."""

from __future__ import annotations

import json

import pytest

import pipeline.evaluation.runner as runner
from pipeline.errors import UsageError
from pipeline.evaluation import EvaluateConfig, evaluate_batches, evaluate_model, summary_table, write_report


def _quick_cfg(seed: int = 0) -> EvaluateConfig:
    cfg = EvaluateConfig(eps=16 / 255, seed=seed, chunk_size=10, batch_size=16)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce"]
    cfg.sweep.eps = [0.5]
    cfg.sweep.attacks = ["apgd-ce"]
    cfg.smoothing.enabled = True
    cfg.smoothing.n, cfg.smoothing.n0, cfg.smoothing.n_examples = 200, 20, 15
    return cfg


@pytest.fixture
def computed(monkeypatch):
    """Counts the chunks actually computed."""
    calls = []
    real = runner.evaluate_chunk

    def counting(ctx, x, y, chunk):
        calls.append(chunk.index)
        return real(ctx, x, y, chunk)

    monkeypatch.setattr(runner, "evaluate_chunk", counting)
    return calls


def test_interrupted_run_resumes_only_missing_chunks(tiny_model, tiny_data, tmp_path, computed):
    x, y = tiny_data
    first = evaluate_model(tiny_model, x, y, _quick_cfg(), num_classes=10, work_dir=tmp_path, progress=False)
    assert computed == [0, 1, 2, 3]
    chunks = tmp_path / "chunks"
    kept = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir() if "000003" not in p.name}
    (chunks / "chunk_000003.json").unlink()  # as if the run died while computing the last chunk
    (chunks / "chunk_000002.safetensors").write_bytes(b"torn")  # and a torn tensor file of another one

    computed.clear()
    second = evaluate_model(tiny_model, x, y, _quick_cfg(), num_classes=10, work_dir=tmp_path, progress=False)
    assert computed == [2, 3]
    assert {p: chunks.joinpath(p).stat().st_mtime_ns for p in kept if "000002" not in p} == {
        p: t for p, t in kept.items() if "000002" not in p
    }
    assert second.per_sample == first.per_sample
    assert second.distributed["chunks_reused"] == 2
    assert {k: v for k, v in second.to_dict().items() if k not in ("timings", "distributed")} == {
        k: v for k, v in first.to_dict().items() if k not in ("timings", "distributed")
    }

    computed.clear()  # another configuration must not reuse anything
    evaluate_model(tiny_model, x, y, _quick_cfg(seed=1), num_classes=10, work_dir=tmp_path, progress=False)
    assert computed == [0, 1, 2, 3]


def test_write_report_files_and_schema(tiny_model, tiny_data, tmp_path):
    x, y = tiny_data
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]
    cfg = _quick_cfg()
    cfg.n_examples = 20
    report = evaluate_batches(tiny_model, iter(batches), cfg, num_classes=10, progress=False)
    assert report.n_examples == 20
    files = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in files.values())
    assert names == sorted(
        [
            "report.json",
            "report.md",
            "per_sample.csv",
            "robust_accuracy_vs_eps.png",
            "reliability_clean.png",
            "reliability_autoattack.png",
            "certified_accuracy.png",
        ]
    )
    d = json.loads((tmp_path / "out" / "report.json").read_text())
    assert isinstance(d["n_examples"], int) and 0 <= d["clean_accuracy"] <= 1 and d["seed"] == 0
    assert set(d["robust_accuracy"]) == {"pgd", "autoattack"}
    assert all(0 <= v <= 1 for v in d["robust_accuracy"].values())
    assert d["threat_model"] == {"norm": "Linf", "eps": 16 / 255}
    assert d["autoattack"]["version"] == "custom" and d["autoattack"]["attacks"] == ["apgd-ce"]
    assert d["passes"]["autoattack:apgd-ce"]["backward"] > 0 and "sweep" in d["timings"]["compute_seconds"]
    rows = (tmp_path / "out" / "per_sample.csv").read_text().splitlines()
    assert len(rows) == 21 and rows[0].startswith(
        "index,label,clean_pred,pgd_pred,aa_apgd-ce_pred,aa_final_pred,first_broken_by"
    )
    md = (tmp_path / "out" / "report.md").read_text()
    assert "⚠" not in md and "![robust accuracy vs epsilon](robust_accuracy_vs_eps.png)" in md

    report.warnings = ["[check] something failed"]
    write_report(report, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.startswith("> **⚠ evaluation may be unreliable**") and "something failed" in md
    assert "⚠ evaluation may be unreliable" in summary_table(report)


def test_bad_inputs_are_usage_errors(tiny_model, tiny_data):
    x, y = tiny_data
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        evaluate_model(tiny_model, x * 255, y, _quick_cfg(), num_classes=10, progress=False)
    with pytest.raises(UsageError, match="long tensor"):
        evaluate_model(tiny_model, x, y.float(), _quick_cfg(), num_classes=10, progress=False)
    with pytest.raises(UsageError, match="num_classes"):
        evaluate_model(tiny_model, x, y, _quick_cfg(), num_classes=5, progress=False)
