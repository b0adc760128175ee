"""DynACL vs DynACL + RCS at (about) equal pretraining cost, then the same AFF and evaluation (issue 16).

    python bench/rcs_compare.py                     # the quickstart's digits, ~20 min on 2 CPU cores
    python bench/rcs_compare.py --preset cifar10    # 6,000 CIFAR-10 images, ~35 min with both arms in parallel

The cifar10 preset reads the first three 2,000-image training shards, the validation shard and the five test
shards that `configs/cifar10_shared.yaml`'s data stage writes from ../shared/data/cifar10 (copied to
<root>/shards; pass --shards DIR to point at them) and runs the two arms side by side, one thread each:
  dynacl      8 epochs on the whole 6,000 images (strength steps every 2 epochs: 1, .75, .5, .25);
  dynacl_rcs  2 warm-up epochs, then coreset epochs at fraction 0.2 with a selection every 4 epochs (epochs
              5, 9, 13), 16 epochs in all (strength steps every 4: the same schedule) — about 2 + 14 × 0.2 +
              3 selections ≈ 7.5 full epochs of passes if a selection costs 0.9 of an epoch.

Arms (the quickstart config; DynACL without the momentum encoder, as DynACL_RCS.py):
  dynacl      6 epochs on the whole set;
  dynacl_rcs  3 full warm-up epochs, then coreset epochs at fraction 0.2 with a selection every 3 epochs,
              10 epochs in all — about the same passes: 3 + 7 × 0.2 coreset epochs + 3 selections (each
              about 0.75 of a full epoch on this model, bench/bench_rcs.py).
Both then fine-tune with the quickstart's AFF (TRADES) and are evaluated on every test digit (clean, PGD-20,
standard AutoAttack, 95% intervals). Prints a markdown table; every number is also in <root>/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "digits": (
        "configs/quickstart.yaml",
        {
            "dynacl": ["pretrain.epochs=6"],
            "dynacl_rcs": [
                "pretrain.epochs=10",
                "pretrain.rcs.fraction=0.2",
                "pretrain.rcs.warmup_epochs=3",
                "pretrain.rcs.period=3",
            ],
        },
        [
            "pretrain.dynacl.strength_period_epochs=2",
            "evaluate.n_examples=0",
            "evaluate.batch_size=128",
            "evaluate.chunk_size=128",
        ],
    ),
    "cifar10": (
        "configs/cifar10_shared.yaml",
        {
            "dynacl": ["pretrain.epochs=8", "pretrain.dynacl.strength_period_epochs=2"],
            "dynacl_rcs": [
                "pretrain.epochs=16",
                "pretrain.dynacl.strength_period_epochs=4",
                "pretrain.rcs.fraction=0.2",
                "pretrain.rcs.warmup_epochs=2",
                "pretrain.rcs.period=4",
            ],
        },
        ["finetune.epochs=3", "evaluate.n_examples=2000", "evaluate.autoattack.n_examples=100"],
    ),
}


def cifar_data(shards: Path) -> list[str]:
    n = sum(1 for _ in shards.glob("train-*.tar")) * 2000
    return [
        "data.dataset=shards",
        f"data.train_urls={shards}/train-{{000000..00000{n // 2000 - 1}}}.tar",
        f"data.val_urls={shards}/val-000000.tar",
        f"data.test_urls={shards}/test-{{000000..000004}}.tar",
        f"data.train_size={n}",
    ]


def stage(name: str, args: list[str], manifest: Path) -> float:
    if not (manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"):
        subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=ROOT, check=True)
    return float(json.loads(manifest.read_text())["wall_time_s"])


def arm_row(arm: str, extra: list[str], common: list[str], run_dir: Path) -> dict:
    a = [*common, f"run.name={arm}", *extra]
    times = {s: stage(s, a, run_dir / s / "manifest.json") for s in ("pretrain", "finetune", "evaluate")}
    pre = json.loads((run_dir / "pretrain" / "manifest.json").read_text())["outputs"]
    steps = [json.loads(line) for line in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if m.get("kind") == "step"]
    sel = [
        json.loads(p.read_text()) for p in sorted((run_dir / "pretrain" / "coreset").glob("selection_*.json"))
    ]
    r = json.loads((run_dir / "evaluate" / "report.json").read_text())
    ci = r.get("robust_accuracy_ci") or {}
    return {
        "arm": arm,
        "settings": " ".join(extra),
        **times,
        "steps": pre["steps"],
        "forward_passes": sum(m.get("forward_passes", 0) for m in steps),
        "backward_passes": sum(m.get("backward_passes", 0) for m in steps),
        "selections": len(sel),
        "selection_s": sum(s["seconds"] for s in sel),
        "n": r["n_examples"],
        "clean": r["clean_accuracy"],
        "clean_ci": r.get("clean_accuracy_ci"),
        "pgd20": r["robust_accuracy"]["pgd"],
        "pgd20_ci": ci.get("pgd"),
        "autoattack": r["robust_accuracy"]["autoattack"],
        "autoattack_ci": ci.get("autoattack"),
        "autoattack_n": (r.get("autoattack") or {}).get("n_examples", r["n_examples"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    ap.add_argument("--root", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default="dynacl,dynacl_rcs")
    ap.add_argument(
        "--shards", default="", help="cifar10: folder with train-00000{0..2}, val-000000, test-* shards"
    )
    ap.add_argument("--parallel", action="store_true", help="run the arms side by side (one process each)")
    args = ap.parse_args()
    config, arms, preset_common = PRESETS[args.preset]
    root = args.root or f"runs/rcs_compare{'' if args.preset == 'digits' else '_' + args.preset}"
    common = [
        "--config",
        config,
        f"run.root={root}",
        "run.progress=false",
        f"run.num_threads={args.threads}",
        "pretrain.method=dynacl",
        "pretrain.dynacl.momentum=0",
        *preset_common,
    ]
    if args.preset == "cifar10":
        common += cifar_data(Path(args.shards or ROOT / root / "shards").resolve())
    names = args.arms.split(",")
    if args.parallel:  # each arm in its own process; the rows are read back from the finished runs
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--preset",
                    args.preset,
                    "--root",
                    root,
                    "--arms",
                    arm,
                    "--threads",
                    str(args.threads),
                    *(["--shards", args.shards] if args.shards else []),
                ]
            )
            for arm in names
        ]
        if any(p.wait() for p in procs):
            sys.exit("an arm failed; see its output above")
    rows = [arm_row(arm, arms[arm], common, ROOT / root / arm) for arm in names]
    for r in rows:
        print(json.dumps(r), flush=True)
    (ROOT / root / f"results_{'_'.join(names)}.json").write_text(json.dumps(rows, indent=1))

    def cell(v, ci):
        return f"{100 * v:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * v:.1f}%"

    print(
        "\n| arm | settings | pretrain s (of which selection) | steps | fwd / bwd passes in steps | clean | PGD-20 | "
        "AutoAttack | n (AA n) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | `{r['settings']}` | {r['pretrain']:.0f} ({r['selection_s']:.0f}) | {r['steps']} | "
            f"{r['forward_passes']:,} / {r['backward_passes']:,} | "
            f"{cell(r['clean'], r['clean_ci'])} | {cell(r['pgd20'], r['pgd20_ci'])} | "
            f"{cell(r['autoattack'], r['autoattack_ci'])} | {r['n']} ({r['autoattack_n']}) |"
        )


if __name__ == "__main__":
    main()
