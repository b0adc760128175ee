"""Wall time of `make pretrain finetune evaluate` on the quickstart (after setup), per stage.

python bench/bench_quickstart.py            # a fresh run directory under bench/out/
python bench/bench_quickstart.py data.image_size=16   # key=value overrides, as ARGS= of make
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    root = ROOT / "bench" / "out" / "quickstart_runs"
    shutil.rmtree(root, ignore_errors=True)
    args = [f"run.root={root}", "run.name=bench", "run.progress=false", *sys.argv[1:]]  # extra overrides
    t0 = time.time()
    for stage in ("pretrain", "finetune", "evaluate"):
        subprocess.run(
            [sys.executable, "-m", f"stages.{stage}", "--config", "configs/quickstart.yaml", *args],
            cwd=ROOT,
            check=True,
        )
    total = time.time() - t0
    rows = []
    for stage in ("data", "pretrain", "finetune", "evaluate"):
        m = json.loads((root / "bench" / stage / "manifest.json").read_text())
        rows.append((stage, m["wall_time_s"]))
    report = json.loads((root / "bench" / "evaluate" / "report.json").read_text())
    print("\n| stage | wall time (s) |\n|---|---|")
    for stage, t in rows:
        print(f"| {stage} | {t:.1f} |")
    print(f"| **total, 3 commands incl. start-up** | **{total:.1f}** |")
    ra = report["robust_accuracy"]
    print(
        f"\nquickstart report: n={report['n_examples']} clean={report['clean_accuracy']:.3f} "
        f"pgd={ra['pgd']:.3f} autoattack={ra['autoattack']:.3f}"
    )


if __name__ == "__main__":
    main()
