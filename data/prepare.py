"""Turn a :class:`DataConfig` into shards on disk plus the description (``dataset.json``) the other
stages read.

For a converter (digits, imagefolder, torchvision sets) the shards are written into the folder the caller
gives. For ``data.dataset=shards`` nothing is written: the URLs are checked and counted, so plugging in
a new dataset is a YAML block, not code. Where that folder is, and the stage manifest that records it,
are the data stage's business (``stages/data.py``).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from pipeline.errors import DataError
from pipeline.io import atomic_dir, atomic_write_json

from .config import DataConfig
from .converters import CONVERTERS, SHARDS, ConvertedDataset, describe_shards
from .shards import dataset_info, write_split

# the settings a converted dataset depends on: a change to any of them means converting again
FINGERPRINT_KEYS = ("dataset", "train_source", "test_source", "out_dir", "train_urls", "val_urls", "test_urls",
                    "num_classes", "image_size", "wrong_size", "val_size", "shard_size")
# added later: in the fingerprint only when set, so that datasets prepared before they existed stay valid
OPTIONAL_FINGERPRINT_KEYS = ("train_size",)


def prepare_dataset(cfg: DataConfig, out_dir: Path, progress: bool) -> dict:
    """The ``dataset.json`` content of ``cfg``'s dataset: a converter's shards, written into ``out_dir``;
    or, for ``dataset=shards``, a description of the user's shards (``out_dir`` is not touched)."""
    if cfg.dataset == SHARDS:
        return describe_shards(cfg, progress)
    return convert(cfg, out_dir, progress)


def convert(cfg: DataConfig, out_dir: Path, progress: bool = True) -> dict:
    """Run the converter named by ``cfg.dataset`` into ``out_dir``; returns the ``dataset.json`` content.

    The shards are written into a temporary sibling folder that replaces ``out_dir`` in one rename, so a
    killed conversion never leaves a half-written shard where a reader could find it.
    """
    if cfg.dataset == SHARDS:
        raise ValueError("data.dataset=shards has nothing to convert (its shards are read in place); call prepare_dataset()")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "dataset.json").is_file():
        raise DataError(f"data.out_dir={out_dir} is not empty and holds no dataset.json; choose a new folder "
                        "(conversion replaces the folder)")
    ds: ConvertedDataset = CONVERTERS.get(cfg.dataset, "data.dataset")(cfg)
    splits = {}
    with atomic_dir(out_dir) as tmp:
        for split in ("train", "val", "test"):
            source = getattr(ds, split)
            if source is None or (split == "val" and cfg.val_size == 0):
                continue
            samples = tqdm(source(), desc=f"convert {split}", disable=not progress, leave=False)
            splits[split] = write_split(samples, tmp, split, cfg.image_size, cfg.shard_size, cfg.wrong_size,
                                        cfg.on_bad_sample)
            # the shards are read from where the folder ends up, not from the temporary folder
            splits[split]["urls"] = splits[split]["urls"].replace(str(tmp), str(out_dir))
        info = dataset_info(cfg.dataset, ds.classes, cfg.image_size, splits)
        if ds.ignored_files:
            info["ignored_files"] = ds.ignored_files  # not images by name
        atomic_write_json(tmp / "dataset.json", info)
    return info


def data_fingerprint(cfg: DataConfig) -> dict:
    """The data settings a converted dataset depends on (a change triggers re-conversion)."""
    # format 2: training shards are written in a fixed random order (format 1 kept the source's class order)
    return {"format": 2, **{k: getattr(cfg, k) for k in FINGERPRINT_KEYS},
            **{k: getattr(cfg, k) for k in OPTIONAL_FINGERPRINT_KEYS if getattr(cfg, k)}}
