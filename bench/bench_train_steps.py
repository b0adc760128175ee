"""Step time of ACL and TRADES against their pass-count floors, TRADES against the literal reference
recipe, ACL/SimCLR cost per image, images/s and peak memory. All ratios come from one run.

    python bench/bench_train_steps.py                         # CPU defaults (small model, small batch)
    python bench/bench_train_steps.py --model resnet18_cifar --batch 512 --reps 10   # on a GPU

Floors: each pass is timed alone on the same model and batch —
  ACL    floor = k × (forward + input-only backward of the 2B views, eval) + 2 × (train forward+backward of 2B)
  TRADES floor = 1 × (eval forward, no grad) + k × (forward + input-only backward) + (2 train forwards + 1 backward)
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.reference_recipes import reference_trades_step  # noqa: E402
from pipeline.attacks.pgd import AttackConfig  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.models import bn_branch, build_model, convert_to_dual_bn, has_batch_norm  # noqa: E402
from pipeline.objectives import ContrastiveModel, ContrastiveObjective, SupervisedObjective  # noqa: E402
from pipeline.objectives.heads import build_head  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def objective_step(model, opt, objective, batch, device, dtype):
    """A closure running one full training step of ``objective`` (as the Trainer does, minus accelerate)."""

    def run():
        model.train()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = objective.step(batch, None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


def bench_acl(name, b, k, reps, device, dtype):
    pcfg = load_config(None, [f"pretrain.attack.steps={k}"]).pretrain
    backbone = build_model(name, 0, (0.5,) * 3, (0.5,) * 3)
    if has_batch_norm(backbone):
        convert_to_dual_bn(backbone)
    # the reference's head (ACL proj_head: 3 layers at the backbone's width, every BN dual), as pretraining builds it
    model = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    v1, v2 = torch.rand(b, 3, 32, 32, device=device), torch.rand(b, 3, 32, 32, device=device)
    x = torch.cat([v1, v2])
    acl = ContrastiveObjective("acl", model, model, pcfg, gather=False)
    simclr = ContrastiveObjective("simclr", model, model, pcfg, gather=False)

    def step(obj):
        return objective_step(model, opt, obj, (v1, v2), device, dtype)

    def attack_pass():
        model.eval()
        xa = x.clone().requires_grad_(True)
        with bn_branch(model, "adv"), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            z = model(xa)
            loss = acl.attack_loss(z[:b], z[b:])
        torch.autograd.grad(loss, xa)
        model.train()

    def train_pass():
        model.train()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            z = model(x)
            loss = acl.loss(z[:b], z[b:])
        loss.backward()
        opt.zero_grad(set_to_none=True)

    t_attack, t_train = timeit(attack_pass, device, reps), timeit(train_pass, device, reps)
    t_acl, t_simclr = timeit(step(acl), device, reps), timeit(step(simclr), device, reps)
    floor = k * t_attack + 2 * t_train
    return {
        "acl_step_s": t_acl,
        "acl_floor_s": floor,
        "acl_vs_floor": t_acl / floor,
        "simclr_step_s": t_simclr,
        "acl_over_simclr": t_acl / t_simclr,
        "acl_images_per_s": b / t_acl,
        "attack_pass_s": t_attack,
        "train_pass_s": t_train,
    }


def bench_trades(name, b, k, reps, device, dtype):
    model = build_model(name, 10, (0.5,) * 3, (0.5,) * 3).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.rand(b, 3, 32, 32, device=device), torch.randint(0, 10, (b,), device=device)
    cfg = AttackConfig(steps=k, start="normal")
    ours = SupervisedObjective("trades", model, model, cfg, 6.0, 10)

    our_step = objective_step(model, opt, ours, (x, y), device, dtype)

    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=1e-3, momentum=0.9)

    def ref_step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            reference_trades_step(ref_model, x, y, 8 / 255, 2 / 255, k, 6.0)
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)

    def clean_eval():
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    def attack_pass():
        model.eval()
        xa = x.clone().requires_grad_(True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.kl_div(
                F.log_softmax(model(xa), 1), torch.full((b, 10), 0.1, device=device), reduction="sum"
            )
        torch.autograd.grad(loss, xa)

    def train_passes():
        model.train()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(x).sum() + model(x).sum()
        loss.backward()
        opt.zero_grad(set_to_none=True)

    floor = (
        timeit(clean_eval, device, reps)
        + k * timeit(attack_pass, device, reps)
        + timeit(train_passes, device, reps)
    )
    t_ours, t_ref = timeit(our_step, device, reps), timeit(ref_step, device, reps)
    # identical loss: the same weights, batch and start noise through both implementations
    a, r = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(5)
    a.eval()
    from pipeline.objectives import trades_attack, trades_outer_loss

    xa = trades_attack(a, x, cfg)
    a.train()
    loss_ours = trades_outer_loss(a(x), a(xa), y, 6.0)
    torch.manual_seed(5)
    loss_ref = reference_trades_step(r, x, y, 8 / 255, 2 / 255, k, 6.0)
    return {
        "trades_step_s": t_ours,
        "trades_floor_s": floor,
        "trades_vs_floor": t_ours / floor,
        "reference_step_s": t_ref,
        "speedup_vs_reference": t_ref / t_ours,
        "loss_ours": float(loss_ours),
        "loss_reference": float(loss_ref),
        "trades_images_per_s": b / t_ours,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet10_cifar_tiny,vit_micro_patch4_32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--acl-steps", type=int, default=5)
    ap.add_argument("--trades-steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.bf16 else None
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row = {
            "model": name,
            "batch": args.batch,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
        }
        row.update(bench_acl(name, args.batch, args.acl_steps, args.reps, device, dtype))
        row.update(bench_trades(name, args.batch, args.trades_steps, args.reps, device, dtype))
        row["peak_mem_mb"] = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| model | batch | ACL step / floor | ACL ÷ SimCLR | ACL img/s | TRADES step / floor | TRADES speed-up vs reference | loss ours / ref | TRADES img/s | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['acl_step_s']:.3f}s / {r['acl_floor_s']:.3f}s = {r['acl_vs_floor']:.3f}× | "
            f"{r['acl_over_simclr']:.2f}× | {r['acl_images_per_s']:.0f} | {r['trades_step_s']:.3f}s / {r['trades_floor_s']:.3f}s = "
            f"{r['trades_vs_floor']:.3f}× | {r['speedup_vs_reference']:.2f}× | {r['loss_ours']:.5f} / {r['loss_reference']:.5f} | "
            f"{r['trades_images_per_s']:.0f} | {r['peak_mem_mb']:.0f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
