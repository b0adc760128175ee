"""Turn a :class:`DataConfig` into shards on disk plus the description (``dataset.json``) the other
stages read.

For a converter (digits, imagefolder, torchvision sets) the shards are written into the folder the caller
gives. For ``data.dataset=shards`` nothing is written: the URLs are checked and counted, so plugging in
a new dataset is a YAML block, not code. :func:`prepare_run_data` does that for a run (shards under
``<run>/data/shards`` unless ``data.out_dir``, and the data stage's manifest); :func:`ensure_run_data` is
what every other stage calls first.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from pipeline.errors import DataError, UpstreamMissing
from pipeline.io import atomic_dir, atomic_write_json
from pipeline.progress import counted, lines_wanted
from pipeline.run import RunDir, StageRun

from .config import DataConfig
from .converters import CONVERTERS, SHARDS, ConvertedDataset, describe_shards
from .shards import dataset_info, write_split

# the settings a converted dataset depends on: a change to any of them means converting again
FINGERPRINT_KEYS = (
    "dataset",
    "train_source",
    "test_source",
    "out_dir",
    "train_urls",
    "val_urls",
    "test_urls",
    "num_classes",
    "image_size",
    "wrong_size",
    "val_size",
    "shard_size",
)
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
        raise ValueError(
            "data.dataset=shards has nothing to convert (its shards are read in place); call prepare_dataset()"
        )
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "dataset.json").is_file():
        raise DataError(
            f"data.out_dir={out_dir} is not empty and holds no dataset.json; choose a new folder "
            "(conversion replaces the folder)"
        )
    ds: ConvertedDataset = CONVERTERS.get(cfg.dataset, "data.dataset")(cfg)
    splits = {}
    with atomic_dir(out_dir) as tmp:
        for split in ("train", "val", "test"):
            source = getattr(ds, split)
            if source is None or (split == "val" and cfg.val_size == 0):
                continue
            samples = tqdm(source(), desc=f"convert {split}", disable=not progress, leave=False)
            # a log gets a line every 10 s instead (the bar's frames would be carriage returns there)
            samples = counted(
                samples, f"[data] converting {split}", ds.sizes.get(split), enabled=lines_wanted()
            )
            splits[split] = write_split(
                samples, tmp, split, cfg.image_size, cfg.shard_size, cfg.wrong_size, cfg.on_bad_sample
            )
            # the shards are read from where the folder ends up, not from the temporary folder
            splits[split]["urls"] = splits[split]["urls"].replace(str(tmp), str(out_dir))
        info = dataset_info(cfg.dataset, ds.classes, cfg.image_size, splits)
        if ds.ignored_files:
            info["ignored_files"] = ds.ignored_files  # not images by name
        atomic_write_json(tmp / "dataset.json", info)
    return info


SKIPS_NAMED = 3  # the console names this many skipped files per split; dataset.json lists up to 20


def conversion_summary(splits: dict, dataset_json: Path) -> list[str]:
    """One line per converted split: how many samples were written, which files were skipped (named, with
    where the full list is) and how many images were re-encoded, by reason:
    ``[data] train: 599 converted, 1 skipped: trip1/bad.jpg (see …/dataset.json); re-encoded: 12 resized``."""
    out = []
    for split, info in splits.items():
        line = f"[data] {split}: {info['count']:,} converted"
        skipped = info.get("skipped")
        if skipped:
            names = [f["file"] for f in skipped["files"][:SKIPS_NAMED]]
            more = skipped["count"] - len(names)
            line += f", {skipped['count']:,} skipped: {', '.join(names)}" + (
                f" and {more:,} more" if more else ""
            )
            line += f" (see {dataset_json})"
        if info.get("converted"):
            line += "; re-encoded: " + ", ".join(f"{n:,} {why}" for why, n in info["converted"].items())
        out.append(line)
    return out


def data_fingerprint(cfg: DataConfig) -> dict:
    """The data settings a converted dataset depends on (a change triggers re-conversion)."""
    # format 2: training shards are written in a fixed random order (format 1 kept the source's class order)
    return {
        "format": 2,
        **{k: getattr(cfg, k) for k in FINGERPRINT_KEYS},
        **{k: getattr(cfg, k) for k in OPTIONAL_FINGERPRINT_KEYS if getattr(cfg, k)},
    }


def prepare_run_data(d: DataConfig, run_dir: RunDir, config_yaml: str, progress: bool = True) -> dict:
    """Convert (or describe) the dataset and write the data stage's manifest; returns the manifest."""
    with StageRun(run_dir, "data", config_yaml) as run:
        out_dir = None if d.dataset == "shards" else (Path(d.out_dir) if d.out_dir else run.dir / "shards")
        info = prepare_dataset(d, out_dir, progress)
        if out_dir is not None:
            for line in conversion_summary(info["splits"], out_dir / "dataset.json"):
                print(line, flush=True)
            for split in info["splits"].values():
                split.pop("shards", None)  # the checksums live in dataset.json
            run.outputs["dataset_json"] = str(out_dir / "dataset.json")
        if info["num_classes"] and info["num_classes"] != d.num_classes:  # 0: unlabeled images
            raise DataError(
                f"the dataset has {info['num_classes']} classes but data.num_classes={d.num_classes}; "
                f"set data.num_classes={info['num_classes']}"
            )
        run.outputs.update(
            splits=info["splits"],
            classes=info["classes"],
            num_classes=info["num_classes"],
            image_size=info["image_size"],
            fingerprint=data_fingerprint(d),
        )
    return run_dir.read_manifest("data")


def ensure_run_data(d: DataConfig, run_dir: RunDir, config_yaml: str, progress: bool = True) -> dict:
    """The data manifest of the run; runs :func:`prepare_run_data` first when it is missing, incomplete or
    was made with other data settings."""
    try:
        manifest = run_dir.read_manifest("data")
        if manifest["outputs"].get("fingerprint") == data_fingerprint(d):
            return manifest
    except UpstreamMissing:
        pass
    return prepare_run_data(d, run_dir, config_yaml, progress)
