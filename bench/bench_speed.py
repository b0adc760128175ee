"""Faster passes (issue 16, part 3): ACL and TRADES step time with channels_last, torch.compile and bf16
autocast against the fp32 eager step, and PGD-20 evaluation in bf16 against fp32 (time and agreement).

    python bench/bench_speed.py                                    # steps: quickstart model and ResNet-18
    python bench/bench_speed.py --part eval --model-dir runs/air_compare/dynacl/finetune/best \\
        --test-urls 'runs/air_compare/dynacl/data/shards/test-{000000..000004}.tar' --n 1000

Steps: every variant runs the same objective step (ACL PGD-5 with dual BN, TRADES PGD-10) on the same
batch; the variants are timed in turns (one step of each, ``--reps`` rounds; medians) so that load on a
shared machine hits them alike; compile time (the first steps, until every graph is built) is reported
apart. Eval: the evaluate stage's PGD-20 on a trained model, fp32 then ``evaluate.precision=bf16``: seconds,
robust accuracy and the number of test points whose verdict differs.
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
from pipeline.attacks.pgd import AttackConfig  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.models import ModelConfig, convert_to_dual_bn, has_batch_norm  # noqa: E402
from pipeline.models.speed import speed_up  # noqa: E402
from pipeline.objectives import ContrastiveModel, ContrastiveObjective, SupervisedObjective  # noqa: E402
from pipeline.objectives.heads import build_head  # noqa: E402

VARIANTS = {  # name: (channels_last, compile, bf16)
    "eager fp32": (False, False, False),
    "channels_last": (True, False, False),
    "compile": (False, True, False),
    "compile + channels_last": (True, True, False),
    "bf16": (False, False, True),
    "bf16 + channels_last": (True, False, True),
    "bf16 + compile": (False, True, True),
}


def make_step(kind: str, name: str, batch: int, variant: tuple, device):
    """A closure running one training step (forward, attack, backward, SGD) of ``kind`` on fixed data."""
    channels_last, compile, bf16 = variant
    torch.manual_seed(0)
    if kind == "acl":
        backbone = ModelConfig(name=name).build(0)
        if has_batch_norm(backbone):
            convert_to_dual_bn(backbone)
        model = ContrastiveModel(backbone, build_head("acl", backbone.num_features, dual_bn=True))
        cfg = load_config(None, ["pretrain.attack.steps=5"]).pretrain
        objective = ContrastiveObjective("acl", model, model, cfg, gather=False)
        g = torch.Generator().manual_seed(1)
        data = (torch.rand(batch, 3, 32, 32, generator=g), torch.rand(batch, 3, 32, 32, generator=g))
    else:
        model = ModelConfig(name=name).build(10)
        objective = SupervisedObjective("trades", model, model, AttackConfig(steps=10), 6.0, 10)
        g = torch.Generator().manual_seed(1)
        data = (torch.rand(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
    model = speed_up(model.to(device), device, channels_last=channels_last, compile=compile)
    data = tuple(t.to(device) for t in data)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = objective.step(data, None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def bench_steps(args, device) -> list[dict]:
    rows = []
    names = [v.strip() for v in args.variants.split(",")] if args.variants else list(VARIANTS)
    for name, batch in zip(args.models.split(","), [int(b) for b in args.batches.split(",")], strict=True):
        for kind in ("acl", "trades"):
            torch._dynamo.reset()  # each group compiles afresh: earlier groups' cache entries would count
            steps, first = {}, {}
            for v in names:
                steps[v] = make_step(kind, name, batch, VARIANTS[v], device)
                t = time.perf_counter()
                for _ in range(2):  # the first step builds every graph (train/eval, both BN branches)
                    steps[v]()
                first[v] = time.perf_counter() - t
            times = {v: [] for v in names}
            for _ in range(args.reps):
                for v in names:
                    t = time.perf_counter()
                    steps[v]()
                    times[v].append(time.perf_counter() - t)
            base = statistics.median(times[names[0]])
            for v in names:
                med = statistics.median(times[v])
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "step": kind,
                        "variant": v,
                        "step_s": med,
                        "speedup": base / med,
                        "first_two_steps_s": first[v],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| model | batch | step | variant | step s (median) | vs eager fp32 | first 2 steps s (compile) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['step']} | {r['variant']} | {r['step_s']:.3f} | "
            f"{r['speedup']:.2f}× | {r['first_two_steps_s']:.1f} |"
        )
    return rows


def bench_eval(args, device) -> list[dict]:
    from data.spec import ShardSpec
    from pipeline.evaluation import EvaluateConfig, evaluate_model
    from pipeline.evaluation.test_split import load_test_split
    from pipeline.export import load_timm_folder

    model = load_timm_folder(Path(args.model_dir)).to(device).eval()
    x, y, _order, _ = load_test_split(
        ShardSpec.of_urls(args.test_urls, image_size=32, split="test", wrong_size="error"), args.n, 10
    )
    rows, preds = [], {}
    for precision in ("fp32", "bf16"):
        cfg = EvaluateConfig(
            n_examples=args.n, batch_size=250, chunk_size=args.n, eps=8 / 255, precision=precision
        )
        cfg.autoattack.enabled = cfg.sweep.enabled = cfg.calibration.enabled = cfg.masking_checks = False
        t = time.perf_counter()
        report = evaluate_model(model, x.float().div(255.0), y, cfg, num_classes=10)
        seconds = time.perf_counter() - t
        preds[precision] = torch.tensor(report.per_sample["pgd_pred"])
        rows.append(
            {
                "precision": precision,
                "n": args.n,
                "seconds": seconds,
                "clean": report.clean_accuracy,
                "pgd20": report.robust_accuracy["pgd"],
            }
        )
    y_ = y[: args.n]
    differ = int(((preds["fp32"] == y_) != (preds["bf16"] == y_)).sum())
    for r in rows:
        r["verdicts_differing"] = differ
        print(json.dumps(r), flush=True)
    print(
        f"\nPGD-20 fp32 {rows[0]['seconds']:.1f} s, bf16 {rows[1]['seconds']:.1f} s "
        f"({rows[0]['seconds'] / rows[1]['seconds']:.2f}×); robust {rows[0]['pgd20']:.2%} vs {rows[1]['pgd20']:.2%}; "
        f"{differ} of {args.n} verdicts differ"
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("steps", "eval"), default="steps")
    ap.add_argument("--models", default="resnet10_cifar_tiny,resnet18_cifar")
    ap.add_argument("--batches", default="64,32")
    ap.add_argument("--variants", default="", help="comma-separated names of VARIANTS (first = the baseline)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--model-dir", default="")
    ap.add_argument("--test-urls", default="")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = bench_steps(args, device) if args.part == "steps" else bench_eval(args, device)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
