"""How long a config mistake and ``--help`` take to answer: the command line's torch-free check (issue 25)
against the path that imports torch first, in one run on the same machine.

    python bench/bench_cli_startup.py            # 5 runs of each command, medians

``python -m stages <stage> …`` (what ``robustpretrain`` and the make targets run) checks the YAML and the
``key=value`` items against the cached key table before it imports anything heavy; ``python -m stages.<stage> …``
imports the stage module — torch, timm, accelerate — before it parses a single argument, which is how every
config mistake was answered before. The key cache is warmed first, as any earlier ``--help`` leaves it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "config mistake (pretrain.epoch=1)": ["--config", "configs/quickstart.yaml", "pretrain.epoch=1"],
    "--help": ["--help"],
}


def seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seconds([sys.executable, "-m", "stages", "pretrain", "--help"])  # warm the key cache
    print(
        "| command | torch first (`-m stages.pretrain`) | torch-free check (`-m stages pretrain`) | ratio |"
    )
    print("|---|---|---|---|")
    for name, argv in CASES.items():
        before = statistics.median(
            seconds([sys.executable, "-m", "stages.pretrain", *argv]) for _ in range(args.repeats)
        )
        after = statistics.median(
            seconds([sys.executable, "-m", "stages", "pretrain", *argv]) for _ in range(args.repeats)
        )
        print(f"| {name} | {before:.2f} s | {after:.2f} s | {before / after:.1f}× |")


if __name__ == "__main__":
    main()
