"""``pretrain.method=fare`` through the stage: from a timm folder the test writes, by config alone; the
backbone it exports reloads with ``timm.create_model("local-dir:…")``; the embedding report is written,
printed and named in the manifest; without ``model.pretrained`` it is a one-line error."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from pipeline.errors import UsageError
from pipeline.export import save_timm_folder
from pipeline.models import build_model
from pipeline.run import RunDir
from stages.finetune import run_finetune
from stages.pretrain import run_pretrain


def _start_folder(path):
    torch.manual_seed(3)
    save_timm_folder(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3), path)
    return load_file(str(path / "model.safetensors"))


def test_fare_requires_model_pretrained(tiny_cfg):
    with pytest.raises(UsageError, match="set model.pretrained="):
        run_pretrain(tiny_cfg("pretrain.method=fare"))


@pytest.mark.parametrize("variant", ["pgd", "apgd"])
def test_fare_runs_from_a_timm_folder_and_exports_a_reloadable_backbone(tiny_cfg, tmp_path, capsys, variant):
    start = _start_folder(tmp_path / "start")
    cfg = tiny_cfg(
        f"model.pretrained={tmp_path / 'start'}",
        "pretrain.method=fare",
        f"pretrain.fare.attack={variant}",
        "pretrain.attack.eps=4/255",
        "pretrain.attack.step_size=1/255",
        "pretrain.optim.name=adamw",
        "pretrain.optim.lr=1e-3",
        "pretrain.optim.weight_decay=1e-4",
        "pretrain.fare.report_images=8",
        "pretrain.fare.report_steps=2",
    )
    outputs = run_pretrain(cfg)
    out = RunDir.of(cfg.run).stage("pretrain")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["embedding_report"] == "embedding_report.json" == outputs["embedding_report"]
    assert manifest["outputs"]["method"] == "fare" and manifest["outputs"]["steps"] == 2  # 64 images / 32
    report = json.loads((out / "embedding_report.json").read_text())
    assert report["images"] == 8 and report["split"] == "val"
    assert report["before"]["clean_cosine"] == pytest.approx(1.0, abs=1e-5)  # f₀ against itself
    assert report["before"]["adversarial_distance"] > 0
    assert 0 < report["after"]["clean_cosine"] <= 1 + 1e-6
    assert "embedding report (8 val images" in capsys.readouterr().out
    trained = load_file(str(out / "backbone" / "model.safetensors"))
    moved = (trained["layer1.0.conv1.weight"] - start["layer1.0.conv1.weight"]).abs().max()
    assert 0 < moved < 0.1  # two AdamW steps of lr 1e-3 from the given weights, not a fresh init
    # BN statistics stay f₀'s (update_bn_statistics=false)
    key = next(k for k in start if k.endswith("running_mean"))
    torch.testing.assert_close(trained[key], start[key], rtol=0, atol=0)
    import pipeline.models  # noqa: F401  (registers our architectures before timm resolves the folder)

    reloaded = timm.create_model(f"local-dir:{out / 'backbone'}", pretrained=True).eval()
    x = torch.rand(2, 3, 32, 32)
    from pipeline.export import load_timm_folder

    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), load_timm_folder(out / "backbone")(x))
    # the README's next step, `make finetune`, reads FARE's manifest back and starts from its backbone
    finetuned = run_finetune(cfg)
    assert finetuned["protocol"] == "aff" and finetuned["steps"] > 0


# a CLIP image tower as timm builds it (pre-norm, the tag's OpenAI statistics), shrunk to test size
CLIP_TINY = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def test_fare_robustifies_a_clip_tower_from_a_user_fetched_folder(tiny_cfg, tmp_path):
    """What the README's FARE path does with `huggingface-cli download timm/vit_base_patch16_clip_224.openai`:
    the folder timm's own save_for_hf writes (config.json with pretrained_cfg + model.safetensors), named by
    model.pretrained; the normalisation comes from the folder, f₀ is its weights, and the export reloads."""
    size = tiny_cfg().data.image_size
    args = dict(CLIP_TINY, img_size=size)
    torch.manual_seed(5)
    tower = timm.create_model("vit_base_patch16_clip_224.openai", pretrained=False, num_classes=0, **args)
    folder = tmp_path / "vit_b16_clip_openai"
    timm.models.save_for_hf(tower, folder, model_args=args, safe_serialization=True)
    kwargs = "{" + ", ".join(f"{k}: {v}" for k, v in args.items()) + "}"
    cfg = tiny_cfg(
        "model.name=timm:vit_base_patch16_clip_224.openai",
        f"model.pretrained={folder}",
        f"model.kwargs={kwargs}",
        "model.mean=[]",  # the quickstart's explicit 0.5s would win over the folder's statistics
        "model.std=[]",
        "pretrain.method=fare",
        "pretrain.attack.eps=4/255",
        "pretrain.attack.step_size=1/255",
        "pretrain.attack.steps=2",
        "pretrain.optim.name=adamw",
        "pretrain.optim.lr=1e-3",
        "pretrain.fare.report_images=8",
        "pretrain.fare.report_steps=2",
    )
    mean, std, source = cfg.model.normalization()
    assert mean == pytest.approx(timm.data.OPENAI_CLIP_MEAN)
    assert std == pytest.approx(timm.data.OPENAI_CLIP_STD)
    assert str(folder) in source  # from the folder's config.json, not a default
    run_pretrain(cfg)
    out = RunDir.of(cfg.run).stage("pretrain")
    report = json.loads((out / "embedding_report.json").read_text())
    assert report["before"]["clean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert report["before"]["adversarial_distance"] > 0 and 0 < report["after"]["clean_cosine"] <= 1 + 1e-6
    start = load_file(str(folder / "model.safetensors"))
    trained = load_file(str(out / "backbone" / "model.safetensors"))
    # the export wraps the tower with its normalisation inside (config.json model_args), keys under model.
    qkv = "blocks.0.attn.qkv.weight"
    assert 0 < (trained[f"model.{qkv}"] - start[qkv]).abs().max() < 0.1
    card = json.loads((out / "backbone" / "config.json").read_text())
    assert card["model_args"]["mean"] == pytest.approx(timm.data.OPENAI_CLIP_MEAN)
    reloaded = timm.create_model(f"local-dir:{out / 'backbone'}", pretrained=True).eval()
    with torch.no_grad():
        assert reloaded(torch.rand(2, 3, size, size)).shape == (2, CLIP_TINY["embed_dim"])
