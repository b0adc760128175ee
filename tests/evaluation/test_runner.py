"""The entry points' contracts: what they accept, what they read, what they leave as it was."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import TinyNet
from omegaconf import OmegaConf

from pipeline.evaluation import EvaluateConfig, evaluate_batches, evaluate_model


def _clean_only() -> EvaluateConfig:
    cfg = EvaluateConfig(chunk_size=16, batch_size=16)
    cfg.pgd.steps = 0
    cfg.autoattack.enabled = cfg.sweep.enabled = cfg.calibration.enabled = False
    return cfg


def test_config_must_be_the_dataclass(tiny_model, tiny_data):
    """One way in: an omegaconf node is converted by the caller (OmegaConf.to_object), not here."""
    x, y = tiny_data
    node = OmegaConf.structured(_clean_only())
    with pytest.raises(TypeError, match=r"OmegaConf\.to_object"):
        evaluate_model(tiny_model, x, y, node, num_classes=10, progress=False)
    with pytest.raises(TypeError, match="EvaluateConfig"):
        evaluate_batches(tiny_model, iter([(x, y)]), node, num_classes=10, progress=False)


def test_batches_are_read_to_the_end_when_n_examples_is_0(tiny_model, tiny_data):
    x, y = tiny_data
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]
    report = evaluate_batches(tiny_model, iter(batches), _clean_only(), num_classes=10, progress=False)
    with torch.no_grad():
        expected = tiny_model(x).argmax(dim=1).tolist()
    assert report.n_examples == 40 and report.per_sample["clean_pred"] == expected


class _Recording(TinyNet):
    """Records, at every forward, whether any module is in train mode and any parameter requires grad."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[bool, bool]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modes = any(m.training for m in self.modules())
        self.seen.add((modes, any(p.requires_grad for p in self.parameters())))
        return super().forward(x)


def test_modes_and_grad_flags_are_restored_per_module(tiny_data):
    """A frozen-backbone probe: backbone in eval() and frozen, head training; all of it comes back as it was."""
    x, y = tiny_data
    model = _Recording().train()
    model.body.eval()
    model.body.requires_grad_(False)
    before = [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]
    cfg = _clean_only()
    cfg.pgd.steps = 2
    evaluate_model(model, x[:8], y[:8], cfg, num_classes=10, progress=False)
    assert model.seen == {(False, False)}  # eval() and no parameter gradients during the attacks
    assert ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]) == before
