"""``pretrain.method=mimir`` from the quickstart by config alone: it runs on a registered ViT, exports the
encoder as a timm folder that ``timm.create_model("local-dir:…")`` reloads (the decoder stays in the run
folder), and a non-ViT model is a one-line error (exit 2) before any data or run folder is made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

import pipeline.models  # noqa: F401  (registers our ViTs for the reload)

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _pretrain(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "stages.pretrain", "--config", "configs/quickstart.yaml"]
    cmd += [f"run.root={tmp_path / 'runs'}", "run.progress=false", "run.num_threads=1", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_mimir_runs_from_the_quickstart_and_exports_a_timm_encoder(tmp_path):
    proc = _pretrain(
        tmp_path,
        "pretrain.method=mimir",
        "model.name=vit_micro_patch4_32",
        # a small budget for the test; everything else is the quickstart's
        "pretrain.epochs=1",
        "pretrain.samples_per_epoch=64",
        "pretrain.batch_size=32",
        "pretrain.attack.steps=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stage = tmp_path / "runs" / "quickstart" / "pretrain"
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["outputs"]["method"] == "mimir"
    assert manifest["outputs"]["backbones"] == {"single": "backbone"} and manifest["outputs"]["steps"] == 2
    rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    assert any("hsic" in r and "loss_mae" in r for r in rows)

    model = timm.create_model(f"local-dir:{stage / 'backbone'}", pretrained=True, num_classes=0)
    saved = load_file(str(stage / "backbone" / "model.safetensors"))
    assert not any(k.startswith(("decoder", "encoder.", "mask_token")) for k in saved)  # encoder only
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    with torch.no_grad():
        # the quickstart's 16 px digits: the ViT was built for the data's size, and its folder says so
        assert model(torch.rand(2, 3, 16, 16)).shape == (2, model.num_features)
    # the decoder stays in the run folder
    decoder = load_file(str(stage / "decoder" / "decoder.safetensors"))
    assert any(k.startswith("decoder.") for k in decoder) and "pred.weight" in decoder

    # MIMIR's fine-tuning settings on that backbone: PGD-AT, label smoothing, AdamW with layer-wise lr decay
    proc = subprocess.run(
        [sys.executable, "-m", "stages.finetune", "--config", "configs/quickstart.yaml",
         f"run.root={tmp_path / 'runs'}", "run.progress=false", "run.num_threads=1",
         "model.name=vit_micro_patch4_32", "pretrain.method=mimir", "pretrain.epochs=1",
         "pretrain.samples_per_epoch=64", "pretrain.batch_size=32", "pretrain.attack.steps=1",
         "finetune.objective=pgd_at", "finetune.label_smoothing=0.1", "finetune.epochs=1",
         "finetune.samples_per_epoch=64", "finetune.batch_size=32", "finetune.attack.steps=1",
         "finetune.val_attack_steps=1", "finetune.optim.name=adamw", "finetune.optim.lr=0.001",
         "finetune.optim.layer_decay=0.65", "finetune.optim.warmup_epochs=0.5",
         "finetune.optim.warmup_from_zero=true", "finetune.optim.decay_norm_and_bias=false"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ft = json.loads((stage.parent / "finetune" / "manifest.json").read_text())
    assert ft["status"] == "complete" and ft["outputs"]["objective"] == "pgd_at"


def test_mimir_with_a_non_vit_model_is_a_one_line_error(tmp_path):
    proc = _pretrain(tmp_path, "pretrain.method=mimir")  # the quickstart's model: a ResNet
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: pretrain.method=mimir needs a ViT") and proc.stderr.count("\n") == 1
    assert "model.name=resnet10_cifar_tiny" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_mimir_resumes_after_kill9_with_the_weights_of_an_uninterrupted_run(tmp_path):
    """SIGKILL once a checkpoint is on disk, re-run the same command: the run resumes from the checkpoint
    (masks, attack noise and the loader's position included) and ends with the uninterrupted run's encoder."""
    args = [
        "pretrain.method=mimir",
        "model.name=vit_micro_patch4_32",
        "pretrain.epochs=2",
        "pretrain.samples_per_epoch=64",
        "pretrain.batch_size=16",
        "pretrain.attack.steps=1",
        "pretrain.checkpoint_every_steps=2",
    ]
    assert _pretrain(tmp_path / "a", *args).returncode == 0
    backbone = Path("runs") / "quickstart" / "pretrain" / "backbone" / "model.safetensors"
    reference = load_file(str(tmp_path / "a" / backbone))

    cmd = [sys.executable, "-m", "stages.pretrain", "--config", "configs/quickstart.yaml"]
    cmd += [f"run.root={tmp_path / 'b' / 'runs'}", "run.progress=false", "run.num_threads=1", *args]
    stage = tmp_path / "b" / "runs" / "quickstart" / "pretrain"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(not p.name.startswith(".") for p in (stage / "checkpoints").glob("step_*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: give it more steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (stage / "backbone").exists()

    resumed = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step_" in resumed.stdout  # it said which checkpoint it resumed from
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["outputs"]["steps"] == 8
    final = load_file(str(stage / "backbone" / "model.safetensors"))
    assert final.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(final[name], reference[name], rtol=0, atol=1e-6, msg=name)
