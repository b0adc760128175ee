"""Turn ``cfg.data`` into shards on disk plus a description the other stages read.

For a converter (digits, imagefolder, torchvision sets) the shards are written under ``data.out_dir``
(default ``<run>/data/shards``). For ``data.dataset=shards`` nothing is written: the URLs are checked
and counted, so plugging in a new dataset is a YAML block, not code.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import DataError

from .converters import CONVERTERS
from .readers import expand_urls
from .shards import write_dataset_json, write_split


def convert(cfg, out_dir: Path, progress: bool = True) -> dict:
    """Run the converter named by ``cfg.dataset`` into ``out_dir``; returns the ``dataset.json`` content.

    The shards are written into a temporary sibling folder that replaces ``out_dir`` in one rename, so a
    killed conversion never leaves a half-written shard where a reader could find it.
    """
    from pipeline.run import atomic_dir

    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "dataset.json").is_file():
        raise DataError(f"data.out_dir={out_dir} is not empty and holds no dataset.json; choose a new folder "
                        "(conversion replaces the folder)")
    ds = CONVERTERS[cfg.dataset](cfg)
    splits = {}
    with atomic_dir(out_dir) as tmp:
        for split in ("train", "val", "test"):
            if split == "val" and cfg.val_size == 0:
                continue
            samples = tqdm(getattr(ds, split)(), desc=f"convert {split}", disable=not progress, leave=False)
            splits[split] = write_split(samples, tmp, split, cfg.image_size, cfg.shard_size, cfg.wrong_size)
            splits[split]["urls"] = splits[split]["urls"].replace(str(tmp), str(out_dir))
        write_dataset_json(tmp, cfg.dataset, ds.classes, cfg.image_size, splits)
    return json.loads((out_dir / "dataset.json").read_text())


def _count_samples(urls: list[str]) -> int:
    n = 0
    for url in urls:
        if url.startswith("pipe:"):
            return 0  # unknown without streaming it; pretrain/finetune then need samples_per_epoch
        try:
            with tarfile.open(url) as tf:
                n += sum(1 for m in tf.getmembers() if m.name.endswith(".cls"))
        except (tarfile.TarError, OSError) as exc:
            raise DataError(f"shard {url} is not a readable tar ({type(exc).__name__}); re-create it or drop it from the URL pattern") from None
    return n


def describe_shards(cfg) -> dict:
    """A ``dataset.json``-like description of shards the user converted already."""
    splits = {}
    for split, urls in (("train", cfg.train_urls), ("val", cfg.val_urls), ("test", cfg.test_urls)):
        if not urls:
            continue
        expanded = expand_urls(urls, f"data.{split}_urls")
        splits[split] = {"count": _count_samples(expanded), "urls": urls}
    return {"name": "shards", "classes": [str(i) for i in range(cfg.num_classes)],
            "num_classes": cfg.num_classes, "image_size": cfg.image_size, "splits": splits}


def _fingerprint(cfg) -> dict:
    """The data settings a converted dataset depends on (a change triggers re-conversion)."""
    keys = ("dataset", "train_source", "test_source", "out_dir", "train_urls", "val_urls", "test_urls",
            "num_classes", "image_size", "wrong_size", "val_size", "shard_size")
    # format 2: training shards are written in a fixed random order (format 1 kept the source's class order)
    return {"format": 2, **{k: getattr(cfg, k) for k in keys}}


def run_data_stage(cfg, config_yaml: str, progress: bool = True) -> dict:
    """Convert (or describe) the dataset and write the data stage's manifest; returns the manifest."""
    from pipeline.run import StageRun, read_manifest

    with StageRun(cfg, "data", config_yaml) as run:
        if cfg.data.dataset == "shards":
            info = describe_shards(cfg.data)
        else:
            out_dir = Path(cfg.data.out_dir) if cfg.data.out_dir else run.dir / "shards"
            info = convert(cfg.data, out_dir, progress)
            for split in info["splits"].values():
                split.pop("shards", None)  # the checksums live in dataset.json
            run.outputs["dataset_json"] = str(out_dir / "dataset.json")
        if info["num_classes"] != cfg.data.num_classes:
            raise DataError(f"the dataset has {info['num_classes']} classes but data.num_classes={cfg.data.num_classes}; "
                            f"set data.num_classes={info['num_classes']}")
        run.outputs.update(splits=info["splits"], classes=info["classes"], num_classes=info["num_classes"],
                           image_size=info["image_size"], fingerprint=_fingerprint(cfg.data))
    return read_manifest(cfg, "data")


def ensure_data(cfg, config_yaml: str, progress: bool = True) -> dict:
    """The data manifest for ``cfg``; runs the data stage first when it is missing, incomplete or was
    made with other data settings (``make data`` is implicit for the other stages)."""
    from pipeline.errors import UpstreamMissing
    from pipeline.run import read_manifest

    try:
        manifest = read_manifest(cfg, "data")
        if manifest["outputs"].get("fingerprint") == _fingerprint(cfg.data):
            return manifest
    except UpstreamMissing:
        pass
    return run_data_stage(cfg, config_yaml, progress)
