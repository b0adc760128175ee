"""SLF / ALF / AFF on a CNN and a ViT, best-epoch selection, and finetune's bad inputs."""

import json

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from pipeline.attacks.pgd import AttackConfig
from pipeline.errors import DataError, UsageError
from pipeline.export import load_timm_folder, save_timm_folder
from pipeline.models import build_model
from pipeline.run import RunDir
from pipeline.train.selection import validation_accuracy
from stages.finetune import run_finetune


@pytest.mark.parametrize("model_name", ["resnet10_cifar_tiny", "vit_micro_patch4_32", "timm:resnet10t"])
def test_protocols_freeze_or_train_the_backbone(tiny_cfg, tmp_path, model_name):
    init = build_model(model_name, 0, (0.5,) * 3, (0.5,) * 3)
    save_timm_folder(init, tmp_path / "init")
    before = load_file(str(tmp_path / "init" / "model.safetensors"))
    for protocol in ("slf", "alf", "aff"):
        cfg = tiny_cfg(
            f"run.name={protocol}",
            "data.image_size=32",  # the size build_model made the folder at (a ViT's pos_embed follows it)
            f"model.name={model_name}",
            f"finetune.protocol={protocol}",
            f"finetune.init=local-dir:{tmp_path / 'init'}",
        )
        outputs = run_finetune(cfg)
        assert outputs["objective"] == {"slf": "ce", "alf": "pgd_at", "aff": "trades"}[protocol]
        after = load_file(str(RunDir.of(cfg.run).stage("finetune") / "final" / "model.safetensors"))
        head = load_timm_folder(RunDir.of(cfg.run).stage("finetune") / "final").get_classifier()
        head_keys = {k for k in after if "." in k and k.split(".")[-2] in ("fc", "head")}
        assert head_keys and head.weight.shape[0] == 4
        body = [k for k in before if k not in head_keys]
        same = all(torch.equal(before[k], after[k]) for k in body)
        assert same == (protocol != "aff"), protocol  # bit-identical when frozen, changed when not


def test_a_vit_folder_of_another_image_size_is_a_one_line_error(tiny_cfg, tmp_path):
    save_timm_folder(
        build_model("vit_micro_patch4_32", 0, (0.5,) * 3, (0.5,) * 3), tmp_path / "init"
    )  # 32 px
    cfg = tiny_cfg("model.name=vit_micro_patch4_32", f"finetune.init=local-dir:{tmp_path / 'init'}")  # 16 px
    with pytest.raises(UsageError, match=r"pos_embed .* set data.image_size"):
        run_finetune(cfg)


def test_best_checkpoint_is_the_best_validation_robust_epoch(tiny_cfg):
    cfg = tiny_cfg("finetune.init=scratch", "finetune.epochs=3", "finetune.optim.lr=0.2")
    outputs = run_finetune(cfg)
    d = RunDir.of(cfg.run).stage("finetune")
    epochs = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    scores = [r["val_robust_acc"] for r in epochs]
    assert outputs["best_epoch"] == scores.index(max(scores)) + 1
    assert outputs["best_val_robust_acc"] == max(scores)
    # re-scoring the saved best model reproduces its recorded score (seeded validation attack)
    from data.readers import load_labeled
    from data.spec import ShardSpec

    x, y, _ = load_labeled(ShardSpec.of_urls(cfg.data.val_urls, image_size=32, split="val"), num_classes=4)
    attack = AttackConfig(
        eps=cfg.finetune.attack.eps,
        step_size=cfg.finetune.attack.step_size,
        steps=cfg.finetune.val_attack_steps,
        start="uniform",
    )
    again = validation_accuracy(
        load_timm_folder(d / "best"), x, y, attack, Accelerator(cpu=True), 64, cfg.run.seed
    )
    assert again["val_robust_acc"] == pytest.approx(max(scores))


def test_init_folder_of_another_architecture_is_refused(tiny_cfg, tmp_path):
    save_timm_folder(build_model("vit_micro_patch4_32", 0, (0.5,) * 3, (0.5,) * 3), tmp_path / "vit")
    cfg = tiny_cfg(f"finetune.init=local-dir:{tmp_path / 'vit'}")
    with pytest.raises(
        UsageError, match="holds a 'vit_micro_patch4_32' but model.name='resnet10_cifar_tiny'"
    ):
        run_finetune(cfg)


def test_head_with_wrong_number_of_classes_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg("finetune.init=scratch")
    run_finetune(cfg)
    bad = tiny_cfg(
        "run.name=other",
        "data.num_classes=7",
        "evaluate.model=local-dir:" + str(RunDir.of(cfg.run).stage("finetune") / "best"),
    )
    from stages.evaluate import run_evaluate

    with pytest.raises(UsageError, match="4 classes but data.num_classes=7|num_classes"):
        run_evaluate(bad)


def test_labels_out_of_range_are_refused(tiny_cfg):
    cfg = tiny_cfg("finetune.init=scratch", "data.num_classes=3")
    with pytest.raises(DataError, match="data.num_classes"):
        run_finetune(cfg)
