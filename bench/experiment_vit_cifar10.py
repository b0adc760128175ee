"""Robust ViTs at CPU scale: MIMIR → AFF vs ACL → AFF vs TRADES from scratch, at equal passes (issue 23).

Three arms on the 20,000-image CIFAR-10 subset (configs/cifar10_shared.yaml), vit_micro_patch4_32 (width 64,
depth 4, 64 tokens), ε = 8/255, the same AdamW fine-tune for every arm. Compute is equalised in
forward+backward passes per training image, as in bench/experiment_cifar10.py:
  ACL (PGD-3):     2 views × (3 attack + 2 training) = 10 passes/image/epoch
  MIMIR (its 1-step attack of 10/255 from uniform noise): 1 attack + 1 training = 2 passes/image/epoch
                   → 5× the ACL epochs. A MIMIR pass runs the encoder on 25% of the patches and the decoder
                   (2 blocks, scaled to 64 wide: 8 heads of 8, the reference's head width) on all of them:
                   ≈ 0.75 of an encoder pass in FLOPs; the wall times say what it costs here.
  TRADES (k=5):    ≈ 7 passes/image/epoch; the scratch arm gets the AFF epochs + the pretraining passes / 7.
Why AdamW everywhere (not cifar10_shared.yaml's SGD): ViTs need it (configs/cifar10_vit_small_gpu.yaml); the
same lr, warm-up and decay for both pretraining arms, and one fine-tuning recipe for all three.

    python bench/experiment_vit_cifar10.py            # 2 ACL-epoch equivalents + 3 AFF epochs
    python bench/paired_test.py runs/experiment_vit/mimir runs/experiment_vit/acl --columns clean_pred,pgd_pred,aa_final_pred
Prints a markdown table and writes every arm's numbers to <root>/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.experiment_cifar10 import ROOT, print_table, run_arm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain-epochs", type=int, default=2, help="in ACL epochs (MIMIR runs 5×)")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--aa-examples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="runs/experiment_vit")
    ap.add_argument("--arms", default="mimir,acl,scratch")
    ap.add_argument(
        "overrides", nargs="*", help="key=value for every arm (a smoke run: pretrain.samples_per_epoch=512)"
    )
    args = ap.parse_args()
    pe, fe = args.pretrain_epochs, args.finetune_epochs
    adamw = [
        "optim.name=adamw",
        "optim.lr=0.001",
        "optim.weight_decay=0.05",
        "optim.decay_norm_and_bias=false",
    ]
    common = [
        f"run.root={args.root}",
        "run.progress=false",
        f"run.num_threads={args.threads}",
        "model.name=vit_micro_patch4_32",
        *(f"pretrain.{o}" for o in adamw),
        *(f"finetune.{o}" for o in adamw),
        "finetune.optim.warmup_epochs=0.3",
        f"evaluate.autoattack.n_examples={args.aa_examples}",
    ]
    arms = {
        "mimir": [
            "pretrain.method=mimir",
            f"pretrain.epochs={5 * pe}",
            "pretrain.attack.steps=1",  # MIMIR's attack (configs/cifar10_mimir_vit_tiny_gpu.yaml)
            "pretrain.attack.step_size=10/255",
            "pretrain.attack.start=uniform",
            "pretrain.optim.betas=[0.9,0.95]",
            # the decoder scaled with the encoder: the reference's (128 wide, 16 heads of 8) is for ViT-T
            # (192 wide); at vit_micro's width 64 it would cost more than the encoder it trains
            "pretrain.mimir.decoder_dim=64",
            "pretrain.mimir.decoder_heads=8",
            f"pretrain.optim.warmup_epochs={0.5 * pe}",  # a tenth of the epochs, as for ACL
            f"finetune.epochs={fe}",
        ],
        "acl": [
            "pretrain.method=acl",
            f"pretrain.epochs={pe}",
            f"pretrain.optim.warmup_epochs={0.1 * pe}",
            f"finetune.epochs={fe}",
        ],
        "scratch": ["finetune.init=scratch", f"finetune.epochs={fe + round(10 * pe / 7)}"],
    }
    rows = []
    for arm in args.arms.split(","):
        a = [*common, f"run.name={arm}", *arms[arm], *args.overrides]
        rows.append(run_arm(arm, a, arms[arm], ROOT / args.root / arm))
        (ROOT / args.root / "results.json").write_text(json.dumps(rows, indent=1))
    print(
        f"\nhardware: {platform.processor() or platform.machine()}, {args.threads} threads; command: python "
        f"bench/experiment_vit_cifar10.py --pretrain-epochs {pe} --finetune-epochs {fe} --threads {args.threads}"
    )
    print_table(rows, args.aa_examples)


if __name__ == "__main__":
    main()
