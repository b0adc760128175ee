"""FARE from a backbone pretrained here without any attack, vs ACL from the same weights (issue 23).

On the 20,000-image CIFAR-10 subset (configs/cifar10_shared.yaml), resnet10_cifar_tiny, Linf ε = 8/255 (the
threat the evaluation measures; FARE's paper trains CLIP at 2/255 and 4/255):
  simclr  SimCLR, 5 × the ACL epochs (no attack): "someone's pretrained backbone", the original f₀
  fare    FARE from simclr's backbone (model.pretrained=<its folder>): PGD-4 of 2/255 on ‖f(x+δ) − f₀(x)‖²,
          AdamW lr 1e-3, batch 128 (the reference's); 4 attack + 1 training forward+backward + 1 frozen
          forward of f₀ ≈ 5.5 passes/image/epoch
  acl     ACL from the same weights (cifar10_shared.yaml's ACL recipe): 2 views × (3 + 2) = 10 passes/image/
          epoch, so FARE runs 2 × the ACL epochs (11 vs 10 passes per image)
Each backbone then gets SLF (a clean linear head on the frozen backbone; ACL's adversarial BN branch, the
finetune default) and the standard evaluation (clean and PGD-20 on the 10,000 test images, AutoAttack on a
fixed subset). For all three, the embedding report FARE's stage writes — clean cosine to f₀ and the distance
‖f(x+δ) − f₀(x)‖₂ under FARE's 10-step PGD at ε, on the same 256 val images with the same noise — is computed
here with the same function (pipeline/objectives/fare.py:embedding_report), so ACL is measured like FARE.

    python bench/experiment_fare_cifar10.py           # 2 ACL epochs (FARE 4, SimCLR 10) + 5 SLF epochs
    python bench/paired_test.py runs/experiment_fare/fare runs/experiment_fare/acl --columns clean_pred,pgd_pred,aa_final_pred
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.experiment_cifar10 import ROOT, print_table, run_arm  # noqa: E402
from data.prepare import ensure_run_data  # noqa: E402
from data.readers import held_out_images  # noqa: E402
from pipeline.config import load_config, to_yaml  # noqa: E402
from pipeline.objectives import embedding_report  # noqa: E402
from pipeline.records import PretrainOutputs  # noqa: E402
from pipeline.run import RunDir  # noqa: E402
from stages._runtime import Stage  # noqa: E402

CONFIG = ROOT / "configs" / "cifar10_shared.yaml"


def embeddings(
    arm_args: dict[str, list[str]], folders: dict[str, Path], original: Path, seed: int = 0
) -> dict:
    """The FARE stage's embedding report for every arm's backbone against the original's, on the fare
    arm's val images (the first report_images of the split, as the stage takes them)."""
    import torch

    cfg = load_config(CONFIG, arm_args["fare"])
    run_dir = RunDir.of(cfg.run)
    data = ensure_run_data(cfg.data, run_dir, to_yaml(cfg), progress=False)
    images = held_out_images(
        Stage(None, run_dir, "", data, cfg).split("val"), cfg.pretrain.fare.report_images
    )

    def load(folder: Path):
        return load_config(CONFIG, [*arm_args["fare"], f"model.pretrained={folder}"]).model.build_with_facts(
            0
        )[0]

    f0 = load(original).eval()
    out = {}
    for arm, folder in folders.items():
        out[arm] = embedding_report(
            load(folder), f0, images, cfg.pretrain.fare, cfg.pretrain.attack,
            seed=seed, batch_size=cfg.pretrain.batch_size, device=torch.device("cpu"),
        )  # fmt: skip
        out[arm]["backbone"] = str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain-epochs", type=int, default=2, help="in ACL epochs (FARE 2×, SimCLR 5×)")
    ap.add_argument("--finetune-epochs", type=int, default=5, help="SLF epochs")
    ap.add_argument("--aa-examples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="runs/experiment_fare")
    ap.add_argument(
        "overrides", nargs="*", help="key=value for every arm (a smoke run: pretrain.samples_per_epoch=512)"
    )
    args = ap.parse_args()
    pe, fe = args.pretrain_epochs, args.finetune_epochs
    root = ROOT / args.root
    original = Path(args.root) / "simclr" / "pretrain" / "backbone"  # the stages run in ROOT
    common = [
        f"run.root={args.root}",
        "run.progress=false",
        f"run.num_threads={args.threads}",
        "finetune.protocol=slf",
        f"finetune.epochs={fe}",
        f"evaluate.autoattack.n_examples={args.aa_examples}",
    ]
    arms = {
        "simclr": ["pretrain.method=simclr", f"pretrain.epochs={5 * pe}"],
        "fare": [
            f"model.pretrained={original}",
            "pretrain.method=fare",
            f"pretrain.epochs={2 * pe}",
            "pretrain.batch_size=128",  # the reference's (RobustVLM --batch_size 128); the ACL recipe's is 256
            "pretrain.attack.steps=4",
            "pretrain.attack.step_size=2/255",
            "pretrain.optim.name=adamw",
            "pretrain.optim.lr=0.001",
            "pretrain.optim.weight_decay=0.0001",
            f"pretrain.optim.warmup_epochs={0.2 * pe}",
        ],
        "acl": [f"model.pretrained={original}", "pretrain.method=acl", f"pretrain.epochs={pe}"],
    }
    arm_args = {
        arm: [*common, f"run.name={arm}", *settings, *args.overrides] for arm, settings in arms.items()
    }
    rows = [run_arm(arm, arm_args[arm], arms[arm], root / arm) for arm in arms]
    # the folder each SLF started from: the adversarial BN branch where there are two (finetune.bn_branch)
    backbones = {arm: PretrainOutputs.read(RunDir(str(root), arm), "pretrain")[0].backbones for arm in arms}
    folders = {
        arm: root / arm / "pretrain" / b.get("adv", next(iter(b.values()))) for arm, b in backbones.items()
    }
    report = embeddings(arm_args, folders, ROOT / original)
    for r in rows:
        r["embedding"] = report[r["arm"]]
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    print(
        f"\nhardware: {platform.processor() or platform.machine()}, {args.threads} threads; command: python "
        f"bench/experiment_fare_cifar10.py --pretrain-epochs {pe} --finetune-epochs {fe} --threads {args.threads}"
    )
    print_table(rows, args.aa_examples)
    print("\n| arm | clean cosine to f₀ | distance under attack | × the original's |")
    print("|---|---|---|---|")
    for r in rows:
        e = r["embedding"]
        print(
            f"| {r['arm']} | {e['after']['clean_cosine']:.4f} | {e['before']['adversarial_distance']:.4g} → "
            f"{e['after']['adversarial_distance']:.4g} | {e['distance_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
