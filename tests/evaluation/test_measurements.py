"""The measurement registry: chunk fingerprints as they were before it existed (resumed evaluations reuse
old chunks), the record of each measurement read back from its chunk, and a measurement added from
outside the package with one module and one registry entry."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

import pipeline.evaluation.chunks as chunks
from pipeline.evaluation import EvaluateConfig, evaluate_model, summary_table, write_report
from pipeline.evaluation.measurements import MEASUREMENTS, ChunkWork, Measurement, in_order
from pipeline.evaluation.measurements.base import accuracy, concat, interval

# chunk_fingerprint of these plans, computed by the code before the registry (commit df67f69) with the
# library versions below: a changed fingerprint would make every resumed evaluation recompute its chunks.
# version=fast computes something else since (MALT's own ranking, 9 targets): its old chunks must be stale
VERSIONS = {"torch": "T", "pyautoattack": "A"}
PINNED = {
    "default": ["3adb32ce95f98e383378a72836074f3ca7e71bd25036c7daa9ceae825151c65f"],
    "custom": [
        "286475bd71a3aa5667d82f56c151f07876124bb7e90a3850dfed5b63058ccc3f",
        "058c0f7481c36f946fe8217270ad1a4bbb5d7428f569d6f7da9cd12c17daac82",
        "23716d301be96d03521fc34c33bbdb753a00701c696905c2b1b2b64fa6a10033",
    ],
}
STALE = {
    "fast": [
        "49f95b7a81c740a1abc6ff50c84a623ced543bc291fc6132552dec2d6c4a7867",
        "b5cdcf81ef62c0345c891269d65ceb8263e4dc4a45cdd7ef4b3a0d9cb76c4119",
        "9a0d64ceedfbe59ddbbc8e650e382088f0a9b86de638da2c72795ddde9e39773",
    ],
}


def _cfg(version: str) -> EvaluateConfig:
    c = EvaluateConfig(norm="L2", eps=0.5, seed=3, chunk_size=10, precision="bf16")
    c.autoattack.version, c.autoattack.n_examples = version, 15
    if version == "custom":
        c.autoattack.attacks = ["apgd-ce", "square"]
    c.sweep.eps, c.smoothing.enabled, c.smoothing.n_examples, c.pgd.step_size = [0.0, 1.0], True, 5, 0.1
    return c


def _fingerprints(monkeypatch, cfg: EvaluateConfig) -> list[str]:
    monkeypatch.setattr(chunks, "library_versions", lambda: VERSIONS)
    return [
        chunks.chunk_fingerprint(cfg, c, model_fp="m", data_fp="d", num_classes=10)
        for c in chunks.plan_chunks(23, cfg)
    ]


@pytest.mark.parametrize(("name", "cfg"), [("default", EvaluateConfig()), ("custom", _cfg("custom"))])
def test_chunk_fingerprints_are_those_of_the_fixed_layout(monkeypatch, name, cfg):
    assert _fingerprints(monkeypatch, cfg) == PINNED[name]
    cfg.autoattack.fast_targets, cfg.autoattack.cross_check = 5, 0.5  # settings these versions do not read
    assert _fingerprints(monkeypatch, cfg) == PINNED[name]
    if name == "custom":
        assert [c.covered for c in chunks.plan_chunks(23, cfg)] == [
            {"autoattack": 10, "sweep": 10, "smoothing": 5},
            {"autoattack": 5, "sweep": 10, "smoothing": 0},
            {"autoattack": 0, "sweep": 3, "smoothing": 0},
        ]


def test_fast_chunks_of_the_earlier_ranking_are_stale(monkeypatch):
    cfg = _cfg("fast")
    cfg.autoattack.fast_targets = 3  # even with the old default: the ranking changed
    new = _fingerprints(monkeypatch, cfg)
    assert not set(new) & set(STALE["fast"])
    cfg.autoattack.fast_targets = 9
    assert not set(_fingerprints(monkeypatch, cfg)) & set(new)  # fast reads it


def test_registry_order_and_sections():
    names = [m.name for m in in_order()]
    assert names == [
        "clean",
        "pgd",
        "autoattack",
        "threats",
        "transfer",
        "calibration",
        "sweep",
        "smoothing",
        "corruptions",
    ]
    # every section of EvaluateConfig belongs to exactly one measurement, and the prefix ones have n_examples
    cfg = EvaluateConfig()
    sections = [m.section for m in in_order() if m.section]
    assert sorted(sections) == sorted(k for k, v in vars(cfg).items() if hasattr(v, "check"))
    assert all(hasattr(getattr(cfg, m.section), "n_examples") for m in in_order() if m.prefix)


@dataclass
class NoiseChunk:
    """Predictions on noisy copies of a chunk's points; stored as the chunk record's ``noise_pred``."""

    noise_pred: list[int]

    def write(self, record: dict, tensors: dict) -> None:
        record["noise_pred"] = self.noise_pred

    @classmethod
    def read(cls, record: dict, tensors: dict) -> NoiseChunk | None:
        return cls(record["noise_pred"]) if "noise_pred" in record else None


class GaussianNoise(Measurement):
    """Accuracy under Gaussian noise (σ = 0.1): a measurement defined outside the package."""

    name = "noise"
    Record = NoiseChunk

    def run(self, work: ChunkWork) -> NoiseChunk:
        with work.phase(self.name):
            g = torch.Generator().manual_seed(work.seed("noise"))
            noisy = (work.x + 0.1 * torch.randn(work.x.shape, generator=g)).clamp(0, 1)
            return NoiseChunk(work.logits(noisy).argmax(dim=1).tolist())

    def merge(self, parts, merged, report) -> None:
        pred = concat(parts, "noise_pred")
        report.sections["noise"] = {
            "accuracy": accuracy(pred, merged.label),
            "ci": interval(pred, merged.label),
        }
        report.per_sample["noise_pred"] = pred.tolist()

    def summary_rows(self, report) -> list[list]:
        return [["accuracy under noise", f"{report.sections['noise']['accuracy']:.2f}"]]

    def markdown(self, report, figures) -> list[str]:
        return ["## Gaussian noise", "", f"accuracy {report.sections['noise']['accuracy']:.2f}", ""]


def _small() -> EvaluateConfig:
    cfg = EvaluateConfig(eps=8 / 255, chunk_size=10, batch_size=20)
    cfg.pgd.steps = 2
    cfg.autoattack.version, cfg.autoattack.attacks, cfg.autoattack.n_examples = "custom", ["apgd-ce"], 5
    cfg.sweep.enabled = False
    return cfg


def test_a_new_measurement_is_one_class_and_one_registry_entry(tiny_model, tiny_data, tmp_path, monkeypatch):
    x, y = tiny_data[0][:20], tiny_data[1][:20]
    before = evaluate_model(tiny_model, x, y, _small(), num_classes=10, work_dir=tmp_path, progress=False)
    monkeypatch.setitem(MEASUREMENTS._items, "noise", GaussianNoise())  # the registry line
    after = evaluate_model(tiny_model, x, y, _small(), num_classes=10, work_dir=tmp_path, progress=False)
    # no settings, so the fingerprint is unchanged: the old chunks lack its record and are computed again
    assert after.distributed["chunks_reused"] == 0
    record = json.loads((tmp_path / "chunks" / "chunk_000001.json").read_text())
    assert len(record["noise_pred"]) == 10 and "noise" in record["passes"]

    files = write_report(after, tmp_path / "out")
    d = json.loads(files["json"].read_text())
    assert 0 <= d["noise"]["accuracy"] <= 1 and d["noise"]["ci"] is not None
    assert d["passes"]["noise"]["forward"] == 20
    csv = files["csv"].read_text().splitlines()
    assert csv[0].endswith(",first_broken_by,noise_pred") and len(csv) == 21
    md = files["markdown"].read_text()
    assert "## Gaussian noise" in md and "| noise |" in md and "accuracy under noise" in summary_table(after)
    # everything else is what it was without it
    assert {k: v for k, v in after.per_sample.items() if k != "noise_pred"} == before.per_sample
    old, new = before.to_dict(), after.to_dict()  # to_dict: NaN (no wrong prediction) compares as None
    for key in (
        "clean_accuracy",
        "robust_accuracy",
        "robust_accuracy_ci",
        "pgd",
        "autoattack",
        "calibration",
    ):
        assert new[key] == old[key], key
