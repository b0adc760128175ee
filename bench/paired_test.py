"""Exact McNemar test between two evaluated runs on the same test images (their per_sample.csv files).

    python bench/paired_test.py runs/experiment/acl runs/experiment/scratch            # clean and PGD-20
    python bench/paired_test.py RUN_A RUN_B --columns aa_final_pred                    # the AutoAttack subset

Each run is a run directory (or its evaluate/ folder). Only images both runs evaluated with a prediction in the
column are paired; the test is scipy's two-sided exact binomial test on the discordant images.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from scipy.stats import binomtest


def correct(run: Path, column: str) -> dict[int, bool]:
    """Per test-split index: was the prediction in ``column`` right (rows without one are left out)."""
    folder = run / "evaluate" if (run / "evaluate").is_dir() else run
    with open(folder / "per_sample.csv", newline="") as f:
        return {int(r["index"]): r[column] == r["label"] for r in csv.DictReader(f) if r[column] != ""}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--columns", default="clean_pred,pgd_pred")
    args = ap.parse_args()
    for column in args.columns.split(","):
        a, b = correct(args.a, column), correct(args.b, column)
        shared = sorted(a.keys() & b.keys())
        only_a = sum(a[i] and not b[i] for i in shared)
        only_b = sum(b[i] and not a[i] for i in shared)
        p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
        diff = 100 * (only_a - only_b) / len(shared)
        print(
            f"{column}: {args.a.name} − {args.b.name} = {diff:+.2f} points on {len(shared)} paired images "
            f"({only_a} vs {only_b} discordant, exact McNemar p = {p:.2g})"
        )


if __name__ == "__main__":
    main()
