"""The CPU-scale CIFAR-10 experiment: does self-supervised adversarial pretraining help at equal compute?

Four arms on the 20,000-image CIFAR-10 subset in ../shared/data/cifar10 (our ImageFolder-tar converter),
ResNet-10-tiny, ε = 8/255. Compute is equalised in forward+backward passes per training image:
  ACL (PGD-3):  2 views × (3 attack + 2 training) = 10 passes/image/epoch
  SimCLR:       2 views × 1 = 2 passes/image/epoch  → 5× the ACL epochs
  TRADES (k=5): ≈ 1 + 5 + 2 forwards, 5 + 1 backwards ≈ 7 passes/image/epoch
  scratch arm:  the AFF epochs + the pretraining passes converted into TRADES epochs.

    python bench/experiment_cifar10.py            # = make experiment: 2 pretraining + 3 AFF epochs, ~80 min
Prints a markdown table (clean and PGD-20 on the full 10,000 test images, AutoAttack on a fixed subset)
and writes it with every arm's numbers to <root>/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(name: str, args: list[str], manifest: Path, redo: bool = False) -> float:
    """Run one stage unless its manifest says it completed (the experiment resumes where it stopped);
    returns the stage's own wall time from its manifest."""
    done = manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"
    if redo or not done:
        subprocess.run(
            [sys.executable, "-m", f"stages.{name}", "--config", "configs/cifar10_shared.yaml", *args],
            cwd=ROOT,
            check=True,
        )
    return float(json.loads(manifest.read_text())["wall_time_s"])


def run_arm(
    arm: str, args: list[str], settings: list[str], run_dir: Path, redo_evaluate: bool = False
) -> dict:
    """An arm's stages (pretrain unless it starts from scratch, finetune, evaluate), each skipped when its
    manifest says it completed; returns its report row, printed as it finishes."""
    times = {}
    if "finetune.init=scratch" not in settings:
        times["pretrain"] = stage("pretrain", args, run_dir / "pretrain" / "manifest.json")
    times["finetune"] = stage("finetune", args, run_dir / "finetune" / "manifest.json")
    times["evaluate"] = stage("evaluate", args, run_dir / "evaluate" / "manifest.json", redo=redo_evaluate)
    row = report_row(arm, " ".join(settings), times, run_dir / "evaluate")
    print(json.dumps(row), flush=True)
    return row


def report_row(arm: str, settings: str, times: dict, evaluate_dir: Path) -> dict:
    """One arm's numbers from its evaluation report (clean and PGD-20 on every test image, AutoAttack on the
    fixed subset), with its stages' wall times."""
    report = json.loads((evaluate_dir / "report.json").read_text())
    return {
        "arm": arm,
        "settings": settings,
        **times,
        "clean": report["clean_accuracy"],
        "pgd20": report["robust_accuracy"]["pgd"],
        "autoattack": report["robust_accuracy"]["autoattack"],
        # 95% Clopper-Pearson intervals, as the report computes them
        "clean_ci": report["clean_accuracy_ci"],
        "pgd20_ci": report["robust_accuracy_ci"]["pgd"],
        "autoattack_ci": report["robust_accuracy_ci"]["autoattack"],
        "n": report["n_examples"],
        "n_aa": (report.get("autoattack") or {}).get("n_examples"),
        "aa_subset_clean": (report.get("autoattack") or {}).get("clean_accuracy"),
        "warnings": report.get("warnings", []),
    }


def print_table(rows: list[dict], aa_examples: int) -> None:
    print(
        f"\n| arm | settings | pretrain s | finetune s | evaluate s | clean (n=10k) | PGD-20 (n=10k) | "
        f"AutoAttack (n={aa_examples}) | clean on the AA subset |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | `{r['settings']}` | {r.get('pretrain', 0):.0f} | {r['finetune']:.0f} | {r['evaluate']:.0f} | "
            f"{_pct(r, 'clean')} | {_pct(r, 'pgd20')} | {_pct(r, 'autoattack', 1)} | "
            f"{100 * (r['aa_subset_clean'] or 0):.1f}% |"
        )


def _pct(row: dict, key: str, digits: int = 2) -> str:
    """``31.56% [30.6, 32.5]``: the accuracy and its 95% interval, in percent."""
    lo, hi = row[f"{key}_ci"]
    return f"{100 * row[key]:.{digits}f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--aa-examples", type=int, default=200)
    ap.add_argument("--root", default="runs/experiment")
    ap.add_argument("--arms", default="acl,dynacl,simclr,scratch")
    ap.add_argument("--redo-evaluate", default="", help="comma-separated arms whose evaluation is re-run")
    args = ap.parse_args()
    pe, fe = args.pretrain_epochs, args.finetune_epochs
    acl_passes = 10 * pe
    scratch_epochs = fe + round(acl_passes / 7)
    common = [
        f"run.root={args.root}",
        "run.progress=false",
        f"finetune.epochs={fe}",
        f"evaluate.autoattack.n_examples={args.aa_examples}",
    ]
    arms = {
        "acl": ["pretrain.method=acl", f"pretrain.epochs={pe}"],
        "dynacl": [
            "pretrain.method=dynacl",
            f"pretrain.epochs={pe}",
            "pretrain.dynacl.strength_period_epochs=1",
        ],
        "simclr": ["pretrain.method=simclr", f"pretrain.epochs={5 * pe}"],
        "scratch": ["finetune.init=scratch", f"finetune.epochs={scratch_epochs}"],
    }
    rows = []
    for arm in args.arms.split(","):
        a = [*common, f"run.name={arm}", *arms[arm]]
        redo = arm in args.redo_evaluate.split(",")
        rows.append(run_arm(arm, a, arms[arm], ROOT / args.root / arm, redo_evaluate=redo))
        (ROOT / args.root / "results.json").write_text(json.dumps(rows, indent=1))
    print(
        f"\nhardware: {platform.processor() or platform.machine()}, 2 cores; command: "
        f"python bench/experiment_cifar10.py --pretrain-epochs {pe} --finetune-epochs {fe}"
    )
    print_table(rows, args.aa_examples)


if __name__ == "__main__":
    main()
