"""evaluate.precision=bf16: PGD and the sweep run under bf16 autocast; clean accuracy and AutoAttack never."""

from __future__ import annotations

import torch
from eval_helpers import TinyNet, train_tiny

from pipeline.evaluation import EvaluateConfig, evaluate_model
from pipeline.evaluation.chunks import Chunk, _cfg_without_sizes, chunk_fingerprint


class _AutocastRecorder(TinyNet):
    """TinyNet that notes, per forward, whether CPU autocast was on and whether the input needs a gradient."""

    def __init__(self, trained: TinyNet) -> None:
        super().__init__()
        self.load_state_dict(trained.state_dict())
        self.seen: list[bool] = []
        self.images_bf16 = 0  # images forwarded under autocast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.is_autocast_enabled("cpu"))
        self.images_bf16 += x.shape[0] if self.seen[-1] else 0
        return super().forward(x)


def _cfg(precision: str, sweep: bool = False) -> EvaluateConfig:
    cfg = EvaluateConfig(chunk_size=40, batch_size=40, eps=8 / 255, precision=precision)
    cfg.pgd.steps = 10
    cfg.autoattack.version, cfg.autoattack.attacks = "custom", ["apgd-ce"]
    cfg.sweep.enabled, cfg.sweep.eps, cfg.sweep.attacks = sweep, [0.0, 8 / 255], ["apgd-ce"]
    cfg.calibration.enabled = cfg.masking_checks = False
    return cfg


def test_bf16_touches_pgd_and_sweep_only(tiny_data):
    x, y = tiny_data
    trained = train_tiny()
    fp32, bf16 = _AutocastRecorder(trained).eval(), _AutocastRecorder(trained).eval()
    a = evaluate_model(fp32, x, y, _cfg("fp32"), num_classes=10, progress=False)
    b = evaluate_model(bf16, x, y, _cfg("bf16"), num_classes=10, progress=False)
    assert not any(fp32.seen) and any(bf16.seen)  # autocast only where asked
    assert bf16.images_bf16 == b.passes["pgd"]["forward"]  # exactly PGD's forwards: not clean, not AutoAttack
    assert a.per_sample["clean_pred"] == b.per_sample["clean_pred"]
    # AutoAttack ran in fp32 both times: the same seeds give the very same predictions
    aa = [k for k in a.per_sample if k.startswith("aa_")]
    assert aa and all(a.per_sample[k] == b.per_sample[k] for k in aa)
    # PGD in bf16: the verdicts agree up to a few flips of near-boundary points (here at most 1 in 10)
    pa, pb = torch.tensor(a.per_sample["pgd_pred"]) == y, torch.tensor(b.per_sample["pgd_pred"]) == y
    assert int((pa != pb).sum()) <= len(y) // 10
    assert any("bf16 autocast" in n for n in b.notes) and not any("bf16" in n for n in a.notes)


def test_sweep_runs_under_bf16(tiny_data):
    x, y = tiny_data
    model = _AutocastRecorder(train_tiny()).eval()
    cfg = _cfg("bf16", sweep=True)
    cfg.pgd.steps, cfg.autoattack.enabled = 0, False
    evaluate_model(model, x, y, cfg, num_classes=10, progress=False)
    assert any(model.seen) and not all(model.seen)  # the clean pass fp32, the sweep's attacks bf16


def test_fp32_chunk_fingerprint_is_what_it_was_before_precision_existed():
    chunk = Chunk(index=0, start=0, stop=10, covered={"autoattack": 10, "sweep": 0, "smoothing": 0})
    fps = {
        p: chunk_fingerprint(_cfg(p), chunk, model_fp="m", data_fp="d", num_classes=10)
        for p in ("fp32", "bf16")
    }
    assert fps["fp32"] != fps["bf16"]
    # the payload without the new key: chunks written by older versions stay reusable
    assert "precision" not in _cfg_without_sizes(_cfg("fp32"))
