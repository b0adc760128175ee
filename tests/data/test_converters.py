"""Converters: the registry of dataset names, fixed splits, ImageFolder sources, offline downloads."""

import json
import tarfile
from pathlib import Path

import pytest

from data.config import DataConfig
from data.converters import CONVERTERS
from data.prepare import convert
from data.readers import expand_urls, load_labeled
from data.spec import ShardSpec
from pipeline.errors import DataError

SHARED_CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"


def test_registry_names_every_dataset_with_digits_first():
    # data.dataset is checked against this list, and the error message lists it in this order
    assert CONVERTERS.names() == (
        "digits",
        "imagefolder",
        "cifar10",
        "cifar100",
        "stl10",
        "svhn",
        "images",
        "shards",
    )


def test_digits_converter_fixed_split(tmp_path):
    cfg = DataConfig(val_size=100)
    info = convert(cfg, tmp_path, progress=False)
    counts = {k: v["count"] for k, v in info["splits"].items()}
    assert counts == {"train": 1158, "val": 100, "test": 539}
    assert info["num_classes"] == 10 and info["image_size"] == 32
    assert all(len(s["sha256"]) == 64 for s in info["splits"]["train"]["shards"])
    again = convert(cfg, tmp_path / "again", progress=False)
    assert again["splits"]["test"]["shards"][0]["sha256"] == info["splits"]["test"]["shards"][0]["sha256"]


def _imagefolder_cfg(
    tmp_path, imagefolder_tar, train_per_class, test_per_class, *, val_size, shard_size=1000
):
    imagefolder_tar(tmp_path / "train.tar", "train", train_per_class)
    imagefolder_tar(tmp_path / "test.tar", "test", test_per_class)
    return DataConfig(
        dataset="imagefolder",
        train_source=str(tmp_path / "train.tar"),
        test_source=str(tmp_path / "test.tar"),
        val_size=val_size,
        num_classes=2,
        shard_size=shard_size,
    )


def test_imagefolder_tar_and_directory(tmp_path, imagefolder_tar):
    cfg = _imagefolder_cfg(tmp_path, imagefolder_tar, 6, 3, val_size=2)
    info = convert(cfg, tmp_path / "out", progress=False)
    assert info["classes"] == ["cat", "dog"]
    assert {k: v["count"] for k, v in info["splits"].items()} == {"train": 10, "val": 2, "test": 6}
    assert info["splits"]["test"]["class_counts"] == {"0": 3, "1": 3}
    # a directory works the same way
    with tarfile.open(tmp_path / "test.tar") as tf:
        tf.extractall(tmp_path / "dir")
    cfg.train_source = cfg.test_source = str(tmp_path / "dir" / "test")
    cfg.val_size = 1
    assert convert(cfg, tmp_path / "out2", progress=False)["splits"]["test"]["count"] == 6


def test_class_ordered_source_is_written_in_mixed_order(tmp_path, imagefolder_tar):
    # ImageFolder sources are sorted by class; shards in that order give one-class batches through the
    # streaming reader's bounded shuffle buffer (a model then learns nothing), so the converter permutes
    cfg = _imagefolder_cfg(tmp_path, imagefolder_tar, 20, 2, val_size=4, shard_size=12)
    info = convert(cfg, tmp_path / "out", progress=False)
    urls = expand_urls(info["splits"]["train"]["urls"], "k")
    _, y, _ = load_labeled(ShardSpec.of_urls(urls[:1], image_size=32), num_classes=2)
    assert len(y) == 12 and 3 <= int(y.sum()) <= 9, y.tolist()  # both classes in the first shard
    # ... and the order is fixed (a re-conversion writes identical shards)
    again = convert(cfg, tmp_path / "again", progress=False)
    assert [s["sha256"] for s in again["splits"]["train"]["shards"]] == [
        s["sha256"] for s in info["splits"]["train"]["shards"]
    ]


def test_offline_torchvision_download_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    cfg = DataConfig(dataset="cifar10", download_root=str(tmp_path))
    with pytest.raises(DataError, match="could not download cifar10.*data.dataset=imagefolder"):
        CONVERTERS.get("cifar10")(cfg)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_CIFAR / "test.tar").exists(), reason="../shared/data/cifar10 is absent")
def test_shared_cifar10_test_tar(tmp_path):
    cfg = DataConfig(
        dataset="imagefolder",
        train_source=str(SHARED_CIFAR / "test.tar"),
        test_source=str(SHARED_CIFAR / "test.tar"),
        val_size=0,
    )
    info = convert(cfg, tmp_path, progress=False)
    assert info["splits"]["test"]["count"] == 10_000
    assert info["splits"]["test"]["class_counts"] == {str(i): 1000 for i in range(10)}
    assert info["classes"][0] == "airplane" and info["classes"][-1] == "truck"
    x, y, _ = load_labeled(
        ShardSpec.of_urls(expand_urls(info["splits"]["test"]["urls"], "k"), image_size=32),
        num_classes=10,
        limit=50,
    )
    assert x.shape == (50, 3, 32, 32)
    json.dumps(info)
