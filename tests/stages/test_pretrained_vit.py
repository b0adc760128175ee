"""The pretrained-ViT recipe (configs/vit_s16_pretrained_trades.yaml) end to end at toy scale: a tiny timm
ViT whose "pretrained" weights the test saves itself (a Hugging Face-style folder with ImageNet
statistics), 64 px generated ImageFolder data, TRADES fine-tuning from those weights, evaluation, export."""

import json
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from pipeline.config import load_config
from pipeline.export import load_timm_folder
from pipeline.run import RunDir
from stages.evaluate import run_evaluate
from stages.export import run_export
from stages.finetune import run_finetune

ROOT = Path(__file__).resolve().parents[2]
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
TINY = "{patch_size: 16, embed_dim: 32, depth: 2, num_heads: 2, img_size: 64}"


def _image_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(4):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
            img[16 * c : 16 * c + 16, :, c % 3] = 220
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    return root


def _pretrained_folder(path: Path) -> dict:
    """A 224 px, 1000-class tiny ViT saved as timm/HF do (config.json + model.safetensors)."""
    torch.manual_seed(0)
    net = timm.create_model(
        "vit_tiny_patch16_224", num_classes=1000, patch_size=16, embed_dim=32, depth=2, num_heads=2
    )
    net.pretrained_cfg = dict(net.pretrained_cfg, mean=tuple(IMAGENET[0]), std=tuple(IMAGENET[1]))
    timm.models.save_for_hf(net, str(path), safe_serialization=True)
    return net.state_dict()


def test_pretrained_vit_recipe_end_to_end(tmp_path):
    saved = _pretrained_folder(tmp_path / "weights")
    cfg = load_config(
        ROOT / "configs" / "vit_s16_pretrained_trades.yaml",
        [
            f"run.root={tmp_path / 'runs'}",
            "run.progress=false",
            "run.mixed_precision='no'",
            "run.num_threads=2",
            f"data.train_source={_image_folder(tmp_path / 'img' / 'train', 8, 0)}",
            f"data.test_source={_image_folder(tmp_path / 'img' / 'test', 3, 1)}",
            "data.num_classes=4",
            "data.image_size=64",
            "data.val_size=8",
            "data.num_workers=0",
            "model.name=timm:vit_tiny_patch16_224",
            f"model.pretrained={tmp_path / 'weights'}",
            f"model.kwargs={TINY}",
            "finetune.epochs=1",
            "finetune.batch_size=12",
            "finetune.attack.steps=2",
            "finetune.val_attack_steps=2",
            "evaluate.n_examples=12",
            "evaluate.batch_size=12",
            "evaluate.chunk_size=12",
            "evaluate.sweep.enabled=false",
            "evaluate.autoattack.version=custom",
            "evaluate.autoattack.attacks=[apgd-ce]",
        ],
    )
    run_finetune(cfg)
    run_dir = RunDir.of(cfg.run)
    manifest = json.loads((run_dir.stage("finetune") / "manifest.json").read_text())
    assert f"model.pretrained={tmp_path / 'weights'}" in json.dumps(manifest)
    said = manifest["outputs"]["model"]  # what the start line printed (issue 25)
    assert said["architecture"] == "vit_tiny_patch16_224" and said["mean"] == IMAGENET[0]
    assert said["normalization_source"] == f"{tmp_path / 'weights' / 'config.json'} (pretrained_cfg)"
    assert said["head"] == "the weights' 1000-class classifier replaced by a fresh 4-class classifier"
    final = run_dir.stage("finetune") / "final"
    args = json.loads((final / "config.json").read_text())["model_args"]
    assert args["mean"] == IMAGENET[0] and args["std"] == IMAGENET[1]  # from the weights' pretrained_cfg
    tuned = load_file(str(final / "model.safetensors"))
    # started from the saved weights: a few AdamW steps at lr 5e-5 move them by ~1e-4, a fresh init by ~1e-2
    key = "blocks.1.mlp.fc2.weight"
    assert (tuned[f"model.{key}"] - saved[key]).abs().max() < 2e-3
    assert tuned["model.pos_embed"].shape == (1, 17, 32)  # 14×14 grid resampled to 4×4 for 64 px
    run_evaluate(cfg)
    report = json.loads((run_dir.stage("evaluate") / "report.json").read_text())
    assert report["n_examples"] == 12 and 0 <= report["clean_accuracy"] <= 1
    assert report["model"]["architecture"] == "vit_tiny_patch16_224"
    md = (run_dir.stage("evaluate") / "report.md").read_text()
    assert f"std {IMAGENET[1]} (from {said['normalization_source']})" in md
    run_export(cfg)
    card = (run_dir.stage("export") / "README.md").read_text()
    assert (
        "architecture: `vit_tiny_patch16_224` (timm, inside this project's normalising wrapper `timm_any`)"
        in card
    )
    assert f"from {said['normalization_source']}) is inside the model" in card
    exported = next(p for p in run_dir.stage("export").iterdir() if p.is_dir() and "classifier" in p.name)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_timm_folder(exported)(x), load_timm_folder(final)(x))


def test_pretrain_starts_from_model_pretrained(tiny_cfg, tmp_path):
    """Robustify an existing backbone with ACL: the pretrain stage builds its backbone from model.pretrained."""
    from pipeline.export import save_timm_folder
    from pipeline.models import build_model
    from stages.pretrain import run_pretrain

    torch.manual_seed(3)
    save_timm_folder(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3), tmp_path / "start")
    start = load_file(str(tmp_path / "start" / "model.safetensors"))
    cfg = tiny_cfg(
        f"model.pretrained={tmp_path / 'start'}", "pretrain.optim.lr=1e-9", "pretrain.optim.warmup_epochs=0"
    )
    run_pretrain(cfg)
    out = RunDir.of(cfg.run).stage("pretrain")
    after = load_file(str(out / "backbone_adv" / "model.safetensors"))
    assert torch.allclose(after["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"], atol=1e-6)
