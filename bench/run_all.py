"""`make bench`: the CPU benchmarks one after another (never in parallel: they time the same cores).

Step vs pass-count floor, the evaluation runner, the quickstart's stage times, and — when
``../shared/data/cifar10`` shards exist from the CIFAR experiment — the loader. Each prints its own
markdown table; copy the numbers into BENCHMARKS.md with the command line shown.
"""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> None:
    print(f"\n$ python {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def main() -> None:
    run("bench/bench_train_steps.py", "--reps", "5")
    run("bench/bench_evaluate.py")
    run("bench/bench_quickstart.py")
    dirs = sorted(glob.glob(str(ROOT / "runs/experiment/*/data/shards")))
    if dirs:
        n = len(glob.glob(f"{dirs[0]}/train-*.tar"))
        run("bench/bench_loader.py", "--shards", f"{dirs[0]}/train-{{000000..{n - 1:06d}}}.tar")
    else:
        print("\n(loader benchmark skipped: run `make experiment` first to convert CIFAR-10 shards)")


if __name__ == "__main__":
    main()
