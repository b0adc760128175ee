"""The library on a CUDA model (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from pipeline.evaluation import EvaluateConfig, evaluate_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_model_with_cpu_tensors(tiny_model, tiny_data, tmp_path):
    x, y = tiny_data
    cfg = EvaluateConfig(eps=16 / 255, chunk_size=16, batch_size=32)
    cfg.autoattack.version = "custom"
    cfg.autoattack.attacks = ["apgd-ce", "apgd-t", "square"]
    cfg.sweep.eps = [0.0, 0.5]
    cfg.smoothing.enabled = True
    cfg.smoothing.n, cfg.smoothing.n0, cfg.smoothing.n_examples = 500, 50, 8
    model = tiny_model.to("cuda").train()
    try:
        report = evaluate_model(model, x, y, cfg, num_classes=10, work_dir=tmp_path, progress=False)
        again = evaluate_model(model, x, y, cfg, num_classes=10, work_dir=tmp_path, progress=False)
        assert model.training and all(p.requires_grad for p in model.parameters())  # restored
    finally:
        tiny_model.to("cpu").eval()
    assert report.clean_accuracy > 0.9 and report.sweep["robust_accuracy"][0] == report.clean_accuracy
    assert report.warnings == []
    assert again.per_sample == report.per_sample and again.distributed["chunks_reused"] == 3
