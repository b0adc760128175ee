"""An interrupted and resumed run ends with the same weights as an uninterrupted one (CPU, 1 process)."""

import pytest
import torch
from safetensors.torch import load_file

from pipeline import train as train_mod
from pipeline.finetune import run_finetune
from pipeline.pretrain import run_pretrain
from pipeline.run import stage_dir


def _interrupt_at(monkeypatch, step: int):
    original = train_mod.Trainer._one_step

    def one_step(self, batch, bar):
        if self.state.global_step == step:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill between checkpoints) leaves behind
        return original(self, batch, bar)

    monkeypatch.setattr(train_mod.Trainer, "_one_step", one_step)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("method", ["acl", "dynacl"])
def test_pretrain_resume_gives_identical_weights(tiny_cfg, monkeypatch, method):
    common = [f"pretrain.method={method}", "pretrain.epochs=2", "pretrain.checkpoint_every_steps=1",
              "pretrain.dynacl.strength_period_epochs=1"]
    straight = tiny_cfg("run.name=straight", *common)
    run_pretrain(straight)
    resumed = tiny_cfg("run.name=resumed", *common)
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)  # mid-epoch 2, one step after a checkpoint
        with pytest.raises(KeyboardInterrupt):
            run_pretrain(resumed)
    run_pretrain(resumed)
    a = _weights(stage_dir(straight, "pretrain") / "backbone_adv")
    b = _weights(stage_dir(resumed, "pretrain") / "backbone_adv")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_finetune_resume_gives_identical_weights(tiny_cfg, monkeypatch):
    common = ["finetune.init=scratch", "finetune.epochs=2", "finetune.checkpoint_every_steps=1"]
    straight = tiny_cfg("run.name=straight", *common)
    run_finetune(straight)
    resumed = tiny_cfg("run.name=resumed", *common)
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(resumed)
    run_finetune(resumed)
    a = _weights(stage_dir(straight, "finetune") / "final")
    b = _weights(stage_dir(resumed, "finetune") / "final")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
