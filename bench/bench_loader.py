"""Loader throughput: SimCLR two-view batches per second from shards, exact epochs (indexed random access,
the default) against the resampled stream, by worker count. Ratios within one run (the machine is noisy).

    python bench/bench_loader.py --shards 'runs/x/data/shards/train-{000000..000009}.tar' --workers 0,2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.augment import SimCLRViews  # noqa: E402
from data.epochs import exact_loader, index_shards  # noqa: E402
from data.readers import expand_urls, stream_loader  # noqa: E402
from data.spec import ShardSpec  # noqa: E402


def throughput(urls, workers: int, batch: int, batches: int, sampling: str = "resampled") -> float:
    """Source images per second (each gives two views), after the first batch (start-up, buffer fill)."""
    spec = ShardSpec.of_urls(
        list(urls), image_size=32, num_workers=workers, shuffle_buffer=2000, sampling=sampling
    )
    if sampling == "exact":
        loader = exact_loader(
            index_shards(spec),
            spec,
            SimCLRViews(32),
            global_batch=batch,
            world=1,
            rank=0,
            seed=0,
            epoch=0,
            drop_last=True,
        )
    else:
        loader = stream_loader(spec, SimCLRViews(32), batch_size=batch, seed=0, epoch=0, rank=0)
    it = iter(loader)
    next(it)
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
    ap.add_argument(
        "--consume", type=float, default=0.0, help="images/s an ACL step consumes (bench_train_steps)"
    )
    args = ap.parse_args()
    urls = expand_urls(args.shards, "--shards")
    t = time.perf_counter()
    n = len(index_shards(ShardSpec.of_urls(urls, image_size=32)))
    print(f"index: {n} samples in {len(urls)} shards, {time.perf_counter() - t:.2f} s (tar headers only)\n")
    print("| workers | exact images/s | resampled images/s | exact ÷ resampled | × ACL consumption (exact) |")
    print("|---|---|---|---|---|")
    for w in map(int, args.workers.split(",")):
        exact = throughput(urls, w, args.batch, args.batches, "exact")
        stream = throughput(urls, w, args.batch, args.batches, "resampled")
        ratio = f"{exact / args.consume:.1f}×" if args.consume else "n/a"
        print(f"| {w} | {exact:.0f} | {stream:.0f} | {exact / stream:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
