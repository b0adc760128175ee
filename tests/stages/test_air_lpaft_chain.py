"""DynACL-AIR++ by config alone through pretrain → finetune → evaluate on tiny shards (AIR regularisers, then
DynACL++'s post-processing inside the pretrain stage; slow: ~40 s of training and a tiny AutoAttack), the
post-processing alone (fast), and the four recipes' method settings."""

import json

import pytest
import torch

from pipeline.config import load_config
from pipeline.export import load_timm_folder
from pipeline.run import RunDir
from stages.evaluate import run_evaluate
from stages.finetune import run_finetune
from stages.pretrain import run_pretrain

TINY_LPAFT = [
    "pretrain.lpaft.enabled=true",
    "pretrain.lpaft.clusters=4",
    "pretrain.lpaft.attack.steps=2",
    "pretrain.lpaft.probe.epochs=1",
    "pretrain.lpaft.probe.batch_size=32",
    "pretrain.lpaft.trades.epochs=1",
    "pretrain.lpaft.trades.batch_size=32",
]


@pytest.mark.slow
def test_dynacl_air_pp_chain(tiny_cfg):
    cfg = tiny_cfg(
        "pretrain.method=dynacl_air",
        "pretrain.dynacl.momentum=0",
        "pretrain.clean_weight=1",
        "pretrain.adv_weight=1",
        *TINY_LPAFT,
    )
    outputs = run_pretrain(cfg)
    run_dir = RunDir.of(cfg.run)
    pre = run_dir.stage("pretrain")
    steps = [json.loads(line) for line in (pre / "metrics.jsonl").read_text().splitlines()]
    assert all({"loss_sir", "loss_air"} <= set(r) for r in steps if r["kind"] == "step")  # the AIR terms ran
    lp = outputs["lpaft"]
    assert lp["images"] == 64 and sum(lp["cluster_sizes"]) == 64 and len(lp["cluster_sizes"]) == 4
    assert lp["probe"]["steps"] == 2 and lp["trades"]["steps"] == 2 and lp["trades"]["objective"] == "trades"
    for phase in ("probe", "trades"):
        assert (
            json.loads((run_dir.stage(f"pretrain_lpaft_{phase}") / "manifest.json").read_text())["status"]
            == "complete"
        )
    # the stage's backbone is the post-processed one: both branches saved, the clean one untouched by LP-AFT
    # (every LP-AFT forward goes through the adversarial branch), so its BN statistics differ from the adv one
    clean, adv = (load_timm_folder(pre / f"backbone_{b}").state_dict() for b in ("clean", "adv"))
    assert any(not torch.equal(clean[k], adv[k]) for k in clean if "running_mean" in k)
    run_finetune(cfg)
    report = run_evaluate(cfg)
    assert json.loads((run_dir.stage("evaluate") / "manifest.json").read_text())["status"] == "complete"
    assert report is not None


def test_post_process_trains_both_phases_and_returns_a_backbone(tmp_path):
    from accelerate import Accelerator

    from pipeline.models import build_model, convert_to_dual_bn
    from pipeline.train import TrainingContext
    from pipeline.train.lpaft import post_process

    cfg = load_config(None, TINY_LPAFT).pretrain.lpaft
    torch.manual_seed(0)
    backbone = convert_to_dual_bn(build_model("resnet10_cifar_tiny", 0, (0.5,) * 3, (0.5,) * 3))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    images = torch.randint(
        0, 256, (64, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    run_dir = RunDir(str(tmp_path), "t")
    ctx = TrainingContext(Accelerator(cpu=True), run_dir, "", seed=0, progress=False)
    out, summary = post_process(cfg, ctx, backbone, images, folder="pretrain", base_settings={})
    assert (
        summary["probe"]["steps"] == summary["trades"]["steps"] == 2
        and "pseudo_label_matched_accuracy" not in summary
    )
    assert all(
        torch.equal(before[k], v) for k, v in backbone.state_dict().items()
    )  # the input is not modified
    moved = out.state_dict()
    assert not torch.equal(moved["conv1.weight"], before["conv1.weight"])  # TRADES trained the whole network
    clean = [k for k in moved if ".clean." in k]
    assert clean and all(
        torch.equal(moved[k], before[k]) for k in clean
    )  # only the adversarial branch was used
    assert out is not backbone and out.eval()(images[:2].float() / 255).shape == (
        2,
        backbone.num_features,
    )  # pooled


@pytest.mark.parametrize(
    "name, method, air, lpaft, momentum",
    [
        ("acl_air", "acl_air", True, False, None),
        ("dynacl_air", "dynacl_air", True, False, 0.0),
        ("dynacl_pp", "dynacl", False, True, 0.99),
        ("dynacl_air_pp", "dynacl_air", True, True, 0.0),
    ],
)
def test_recipes_choose_the_method_by_config_alone(name, method, air, lpaft, momentum):
    from pipeline.objectives import pretrain_method

    p = load_config(f"configs/cifar10_{name}_gpu.yaml").pretrain
    built = pretrain_method(p, p.epochs)
    assert p.method == method and built.air == air and p.lpaft.enabled == lpaft
    if momentum is not None:
        assert built.momentum == momentum
    if air:  # AIR.py: nat·(1 − w) + adv·(1 + w), so both base weights are 1 (ACL's are ½)
        assert (p.clean_weight, p.adv_weight, p.air.lambda1, p.air.lambda2) == (1.0, 1.0, 0.5, 0.5)


def test_training_images_read_labeled_and_unlabeled_shards_alike(tmp_path):
    """DynACL++ clusters every training image once, in shard order; unlabeled shards (no .cls) work too."""
    from data.shards import RawSample, write_split
    from data.spec import ShardSpec
    from pipeline.train.lpaft import training_images
    from tests.conftest import make_images  # by path: several test folders have a conftest module

    samples = make_images(40, seed=0)
    labeled = ShardSpec.of_urls(
        write_split(samples, tmp_path / "l", "train", 32, shard_size=16)["urls"], image_size=32
    )
    bare = [RawSample(label=None, array=s.array) for s in samples]
    unlabeled = ShardSpec.of_urls(
        write_split(bare, tmp_path / "u", "train", 32, shard_size=16)["urls"], image_size=32, labeled=False
    )
    x, y = training_images(labeled, 4)
    x_bare, none = training_images(unlabeled, 4)
    assert x.shape == (40, 3, 32, 32) and x.dtype == torch.uint8 and y is not None and none is None
    assert torch.equal(x, x_bare)  # the same images in the same order, with or without labels
