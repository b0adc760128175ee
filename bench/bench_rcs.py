"""RCS's cost per epoch, amortised over one selection period, against a full ACL epoch (issue 16).

    python bench/bench_rcs.py                                   # CPU: quickstart model, 2,560 images
    python bench/bench_rcs.py --model resnet18_cifar --n 10240 --batch 512   # a GPU

One run measures, on the same model and synthetic images at the reference's proportions (candidate batch =
training batch, validation = 1% of the set, ``int(fraction·N / batch)`` picks):
  t_step       one ACL training step (PGD-k on both views, then the clean + adversarial update);
  t_select     one whole selection: every candidate batch attacked and scored, then the greedy picks (each
               re-attacks the validation images and re-computes their gradient);
  full epoch   = N/B · t_step;  coreset epoch = ⌊fraction·N/B⌋ · t_step;
  amortised    = (t_select + period · coreset epoch) / period  — ACL_RCS.py selects once per period.
The ratio full / amortised is the saving per epoch after warm-up (goal >= 3.5x at fraction 0.2).
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
from pipeline.config import load_config  # noqa: E402
from pipeline.models import build_model, convert_to_dual_bn, has_batch_norm  # noqa: E402
from pipeline.objectives import ContrastiveModel, ContrastiveObjective  # noqa: E402
from pipeline.objectives.heads import build_head  # noqa: E402
from pipeline.objectives.rcs import CoresetSelector, RCSConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet10_cifar_tiny")
    ap.add_argument(
        "--n", type=int, default=3232, help="training images (synthetic; 3232 = 25 candidates + 1%% val)"
    )
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="PGD steps of the pretraining attack (reference 5)")
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--period", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    pcfg = load_config(None, [f"pretrain.attack.steps={args.steps}", "pretrain.method=acl"]).pretrain
    backbone = build_model(args.model, 0, (0.5,) * 3, (0.5,) * 3)
    if has_batch_norm(backbone):
        convert_to_dual_bn(backbone)
    model = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    b = args.batch
    v1, v2 = torch.rand(b, 3, 32, 32, device=device), torch.rand(b, 3, 32, 32, device=device)
    step = objective_step(
        model, opt, ContrastiveObjective("acl", model, model, pcfg, gather=False), (v1, v2), device, None
    )
    step()  # warm-up
    times = []
    for _ in range(args.reps):
        sync(device)
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    t_step = statistics.median(times)

    n_cand = args.n // b
    n_val = max(1, round(0.01 * args.n))
    n_pick = int(args.fraction * (args.n - n_val)) // b
    selector = CoresetSelector(
        model.backbone, model.head, pcfg.attack, RCSConfig(fraction=args.fraction), 0.5
    )
    val = torch.rand(n_val, 3, 32, 32, device=device)
    sync(device)
    t0 = time.perf_counter()
    grads = [selector.gradients(torch.rand_like(v1), torch.rand_like(v2)) for _ in range(n_cand)]
    sync(device)
    t_score = time.perf_counter() - t0
    picked = selector.select_from(grads, val, n_pick)
    sync(device)
    t_select = time.perf_counter() - t0
    full = n_cand * t_step
    coreset = n_pick * t_step
    amortised = (t_select + args.period * coreset) / args.period
    out = {
        "model": args.model,
        "device": str(device),
        "threads": args.threads,
        "n": args.n,
        "batch": b,
        "pgd_steps": args.steps,
        "fraction": args.fraction,
        "period": args.period,
        "candidates": n_cand,
        "picks": len(picked),
        "val_images": n_val,
        "t_step_s": round(t_step, 4),
        "selection_s": round(t_select, 2),
        "selection_scoring_s": round(t_score, 2),
        "selection_vs_full_epoch": round(t_select / full, 3),
        "full_epoch_s": round(full, 2),
        "coreset_epoch_s": round(coreset, 2),
        "amortised_epoch_s": round(amortised, 2),
        "saving_full_over_amortised": round(full / amortised, 2),
    }
    print(json.dumps(out))
    print(
        "\n| model | N / batch | fraction, period | ACL step | selection pass (vs full epoch) | full epoch | "
        "amortised RCS epoch | saving |\n|---|---|---|---|---|---|---|---|"
    )
    print(
        f"| {args.model} | {args.n} / {b} | {args.fraction}, {args.period} | {t_step:.3f} s | {t_select:.1f} s "
        f"({t_select / full:.2f}×) | {full:.1f} s | {amortised:.1f} s | **{full / amortised:.2f}×** |"
    )


if __name__ == "__main__":
    main()
