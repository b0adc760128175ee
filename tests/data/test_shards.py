"""Writing shards: pixels and labels survive the round trip, and images are made RGB at the right size."""

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from data.readers import expand_urls, load_labeled
from data.shards import RawSample, write_split
from data.spec import ShardSpec
from pipeline.errors import DataError


def test_roundtrip_pixels_and_labels_equal(tmp_path, random_samples):
    samples = random_samples(40)
    info = write_split(iter(samples), tmp_path, "train", 32, shard_size=16)
    assert info["count"] == 40 and len(info["shards"]) == 3
    x, y, skipped = load_labeled(
        ShardSpec.of_urls(expand_urls(info["urls"], "k"), image_size=32), num_classes=5
    )
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
    x, _, _ = load_labeled(ShardSpec.of_urls(expand_urls(info["urls"], "k"), image_size=32), num_classes=3)
    assert x.shape == (3, 3, 32, 32)
    with pytest.raises(DataError, match="expected 32x32; set data.wrong_size=resize"):
        write_split(iter([big]), tmp_path / "e", "train", 32, shard_size=10, wrong_size="error")


def test_wrong_size_error_names_the_sample_and_both_fixes(tmp_path, random_samples):
    samples = [*random_samples(2), RawSample(label=0, array=np.zeros((40, 36, 3), np.uint8))]
    with pytest.raises(
        DataError,
        match=r"^train sample 2: image is 36x40, expected 32x32; "
        r"set data.wrong_size=resize or data.image_size=36$",
    ):
        write_split(iter(samples), tmp_path, "train", 32, shard_size=10, wrong_size="error")


def test_undecodable_source_image_is_refused(tmp_path):
    junk = RawSample(label=0, data=b"not an image", ext="jpg")
    with pytest.raises(
        DataError,
        match=r"^val sample 0: not a decodable image \(UnidentifiedImageError\); "
        "remove it from the source$",
    ):
        write_split(iter([junk]), tmp_path, "val", 32, shard_size=10)


def test_usable_encoded_images_keep_their_bytes(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 99, np.uint8)).save(buf, format="JPEG")
    info = write_split(iter([RawSample(label=1, data=buf.getvalue(), ext="jpg")]), tmp_path, "test", 32, 10)
    assert info["converted"] == {}
    with tarfile.open(tmp_path / info["shards"][0]["file"]) as tf:
        assert tf.extractfile("test_0000000.jpg").read() == buf.getvalue()  # no re-encoding loss
