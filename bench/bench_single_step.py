"""Per-step cost of single-step adversarial training (issue 16, part 2): the FGSM-RS and N-FGSM fine-tuning
steps vs the TRADES PGD-10 step, and ACL with a single-step attack vs ACL with PGD-5.

    python bench/bench_single_step.py --threads 2                       # CPU, the quickstart model
    python bench/bench_single_step.py --models resnet18_cifar --batch 256 --reps 10   # on a GPU

The steps under comparison are timed interleaved (A B C A B C …) so that load from other processes on a
shared machine falls on all of them alike; each number is the median over ``--reps``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_train_steps import objective_step, sync  # noqa: E402
from pipeline.attacks import AttackConfig  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.models import build_model, convert_to_dual_bn, has_batch_norm  # noqa: E402
from pipeline.objectives import ContrastiveModel, ContrastiveObjective, SupervisedObjective  # noqa: E402
from pipeline.objectives.heads import build_head  # noqa: E402


def interleaved(fns: dict, device, reps: int) -> dict:
    """Median seconds of each closure, timed in turn, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def finetune_steps(name, b, reps, device, dtype):
    model = build_model(name, 10, (0.5,) * 3, (0.5,) * 3).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.rand(b, 3, 32, 32, device=device), torch.randint(0, 10, (b,), device=device)
    attack = AttackConfig(steps=10, start="")  # the fine-tuning default: TRADES PGD-10, step 2/255
    steps = {
        obj: objective_step(
            model, opt, SupervisedObjective(obj, model, model, attack, 6.0, 10), (x, y), device, dtype
        )
        for obj in ("trades", "fgsm_rs", "nfgsm")
    }
    t = interleaved(steps, device, reps)
    return {
        "trades_pgd10_s": t["trades"],
        "fgsm_rs_s": t["fgsm_rs"],
        "nfgsm_s": t["nfgsm"],
        "trades_over_fgsm_rs": t["trades"] / t["fgsm_rs"],
        "trades_over_nfgsm": t["trades"] / t["nfgsm"],
    }


def acl_steps(name, b, reps, device, dtype):
    backbone = build_model(name, 0, (0.5,) * 3, (0.5,) * 3)
    if has_batch_norm(backbone):
        convert_to_dual_bn(backbone)
    model = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    views = (torch.rand(b, 3, 32, 32, device=device), torch.rand(b, 3, 32, 32, device=device))
    cfgs = {
        "pgd5": ["pretrain.attack.steps=5"],
        "fgsm_rs": ["pretrain.attack.name=fgsm_rs", "pretrain.attack.steps=1"],
        "nfgsm": ["pretrain.attack.name=nfgsm", "pretrain.attack.steps=1"],
    }
    steps = {
        k: objective_step(
            model,
            opt,
            ContrastiveObjective("acl", model, model, load_config(None, o).pretrain, gather=False),
            views,
            device,
            dtype,
        )
        for k, o in cfgs.items()
    }
    t = interleaved(steps, device, reps)
    return {
        "acl_pgd5_s": t["pgd5"],
        "acl_fgsm_rs_s": t["fgsm_rs"],
        "acl_nfgsm_s": t["nfgsm"],
        "acl_pgd5_over_fgsm_rs": t["pgd5"] / t["fgsm_rs"],
        "acl_pgd5_over_nfgsm": t["pgd5"] / t["nfgsm"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet10_cifar_tiny")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.bf16 else None
    print(
        "| model | batch | threads | TRADES PGD-10 | FGSM-RS | N-FGSM | TRADES ÷ FGSM-RS | TRADES ÷ N-FGSM | "
        "ACL PGD-5 | ACL FGSM-RS | ACL N-FGSM | ACL PGD-5 ÷ FGSM-RS | ACL PGD-5 ÷ N-FGSM |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        r = {
            **finetune_steps(name, args.batch, args.reps, device, dtype),
            **acl_steps(name, args.batch, args.reps, device, dtype),
        }
        print(json.dumps({"model": name, **r}), file=sys.stderr, flush=True)
        print(
            f"| {name} | {args.batch} | {torch.get_num_threads()} | {r['trades_pgd10_s']:.3f} s | {r['fgsm_rs_s']:.3f} s | "
            f"{r['nfgsm_s']:.3f} s | **{r['trades_over_fgsm_rs']:.2f}×** | **{r['trades_over_nfgsm']:.2f}×** | "
            f"{r['acl_pgd5_s']:.3f} s | {r['acl_fgsm_rs_s']:.3f} s | {r['acl_nfgsm_s']:.3f} s | "
            f"**{r['acl_pgd5_over_fgsm_rs']:.2f}×** | **{r['acl_pgd5_over_nfgsm']:.2f}×** |",
            flush=True,
        )


if __name__ == "__main__":
    main()
