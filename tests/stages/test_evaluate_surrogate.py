"""The evaluate stage's transfer surrogate: by default the run's other fine-tuning checkpoint."""

from __future__ import annotations

import pytest
from torch import nn

from pipeline.config import ExperimentConfig
from pipeline.errors import UsageError
from stages import evaluate


@pytest.mark.parametrize(
    ("checkpoint", "surrogate", "loaded"),
    [
        ("best", "", ("finetune", "final")),
        ("final", "", ("finetune", "best")),
        ("best", "finetune:best", ("finetune", "best")),
        ("best", "local-dir:elsewhere", ("local-dir:elsewhere", None)),
    ],
)
def test_the_default_surrogate_is_the_other_checkpoint(monkeypatch, checkpoint, surrogate, loaded):
    cfg = ExperimentConfig()
    cfg.evaluate.checkpoint, cfg.evaluate.transfer.enabled = checkpoint, True
    cfg.evaluate.transfer.surrogate = surrogate
    asked = []
    monkeypatch.setattr(
        evaluate,
        "load_model_to_evaluate",
        lambda cfg, source, ckpt: asked.append((source, ckpt)) or (nn.Identity(), {}),
    )
    _, name = evaluate.load_surrogate(cfg)
    assert asked == [loaded] and name == surrogate or name == f"finetune:{loaded[1]}"


def test_no_default_surrogate_for_an_external_model():
    cfg = ExperimentConfig()
    cfg.evaluate.model, cfg.evaluate.transfer.enabled = "local-dir:exported", True
    with pytest.raises(UsageError, match="set evaluate.transfer.surrogate to a model"):
        evaluate.load_surrogate(cfg)


def test_same_weights_tells_a_copy_from_another_model():
    import copy

    import torch

    from stages.evaluate import same_weights

    a = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    b = copy.deepcopy(a)
    assert same_weights(a, b)
    with torch.no_grad():
        b[1].running_mean += 1e-6  # a buffer differs: another model (e.g. another epoch's BN statistics)
    assert not same_weights(a, b)
    assert not same_weights(a, torch.nn.Sequential(torch.nn.Linear(3, 2)))
