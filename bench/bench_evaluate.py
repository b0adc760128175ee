"""Benchmark of the evaluation library.

(a) overhead of ``evaluate_model`` (AutoAttack only, one chunk) over a direct ``pyautoattack`` call on the
    same model, data, seed and batch size (goal: at most 5 %), with a per-sample equality check;
(b) 2 processes × 1 thread vs 1 process × 1 thread (torchrun, gloo, accelerate), same configuration
    (goal: at least 1.8× faster, identical per-sample results);
(c) wall time and forward/backward passes per attack.

Usage::

    python bench/bench_evaluate.py                      # small CNN, 100 images, 32 px
    python bench/bench_evaluate.py --n 200 --model-factory mypkg.models:make_net --train-steps 0

The model factory is ``module:function`` returning an ``nn.Module`` that maps (N, 3, S, S) images in
[0, 1] to ``--num-classes`` logits; the default is a small CNN trained briefly on synthetic class
templates so that a fraction of the points survives APGD and the later attacks have work to do.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.evaluation import EvaluateConfig, derive_seed, evaluate_model, write_report  # noqa: E402


def small_cnn(num_classes: int = 10) -> nn.Module:
    """Two conv blocks and a linear head (~25k parameters)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, num_classes),
    )  # fmt: skip


def synthetic(n: int, size: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth per-class templates around grey plus pixel noise, in [0, 1]."""
    g = torch.Generator().manual_seed(1234)
    t = nn.functional.interpolate(torch.randn(num_classes, 3, 4, 4, generator=g), size=size, mode="bilinear")
    t = t / t.flatten(1).abs().amax(dim=1).view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return (0.5 + 0.19 * t[y] + 0.2 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1), y


def build_model(args: argparse.Namespace) -> nn.Module:
    torch.manual_seed(args.seed)  # before construction: the initial weights must be reproducible too
    model = build_model_arch(args)
    x, y = synthetic(2048, args.size, args.num_classes, seed=args.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(args.train_steps):
        idx = torch.arange(step * 128, step * 128 + 128) % x.shape[0]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    # evaluate_model freezes parameters during attacks (input gradients only); do the same for the direct
    # pyautoattack call so that (a) measures the runner, not FAB's wasted weight gradients
    return model.eval().requires_grad_(False)


def eval_config(args: argparse.Namespace, chunk_size: int) -> EvaluateConfig:
    """AutoAttack (standard) only, so that (a) compares like with like."""
    cfg = EvaluateConfig(eps=args.eps, seed=args.seed, chunk_size=chunk_size, batch_size=args.batch_size)
    cfg.pgd.steps = 0
    cfg.sweep.enabled = cfg.calibration.enabled = cfg.smoothing.enabled = False
    return cfg


def bench_overhead(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict:
    """(a) and (c): one chunk holding every point, so batching and seed equal the direct call's."""
    from pyautoattack import AutoAttack

    cfg = eval_config(args, chunk_size=x.shape[0])
    timings = {"direct": [], "ours": []}
    for _ in range(args.repeats):  # alternate, so that load changes on the machine hit both alike
        start = time.perf_counter()
        aa = AutoAttack(
            model, eps=args.eps, norm="Linf", version="standard", seed=derive_seed(args.seed, 0, "autoattack")
        )
        _, y_direct = aa.run_standard_evaluation(x, y, batch_size=args.batch_size)
        timings["direct"].append(time.perf_counter() - start)
        start = time.perf_counter()
        report = evaluate_model(model, x, y, cfg, num_classes=args.num_classes, progress=False)
        timings["ours"].append(time.perf_counter() - start)
    return {
        "timings": timings,
        "report": report,
        "identical": report.per_sample["aa_final_pred"] == y_direct.tolist(),
    }


def worker(args: argparse.Namespace) -> None:
    """(b): run inside torchrun (or alone) on the saved model and data; rank 0 writes results."""
    from accelerate import Accelerator

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    model = build_model_arch(args)
    model.load_state_dict(load_file(os.path.join(args.worker, "model.safetensors")))
    data = load_file(os.path.join(args.worker, "data.safetensors"))
    cfg = eval_config(args, chunk_size=args.chunk_size)
    work = os.path.join(args.worker, f"work{accelerator.num_processes}")
    accelerator.wait_for_everyone()
    start = time.perf_counter()
    report = evaluate_model(
        model.eval(), data["x"], data["y"], cfg, num_classes=args.num_classes, work_dir=work,
        accelerator=accelerator, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if accelerator.is_main_process:
        out = {
            "seconds": seconds,
            "per_sample": report.per_sample["aa_final_pred"],
            "robust": report.robust_accuracy,
        }
        Path(args.worker, f"result{accelerator.num_processes}.json").write_text(json.dumps(out))
    accelerator.end_training()


def build_model_arch(args: argparse.Namespace) -> nn.Module:
    if args.model_factory:
        module, fn = args.model_factory.split(":")
        return getattr(importlib.import_module(module), fn)()
    return small_cnn(args.num_classes)


def bench_processes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict:
    """(b): the same evaluation with 1 and with 2 processes, one after the other."""
    tmp = tempfile.mkdtemp(prefix="bench_eval_")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(tmp, "model.safetensors")
    )
    save_file({"x": x.contiguous(), "y": y.contiguous()}, os.path.join(tmp, "data.safetensors"))
    passthrough = list(sys.argv[1:])
    # CPU processes only: with a GPU visible, accelerate's barrier targets cuda:<local_rank>, which fails
    # on machines with fewer GPUs than processes
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    one = [sys.executable, __file__, *passthrough, "--worker", tmp]
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(args.port),
           __file__, *passthrough, "--worker", tmp]  # fmt: skip
    for cmd in (one, two):
        subprocess.run(cmd, env=env, check=True)
    r1, r2 = (json.loads(Path(tmp, f"result{k}.json").read_text()) for k in (1, 2))
    return {"one": r1["seconds"], "two": r2["seconds"], "identical": r1["per_sample"] == r2["per_sample"]}


def print_tables(a: dict | None, b: dict | None, args: argparse.Namespace) -> None:
    print(f"\n## bench_evaluate: n={args.images}, {args.size}px, eps={args.eps:.4g}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}\n")  # fmt: skip
    print("| measurement | value | goal |\n|---|---|---|")
    if a is not None:
        direct, ours = min(a["timings"]["direct"]), min(a["timings"]["ours"])
        print(f"| (a) direct pyautoattack, best of {args.repeats} | {direct:.2f} s | |")
        print(f"| (a) evaluate_model (AutoAttack only, 1 chunk), best of {args.repeats} | {ours:.2f} s | |")
        print(f"| (a) overhead | {100 * (ours / direct - 1):+.1f} % | <= 5 % |")
        print(f"| (a) per-sample identical to direct | {a['identical']} | True |")
    if b is not None:
        print(f"| (b) 1 process × 1 thread, chunks of {args.chunk_size} | {b['one']:.2f} s | |")
        print(f"| (b) 2 processes × 1 thread | {b['two']:.2f} s | |")
        print(f"| (b) speed-up | {b['one'] / b['two']:.2f}× | >= 1.8× |")
        print(f"| (b) per-sample identical | {b['identical']} | True |")
    if a is None:
        return
    r = a["report"]
    print(
        f"\nclean {100 * r.clean_accuracy:.1f} %, AutoAttack robust {100 * r.robust_accuracy['autoattack']:.1f} %\n"
    )
    print(
        "| (c) phase | seconds | forward (images) | backward (images) | first broken here |\n|---|---|---|---|---|"
    )
    secs = r.timings["compute_seconds"]
    for phase, p in r.passes.items():
        broken = r.autoattack["first_broken_by"].get(phase.split(":")[-1], "") if ":" in phase else ""
        print(f"| {phase} | {secs[phase]:.2f} | {p['forward']:,} | {p['backward']:,} | {broken} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-factory", default="", help="module:function building the model (default: small CNN)"
    )
    parser.add_argument("--images", type=int, default=100, help="evaluated images")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--batch-size", type=int, default=128, help="AutoAttack batch size")
    parser.add_argument("--chunk-size", type=int, default=25, help="chunk size for (b) (both runs)")
    parser.add_argument(
        "--train-steps", type=int, default=300, help="Adam steps on synthetic data; 0 = as built"
    )
    parser.add_argument("--repeats", type=int, default=1, help="repetitions of (a), best time reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=29517, help="torchrun master port for (b)")
    parser.add_argument("--skip-processes", action="store_true", help="skip (b)")
    parser.add_argument("--skip-overhead", action="store_true", help="skip (a) and (c)")
    parser.add_argument("--out-dir", default="", help="also write the (a) report there")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(1)  # (a) and (b) both compare single-threaded processes
    model = build_model(args)
    x, y = synthetic(args.images, args.size, args.num_classes, seed=args.seed + 7)
    a = None if args.skip_overhead else bench_overhead(model, x, y, args)
    if args.out_dir and a is not None:
        write_report(a["report"], args.out_dir)
    b = None if args.skip_processes else bench_processes(model, x, y, args)
    print_tables(a, b, args)


if __name__ == "__main__":
    main()
