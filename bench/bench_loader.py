"""Loader throughput (shard read + decode + two SimCLR views) against what an ACL step consumes.

    python bench/bench_loader.py --shards 'runs/cifar10_cpu/data/shards/train-{000000..000009}.tar' --workers 0,1,2
Goal: loader images/s ≥ 3 × the ACL step's images/s (from bench_train_steps, passed as --consume).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.augment import SimCLRViews  # noqa: E402
from data.readers import expand_urls, stream_loader  # noqa: E402
from data.spec import ShardSpec  # noqa: E402


def throughput(urls, workers: int, batch: int, batches: int) -> float:
    spec = ShardSpec.of_urls(list(urls), image_size=32, num_workers=workers, shuffle_buffer=2000)
    loader = stream_loader(spec, SimCLRViews(32), batch_size=batch, seed=0, epoch=0, rank=0)
    it = iter(loader)
    next(it)  # start-up (worker spawn, buffer fill) is not throughput
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--consume", type=float, default=0.0, help="images/s an ACL step consumes (bench_train_steps)")
    args = ap.parse_args()
    urls = expand_urls(args.shards, "--shards")
    print("| workers | loader images/s | × ACL consumption |\n|---|---|---|")
    for w in map(int, args.workers.split(",")):
        ips = throughput(urls, w, args.batch, args.batches)
        ratio = f"{ips / args.consume:.1f}×" if args.consume else "n/a"
        print(f"| {w} | {ips:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
