"""Unlabeled user shards (issue 11): the data stage's start-up cost of counting the training split, and the
streaming reader's SimCLR two-view throughput against what one ACL step consumes. Ratios from one run.

    python bench/bench_unlabeled.py                  # 1,000 shards × 8 random 32×32 PNGs in a temp dir
Goals: start-up in seconds with a shard index or a converter's dataset.json; reader ≥ 3 × ACL consumption.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_loader import throughput  # noqa: E402
from bench.bench_train_steps import objective_step, timeit  # noqa: E402
from data.config import DataConfig  # noqa: E402
from data.index import count_split, write_index  # noqa: E402
from data.prepare import prepare_dataset  # noqa: E402
from data.readers import expand_urls  # noqa: E402
from data.shards import RawSample, write_split  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.models import build_model, convert_to_dual_bn, has_batch_norm  # noqa: E402
from pipeline.objectives import ContrastiveModel, ContrastiveObjective  # noqa: E402
from pipeline.objectives.heads import build_head  # noqa: E402

CONFIG = "configs/quickstart.yaml"  # the ACL recipe whose step we compare with (model, PGD steps, heads)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def wall(cmd: list[str], reps: int, expect: str = "") -> float:
    """Median wall time of a fresh process: what a user waits for, Python + torch import included."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - t)
        assert expect in out, out  # the stage really counted the split
    return statistics.median(times)


def make_shards(tmp: Path, n_shards: int, per_shard: int) -> tuple[str, str]:
    """The same random images twice: as user shards (write_split, no dataset.json, like shards made
    elsewhere) and through the `images` converter (which writes dataset.json). Returns both brace patterns."""
    arrays = np.random.default_rng(0).integers(0, 256, (n_shards * per_shard, 32, 32, 3), dtype=np.uint8)
    pile = tmp / "pngs"
    pile.mkdir()
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(pile / f"{i:05d}.png")
    write_split((RawSample(label=None, array=a) for a in arrays), tmp / "user", "train", 32, per_shard)
    prepare_dataset(
        DataConfig(dataset="images", train_source=str(pile), shard_size=per_shard, on_bad_sample="skip"),
        tmp / "converted",
        False,
    )
    last = f"{n_shards - 1:06d}"
    return (
        str(tmp / "user" / f"train-{{000000..{last}}}.tar"),
        str(tmp / "converted" / f"train-{{000000..{last}}}.tar"),
    )


def acl_images_per_s(batch: int, reps: int) -> tuple[float, str]:
    """Images/s one ACL training step consumes (the quickstart's model and attack, built as stages.pretrain does)."""
    cfg = load_config(ROOT / CONFIG)
    p = cfg.pretrain
    backbone = build_model(cfg.model.name, 0, cfg.model.mean, cfg.model.std)
    if p.dual_bn and has_batch_norm(backbone):
        convert_to_dual_bn(backbone)
    head = build_head("acl", backbone.num_features, p.proj_hidden_dim, p.proj_dim, dual_bn=p.dual_bn)
    model = ContrastiveModel(backbone, head)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    views = (torch.rand(batch, 3, 32, 32), torch.rand(batch, 3, 32, 32))
    acl = ContrastiveObjective("acl", model, model, p, gather=False)
    step = objective_step(model, opt, acl, views, torch.device("cpu"), None)
    return batch / timeit(step, torch.device("cpu"), reps), f"{cfg.model.name}, PGD-{p.attack.steps}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=1000)
    ap.add_argument("--per-shard", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    n = args.shards * args.per_shard
    tmp = Path(tempfile.mkdtemp(prefix="bench_unlabeled_"))
    rows = []  # (measurement, value, note)
    try:
        (user, converted), t = timed(lambda: make_shards(tmp, args.shards, args.per_shard))
        rows.append(
            (
                f"generate {n:,} PNGs, write them as shards twice (write_split; images converter)",
                f"{t:.1f} s",
                "",
            )
        )
        urls, conv_urls = expand_urls(user, "user"), expand_urls(converted, "converted")

        # (a) no index, no dataset.json: every shard is streamed once (files are in the page cache: a warm scan)
        c, t = timed(lambda: count_split(urls, "error", False))
        assert c.count == n and c.sources == {"scan": args.shards}, c
        rows.append(("count_split, scan", f"{t:.2f} s", f"{c.sources}"))
        # the same through the real CLI, for the end-to-end comparison with (d)
        cli = [
            sys.executable,
            "-m",
            "stages.data",
            "--config",
            CONFIG,
            f"run.root={tmp / 'runs'}",
            "data.dataset=shards",
            f"data.train_urls={user}",
            "run.progress=false",
        ]
        said = f"{n:6d} samples"  # the stage's own report line
        t = wall([*cli, "run.name=scan"], 1, said)
        rows.append(("`python -m stages.data` wall, scan", f"{t:.2f} s", "1 run"))

        # (b) `make index` once, then every start-up reads shards.index.json
        _, t = timed(lambda: write_index(urls, "error", False))
        rows.append(("write_index (once per shard set)", f"{t:.2f} s", ""))
        c, t = timed(lambda: count_split(urls, "error", False))
        assert c.count == n and c.sources == {"index": args.shards}, c
        rows.append(("count_split, index", f"{t * 1000:.1f} ms", f"{c.sources}"))

        # (c) a converter's split: one dataset.json read, no shard is touched
        c, t = timed(lambda: count_split(conv_urls, "error", False))
        assert c.count == n and c.sources == {"dataset.json": args.shards}, c
        rows.append(("count_split, dataset.json", f"{t * 1000:.1f} ms", f"{c.sources}"))

        # (d) what a user waits for: the whole data stage in a fresh process, vs the import floor
        t_cli = statistics.median(wall([*cli, f"run.name=b{i}"], 1, said) for i in range(args.reps))
        t_imp = wall([sys.executable, "-c", "import stages.data"], args.reps)
        rows.append(("`python -m stages.data` wall, index", f"{t_cli:.2f} s", f"median of {args.reps}"))
        rows.append(
            ("`python -c 'import stages.data'` wall (floor)", f"{t_imp:.2f} s", f"median of {args.reps}")
        )

        # reader vs consumer, back to back in this process (ratios, not absolute numbers, are comparable)
        consume, recipe = acl_images_per_s(args.batch, args.reps)
        rows.append((f"ACL step consumption ({recipe}, batch {args.batch})", f"{consume:.0f} img/s", ""))
        for w in map(int, args.workers.split(",")):
            ips = throughput(urls, w, args.batch, args.batches)
            rows.append(
                (
                    f"reader, SimCLR two views, batch {args.batch}, num_workers={w}",
                    f"{ips:.0f} img/s",
                    f"{ips / consume:.1f}× ACL consumption",
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{args.shards:,} unlabeled shards × {args.per_shard} images, {os.cpu_count()} CPUs, torch {torch.__version__}\n"
    )
    print("| measurement | value | note |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
