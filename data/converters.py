"""Dataset converters: one function per source kind, registered by name, each returning the classes and
three iterables of :class:`RawSample` (train, val, test). ``prepare.py`` writes them as shards.

``data.dataset`` is checked against this one registry. Its last entry, ``shards``, is not a converter but
a *describer*: the user's own shards are counted where they are and nothing is written, so it returns
the ``dataset.json``-like description itself instead of samples to write.

The validation split is held out of the *training* source (``data.val_size`` images, chosen by a fixed
permutation), so model selection never touches the test split.
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import DataError, UsageError
from pipeline.registry import Registry

from .index import count_split
from .readers import expand_urls
from .shards import RawSample, dataset_info

if TYPE_CHECKING:  # type only: the config checks its dataset name against CONVERTERS (data/config.py)
    from .config import DataConfig

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
SPLIT_SEED = 12345  # fixed: the train/val/test split must not move with run.seed


@dataclass
class ConvertedDataset:
    classes: list[str]
    train: Callable[[], Iterator[RawSample]]
    val: Callable[[], Iterator[RawSample]] | None  # None: the source has no such split (unlabeled images)
    test: Callable[[], Iterator[RawSample]] | None
    ignored_files: int = 0  # files in the source that are not images by name
    sizes: dict[str, int] = field(default_factory=dict)  # samples per split, for the progress lines' ETA


SHARDS = "shards"  # the describer's name: shards the user converted already

# name -> converter (returns samples to write) or, for SHARDS, describer (returns the description)
CONVERTERS: Registry[Callable[[DataConfig], ConvertedDataset | dict]] = Registry("dataset")


def _holdout(n: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices) from a fixed permutation. The train indices stay *permuted*: sources
    are usually ordered by class (ImageFolder), and the streaming reader only shuffles within a buffer of
    a few thousand samples, so class-ordered shards would give one-class batches (and a model that learns
    nothing). Shards written in a fixed random order are what webdataset expects."""
    if val_size >= n:
        raise UsageError(
            f"data.val_size={val_size} leaves no training images (the source has {n}); use a smaller value"
        )
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[val_size:], np.sort(perm[:val_size])


def _sizes(train: np.ndarray, val: np.ndarray, test: np.ndarray) -> dict[str, int]:
    return {"train": len(train), "val": len(val), "test": len(test)}


def _from_arrays(
    images: np.ndarray, labels: np.ndarray, idx: np.ndarray
) -> Callable[[], Iterator[RawSample]]:
    return lambda: (RawSample(label=int(labels[i]), array=images[i]) for i in idx)


@CONVERTERS.register("digits")
def digits(cfg: DataConfig) -> ConvertedDataset:
    """scikit-learn's 1,797 real handwritten digits (shipped inside the package, no download),
    8×8 grey levels 0–16 upsampled to ``data.image_size`` RGB. Fixed 70/30 train/test split."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    size = cfg.image_size
    grey = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # (1797, 8, 8)
    up = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.BILINEAR)) for g in grey])
    rgb = np.repeat(up[..., None], 3, axis=-1)  # (N, size, size, 3)
    labels = bunch.target.astype(np.int64)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = int(round(0.3 * len(labels)))
    test_idx, rest = np.sort(perm[:n_test]), perm[n_test:]
    train_local, val_local = _holdout(len(rest), cfg.val_size)
    train_idx, val_idx = rest[train_local], np.sort(rest[val_local])
    return ConvertedDataset(
        [str(i) for i in range(10)],
        _from_arrays(rgb, labels, train_idx),
        _from_arrays(rgb, labels, val_idx),
        _from_arrays(rgb, labels, test_idx),
        sizes=_sizes(train_idx, val_idx, test_idx),
    )


class _FileSource:
    """Files in a directory (searched recursively) or inside a tar, read by relative name."""

    def __init__(self, path: str, key: str, what: str):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise UsageError(f"{key}={path!r} does not exist; point it at {what}")
        self.is_tar = self.path.is_file()
        if self.is_tar and not tarfile.is_tarfile(self.path):
            raise DataError(f"{key}={path!r} is a file but not a tar archive; give a directory or a .tar")
        self.members: dict[str, tarfile.TarInfo] = {}
        if self.is_tar:
            with tarfile.open(self.path) as tf:
                # kept by name: tarfile's own lookup by name is a linear scan, and samples are read in
                # permuted order
                self.members = {m.name: m for m in tf.getmembers() if m.isfile()}
            self.files = list(self.members)
        else:
            self.files = [str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file()]

    def read(self, names: Iterator[str]) -> Iterator[tuple[str, bytes, str]]:
        """(name, bytes, extension) of each file, in the order given; the tar stays open while reading."""
        tf = tarfile.open(self.path) if self.is_tar else None
        try:
            for name in names:
                data = tf.extractfile(self.members[name]).read() if tf else (self.path / name).read_bytes()
                yield name, data, Path(name).suffix.lower().lstrip(".").replace("jpeg", "jpg")
        finally:
            if tf:
                tf.close()


class _ImageFolderSource(_FileSource):
    """An ImageFolder layout (``.../<class>/<image>``) in a directory or in a tar of one."""

    def __init__(self, path: str, key: str):
        super().__init__(path, key, "an ImageFolder directory or a .tar of one")
        self.items = sorted(
            (n, Path(n).parent.name)
            for n in self.files
            if n.lower().endswith(IMAGE_EXTS) and "/" in n.strip("/")
        )
        if not self.items:
            raise DataError(f"{key}={path!r} holds no images in <class>/<image> folders; check the layout")

    def classes(self) -> list[str]:
        return sorted({c for _, c in self.items})

    def samples(self, idx: np.ndarray, class_index: dict[str, int], key: str) -> Iterator[RawSample]:
        items = [self.items[i] for i in idx]
        unknown = sorted({cls for _, cls in items} - set(class_index))
        if unknown:
            raise DataError(
                f"{key}: class folder {unknown[0]!r} does not exist in the training source; "
                "the test split must use the training split's classes"
            )
        for (_, cls), (_, data, ext) in zip(items, self.read(name for name, _ in items), strict=True):
            yield RawSample(label=class_index[cls], data=data, ext=ext)


@CONVERTERS.register("imagefolder")
def imagefolder(cfg: DataConfig) -> ConvertedDataset:
    """Any ImageFolder directory or tar of one (e.g. ``../shared/data/cifar10/train.tar``); class
    labels are the sorted class-folder names."""
    train_src = _ImageFolderSource(cfg.train_source, "data.train_source")
    test_src = _ImageFolderSource(cfg.test_source, "data.test_source")
    classes = train_src.classes()
    index = {c: i for i, c in enumerate(classes)}
    train_idx, val_idx = _holdout(len(train_src.items), cfg.val_size)
    all_test = np.arange(len(test_src.items))
    return ConvertedDataset(
        classes,
        lambda: train_src.samples(train_idx, index, "data.train_source"),
        lambda: train_src.samples(val_idx, index, "data.train_source"),
        lambda: test_src.samples(all_test, index, "data.test_source"),
        sizes=_sizes(train_idx, val_idx, all_test),
    )


def _torchvision(name: str, cfg: DataConfig) -> ConvertedDataset:
    import torchvision.datasets as tvd

    root = Path(cfg.download_root).expanduser() / name
    builders = {
        "cifar10": lambda train: tvd.CIFAR10(root, train=train, download=True),
        "cifar100": lambda train: tvd.CIFAR100(root, train=train, download=True),
        "svhn": lambda train: tvd.SVHN(root, split="train" if train else "test", download=True),
        "stl10": lambda train: tvd.STL10(root, split="train" if train else "test", download=True),
    }
    try:
        train, test = builders[name](True), builders[name](False)
    except Exception as exc:  # offline: URLError / OSError / RuntimeError depending on the dataset
        raise DataError(
            f"could not download {name} to {root} ({type(exc).__name__}: {str(exc)[:80]}); "
            "connect to the internet, or convert a local copy with data.dataset=imagefolder"
        ) from None

    def arrays(ds):
        data = np.asarray(ds.data)
        if data.ndim == 4 and data.shape[1] == 3:  # SVHN / STL10 store (N, C, H, W)
            data = data.transpose(0, 2, 3, 1)
        labels = np.asarray(getattr(ds, "targets", None) if hasattr(ds, "targets") else ds.labels)
        return np.ascontiguousarray(data), labels

    (x_tr, y_tr), (x_te, y_te) = arrays(train), arrays(test)
    classes = list(getattr(train, "classes", [str(i) for i in range(int(y_tr.max()) + 1)]))
    train_idx, val_idx = _holdout(len(y_tr), cfg.val_size)
    return ConvertedDataset(
        classes,
        _from_arrays(x_tr, y_tr, train_idx),
        _from_arrays(x_tr, y_tr, val_idx),
        _from_arrays(x_te, y_te, np.arange(len(y_te))),
        sizes=_sizes(train_idx, val_idx, y_te),
    )


for _name in ("cifar10", "cifar100", "stl10", "svhn"):
    CONVERTERS.add(_name, functools.partial(_torchvision, _name))


@CONVERTERS.register("images")
def images(cfg: DataConfig) -> ConvertedDataset:
    """A pile of unlabeled images: a directory (searched recursively) or a tar, any layout, any common
    format and size. Written as one shuffled, unlabeled training split (no val/test: nothing to select
    or evaluate on without labels); files that are not images by name are counted and ignored."""
    source = _ImagePile(cfg.train_source, "data.train_source")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(source.names))  # shards in a fixed random order
    return ConvertedDataset(
        [],
        lambda: source.samples(order),
        None,
        None,
        ignored_files=source.ignored,
        sizes={"train": len(order)},
    )


class _ImagePile(_FileSource):
    """Image files anywhere under a directory or inside a tar."""

    def __init__(self, path: str, key: str):
        super().__init__(path, key, "a directory of images or a .tar of them")
        self.names = sorted(n for n in self.files if n.lower().endswith(IMAGE_EXTS))
        self.ignored = len(self.files) - len(self.names)
        if not self.names:
            raise DataError(f"{key}={path!r} holds no image files ({', '.join(IMAGE_EXTS)}); check the path")

    def samples(self, order: np.ndarray) -> Iterator[RawSample]:
        for name, data, ext in self.read(self.names[i] for i in order):
            yield RawSample(label=None, data=data, ext=ext, source=name)


@CONVERTERS.register(SHARDS)
def describe_shards(cfg: DataConfig, progress: bool = False) -> dict:
    """A ``dataset.json``-like description of shards the user converted already (nothing is written).

    Sizes come from ``data.train_size``, a shard index, a converter's ``dataset.json`` or a scan
    (``data/index.py``); unlabeled shards are fine (only finetune and evaluate need labels)."""
    splits = {}
    for split, urls in (("train", cfg.train_urls), ("val", cfg.val_urls), ("test", cfg.test_urls)):
        if not urls:
            continue
        key = f"data.{split}_urls"
        expanded = expand_urls(urls, key)
        if split == "train" and cfg.train_size:
            splits[split] = {
                "count": cfg.train_size,
                "urls": urls,
                "labeled": None,
                "count_source": {"data.train_size": len(expanded)},
            }
            continue
        splits[split] = count_split(expanded, cfg.on_bad_sample, progress, key).as_split(urls)
    return dataset_info(SHARDS, [str(i) for i in range(cfg.num_classes)], cfg.image_size, splits)
