"""DynACL vs DynACL + RCS at (about) equal pretraining cost, then the same AFF and evaluation (issue 16).

    python bench/rcs_compare.py                     # the quickstart's digits, ~20 min on 2 CPU cores

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
ARMS = {
    "dynacl": ["pretrain.epochs=6"],
    "dynacl_rcs": ["pretrain.epochs=10", "pretrain.rcs.fraction=0.2", "pretrain.rcs.warmup_epochs=3",
                   "pretrain.rcs.period=3"],
}


def stage(name: str, args: list[str], manifest: Path) -> float:
    if not (manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"):
        subprocess.run([sys.executable, "-m", f"stages.{name}", "--config", "configs/quickstart.yaml", *args],
                       cwd=ROOT, check=True)
    return float(json.loads(manifest.read_text())["wall_time_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="runs/rcs_compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default=",".join(ARMS))
    args = ap.parse_args()
    common = [f"run.root={args.root}", "run.progress=false", f"run.num_threads={args.threads}",
              "pretrain.method=dynacl", "pretrain.dynacl.momentum=0", "pretrain.dynacl.strength_period_epochs=2",
              "evaluate.n_examples=0", "evaluate.batch_size=128", "evaluate.chunk_size=128"]
    rows = []
    for arm in args.arms.split(","):
        extra = ARMS[arm]
        a = [*common, f"run.name={arm}", *extra]
        run_dir = ROOT / args.root / arm
        times = {s: stage(s, a, run_dir / s / "manifest.json") for s in ("pretrain", "finetune", "evaluate")}
        pre = json.loads((run_dir / "pretrain" / "manifest.json").read_text())["outputs"]
        sel = [json.loads(p.read_text()) for p in sorted((run_dir / "pretrain" / "coreset").glob("selection_*.json"))]
        r = json.loads((run_dir / "evaluate" / "report.json").read_text())
        ci = r.get("robust_accuracy_ci") or {}
        rows.append({"arm": arm, "settings": " ".join(extra), **times, "steps": pre["steps"],
                     "selection_s": sum(s["seconds"] for s in sel), "n": r["n_examples"],
                     "clean": r["clean_accuracy"], "clean_ci": r.get("clean_accuracy_ci"),
                     "pgd20": r["robust_accuracy"]["pgd"], "pgd20_ci": ci.get("pgd"),
                     "autoattack": r["robust_accuracy"]["autoattack"], "autoattack_ci": ci.get("autoattack")})
        print(json.dumps(rows[-1]), flush=True)
        (ROOT / args.root / "results.json").write_text(json.dumps(rows, indent=1))

    def cell(v, ci):
        return f"{100 * v:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * v:.1f}%"
    print("\n| arm | settings | pretrain s (of which selection) | steps | clean | PGD-20 | AutoAttack | n |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | `{r['settings']}` | {r['pretrain']:.0f} ({r['selection_s']:.0f}) | {r['steps']} | "
              f"{cell(r['clean'], r['clean_ci'])} | {cell(r['pgd20'], r['pgd20_ci'])} | "
              f"{cell(r['autoattack'], r['autoattack_ci'])} | {r['n']} |")


if __name__ == "__main__":
    main()
