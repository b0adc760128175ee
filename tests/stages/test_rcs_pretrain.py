"""RCS in the pretrain stage: warm-up on the whole set, coreset epochs of the selected size, the LR schedule
by epoch fraction, the validation images never trained on, and an exact resume mid-coreset-epoch."""

import json

import pytest
import torch
from safetensors.torch import load_file
from test_resume_exact import _interrupt_at

from pipeline.run import RunDir
from pipeline.train.optim import lr_factor
from stages.pretrain import run_pretrain

COMMON = [
    "pretrain.method=acl",
    "pretrain.epochs=3",
    "pretrain.batch_size=16",
    "pretrain.attack.steps=1",
    "pretrain.rcs.fraction=0.5",
    "pretrain.rcs.warmup_epochs=2",
    "pretrain.rcs.period=1",
    "pretrain.rcs.val_fraction=0.1",
    "pretrain.rcs.val_attack_steps=1",
    "pretrain.checkpoint_every_steps=1",
]
FULL = 4  # 64 samples − 6 held out for RCS's validation = 58: exact epochs of 3 × 16 + 10; budget 29 → 1 batch of 16


def _selections(cfg):
    folder = RunDir.of(cfg.run).stage("pretrain") / "coreset"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("selection_epoch_*.json"))}


def test_rcs_epochs_schedule_and_exact_resume(tiny_cfg, monkeypatch):
    straight = tiny_cfg("run.name=straight", *COMMON)
    outputs = run_pretrain(straight)
    chosen = _selections(straight)
    assert list(chosen) == [
        "selection_epoch_0002.json",
        "selection_epoch_0003.json",
    ]  # epoch ≥ warmup, every period
    sizes = [len(sel["ids"]) for sel in chosen.values()]
    for sel in chosen.values():  # 58 in batches of 16: 3 full candidates (the short one of 10 is not one)
        assert sel["candidates"] == 3 and len(sel["picked"]) == 1 and len(set(sel["ids"])) == 16
    held_out = set(
        json.loads((RunDir.of(straight.run).stage("pretrain") / "coreset" / "validation.json").read_text())
    )
    assert len(held_out) == 6 and not held_out & {i for sel in chosen.values() for i in sel["ids"]}
    subset_steps = [-(-n // 16) for n in sizes]  # exact epochs over the coreset
    assert outputs["steps"] == FULL + sum(subset_steps) and outputs["coreset"] == "coreset/"
    # the LR follows the fraction of epochs done: at every epoch's end, where a run of full epochs would be
    rows = [
        json.loads(x)
        for x in (RunDir.of(straight.run).stage("pretrain") / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r for r in rows if r["kind"] == "step"]
    # every epoch visits its set once: the 58 training samples (warm-up), then the coreset's
    coverage = [(r["samples"], r["distinct_samples"]) for r in rows if r["kind"] == "epoch"]
    assert coverage == [(58, 58)] + [(n, n) for n in sizes]
    optim = straight.pretrain.optim
    ends = [FULL - 1, FULL + subset_steps[0] - 1, FULL + sum(subset_steps) - 1]
    for epoch, last in enumerate(ends):
        want = optim.lr * lr_factor((epoch + 1) * FULL, 3 * FULL, FULL, optim)
        assert steps[last]["lr"] == pytest.approx(want, rel=1e-9) and steps[last]["epoch"] == epoch + 1

    resumed = tiny_cfg("run.name=resumed", *COMMON)
    with monkeypatch.context() as m:
        _interrupt_at(m, FULL + subset_steps[0])  # at the second selection's epoch, after its selection
        with pytest.raises(KeyboardInterrupt):
            run_pretrain(resumed)
    run_pretrain(resumed)
    assert _selections(resumed) == {
        k: {**v, "seconds": _selections(resumed)[k]["seconds"]} for k, v in chosen.items()
    }
    a = load_file(str(RunDir.of(straight.run).stage("pretrain") / "backbone_adv" / "model.safetensors"))
    b = load_file(str(RunDir.of(resumed.run).stage("pretrain") / "backbone_adv" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_rcs_needs_an_adversarial_method(tiny_cfg):
    from pipeline.errors import UsageError

    with pytest.raises(
        UsageError, match="pretrain.rcs.fraction=0.5 is invalid; coreset selection scores adversarial"
    ):
        tiny_cfg("pretrain.method=simclr", "pretrain.rcs.fraction=0.5")
