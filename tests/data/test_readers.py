"""Reading shards: URL patterns, unreadable shards and samples, labels out of range, wrong sizes."""

import io
import tarfile

import pytest
import torch

from data.readers import expand_urls, load_labeled, stream_loader
from data.shards import write_split
from data.spec import ShardSpec
from pipeline.errors import DataError


def test_zero_shards_matched_is_an_error(tmp_path):
    with pytest.raises(DataError, match="matches no shard files"):
        expand_urls(str(tmp_path / "nope-{000000..000003}.tar"), "data.train_urls")


def _stream(urls, on_bad, n=3):
    spec = ShardSpec.of_urls(urls, image_size=32, on_bad=on_bad, shuffle_buffer=8)
    loader = stream_loader(
        spec, lambda img: (torch.zeros(1),), batch_size=4, seed=0, epoch=0, rank=0, need_label=True
    )
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_not_a_tar_and_undecodable_image(tmp_path, random_samples):
    good = write_split(iter(random_samples(8)), tmp_path, "good", 32, shard_size=8)
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


def test_label_out_of_range_is_refused(tmp_path, random_samples):
    info = write_split(iter(random_samples(6)), tmp_path, "test", 32, shard_size=8)
    with pytest.raises(DataError, match="label 3 .* >= data.num_classes=3"):
        load_labeled(ShardSpec.of_urls(expand_urls(info["urls"], "k"), image_size=32), num_classes=3)


def test_wrong_size_in_a_shard_is_resized_or_refused(tmp_path, random_samples):
    info = write_split(iter(random_samples(4)), tmp_path, "test", 32, shard_size=8)
    urls = expand_urls(info["urls"], "k")
    x, _, _ = load_labeled(ShardSpec.of_urls(urls, image_size=24), num_classes=5)
    assert x.shape == (4, 3, 24, 24)
    with pytest.raises(
        DataError,
        match=r"sample test_0000000 in .*: image is 32x32, expected 24x24 "
        r"\(set data.wrong_size=resize to resize\); fix the shard",
    ):
        load_labeled(ShardSpec.of_urls(urls, image_size=24, wrong_size="error"), num_classes=5)
