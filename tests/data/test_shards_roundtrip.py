"""Shard write → read round trip, converters, and bad shards."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.converters import CONVERTERS
from data.prepare import convert
from data.readers import expand_urls, load_labeled, stream_loader
from data.shards import RawSample, write_split
from pipeline.config import load_config
from pipeline.errors import DataError

SHARED_CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"


def _samples(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [RawSample(label=i % 5, array=rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for i in range(n)]


def test_roundtrip_pixels_and_labels_equal(tmp_path):
    samples = _samples(40)
    info = write_split(iter(samples), tmp_path, "train", 32, shard_size=16)
    assert info["count"] == 40 and len(info["shards"]) == 3
    x, y, skipped = load_labeled(expand_urls(info["urls"], "k"), size=32, num_classes=5)
    assert skipped == 0
    expected = torch.from_numpy(np.stack([s.array for s in samples])).permute(0, 3, 1, 2)
    assert torch.equal(x, expected)
    assert y.tolist() == [s.label for s in samples]


def test_grey_rgba_and_wrong_size_are_converted_and_counted(tmp_path):
    grey = RawSample(label=0, array=np.full((32, 32), 7, np.uint8))
    rgba = RawSample(label=1, array=np.full((32, 32, 4), 9, np.uint8))
    big = RawSample(label=2, array=np.full((40, 40, 3), 11, np.uint8))
    info = write_split(iter([grey, rgba, big]), tmp_path, "train", 32, shard_size=10)
    assert info["converted"] == {"mode L->RGB": 1, "mode RGBA->RGB": 1, "resized": 1}
    x, _, _ = load_labeled(expand_urls(info["urls"], "k"), size=32, num_classes=3)
    assert x.shape == (3, 3, 32, 32)
    with pytest.raises(DataError, match="expected 32x32; set data.wrong_size=resize"):
        write_split(iter([big]), tmp_path / "e", "train", 32, shard_size=10, wrong_size="error")


def test_digits_converter_fixed_split(tmp_path):
    cfg = load_config(None, ["data.val_size=100"]).data
    info = convert(cfg, tmp_path, progress=False)
    counts = {k: v["count"] for k, v in info["splits"].items()}
    assert counts == {"train": 1158, "val": 100, "test": 539}
    assert info["num_classes"] == 10 and info["image_size"] == 32
    assert all(len(s["sha256"]) == 64 for s in info["splits"]["train"]["shards"])
    again = convert(cfg, tmp_path / "again", progress=False)
    assert again["splits"]["test"]["shards"][0]["sha256"] == info["splits"]["test"]["shards"][0]["sha256"]


def _imagefolder_tar(path: Path, split: str, per_class: int):
    with tarfile.open(path, "w") as tf:
        for cls in ("cat", "dog"):
            for i in range(per_class):
                buf = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), (40 * i) % 256, np.uint8)).save(buf, format="JPEG")
                info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                info.size = len(buf.getvalue())
                tf.addfile(info, io.BytesIO(buf.getvalue()))


def test_imagefolder_tar_and_directory(tmp_path):
    _imagefolder_tar(tmp_path / "train.tar", "train", 6)
    _imagefolder_tar(tmp_path / "test.tar", "test", 3)
    cfg = load_config(None, ["data.dataset=imagefolder", f"data.train_source={tmp_path / 'train.tar'}",
                             f"data.test_source={tmp_path / 'test.tar'}", "data.val_size=2", "data.num_classes=2"]).data
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


def test_class_ordered_source_is_written_in_mixed_order(tmp_path):
    # ImageFolder sources are sorted by class; shards in that order give one-class batches through the
    # streaming reader's bounded shuffle buffer (a model then learns nothing), so the converter permutes
    _imagefolder_tar(tmp_path / "train.tar", "train", 20)
    _imagefolder_tar(tmp_path / "test.tar", "test", 2)
    cfg = load_config(None, ["data.dataset=imagefolder", f"data.train_source={tmp_path / 'train.tar'}",
                             f"data.test_source={tmp_path / 'test.tar'}", "data.val_size=4", "data.num_classes=2",
                             "data.shard_size=12"]).data
    info = convert(cfg, tmp_path / "out", progress=False)
    urls = expand_urls(info["splits"]["train"]["urls"], "k")
    _, y, _ = load_labeled(urls[:1], size=32, num_classes=2)
    assert len(y) == 12 and 3 <= int(y.sum()) <= 9, y.tolist()  # both classes in the first shard
    # ... and the order is fixed (a re-conversion writes identical shards)
    again = convert(cfg, tmp_path / "again", progress=False)
    assert [s["sha256"] for s in again["splits"]["train"]["shards"]] == [s["sha256"] for s in info["splits"]["train"]["shards"]]


def test_offline_torchvision_download_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    cfg = load_config(None, ["data.dataset=cifar10", f"data.download_root={tmp_path}"]).data
    with pytest.raises(DataError, match="could not download cifar10.*data.dataset=imagefolder"):
        CONVERTERS["cifar10"](cfg)


def test_zero_shards_matched_is_an_error(tmp_path):
    with pytest.raises(DataError, match="matches no shard files"):
        expand_urls(str(tmp_path / "nope-{000000..000003}.tar"), "data.train_urls")


def _stream(urls, on_bad, n=3):
    loader = stream_loader(urls, lambda img: (torch.zeros(1),), batch_size=4, seed=0, epoch=0, rank=0, size=32,
                           need_label=True, on_bad=on_bad, shuffle_buffer=8)
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_not_a_tar_and_undecodable_image(tmp_path):
    good = write_split(iter(_samples(8)), tmp_path, "good", 32, shard_size=8)
    bad_tar = tmp_path / "bad-000000.tar"
    bad_tar.write_bytes(b"this is not a tar file" * 100)
    with pytest.raises(DataError, match="unreadable shard data"):
        _stream([str(bad_tar)], "error")
    # an image that does not decode, inside a valid tar
    broken = tmp_path / "broken-000000.tar"
    with tarfile.open(broken, "w") as tf:
        for name, data in (("x_0.png", b"not an image"), ("x_0.cls", b"1")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    with pytest.raises(DataError, match="x_0.*fix the shard or set data.on_bad_sample=skip"):
        _stream([str(broken)], "error")
    # skip mode: bad samples are counted, good ones still flow
    batches = _stream([str(broken), *expand_urls(good["urls"], "k")], "skip", n=30)  # shards are resampled
    assert sum(b[-1] for b in batches) >= 1
    # nothing but bad data: a clear error, never a hang
    with pytest.raises(DataError, match="bad samples in a row"):
        _stream([str(broken)], "skip")


def test_label_out_of_range_is_refused(tmp_path):
    info = write_split(iter(_samples(6)), tmp_path, "test", 32, shard_size=8)
    with pytest.raises(DataError, match="label 3 .* >= data.num_classes=3"):
        load_labeled(expand_urls(info["urls"], "k"), size=32, num_classes=3)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_CIFAR / "test.tar").exists(), reason="../shared/data/cifar10 is absent")
def test_shared_cifar10_test_tar(tmp_path):
    cfg = load_config(None, ["data.dataset=imagefolder", f"data.train_source={SHARED_CIFAR / 'test.tar'}",
                             f"data.test_source={SHARED_CIFAR / 'test.tar'}", "data.val_size=0"]).data
    info = convert(cfg, tmp_path, progress=False)
    assert info["splits"]["test"]["count"] == 10_000
    assert info["splits"]["test"]["class_counts"] == {str(i): 1000 for i in range(10)}
    assert info["classes"][0] == "airplane" and info["classes"][-1] == "truck"
    x, y, _ = load_labeled(expand_urls(info["splits"]["test"]["urls"], "k"), size=32, num_classes=10, limit=50)
    assert x.shape == (50, 3, 32, 32)
    json.dumps(info)
