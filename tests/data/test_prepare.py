"""prepare_dataset / data_fingerprint: what the data stage gets from the data package."""

import json

import pytest

from data.config import DataConfig
from data.prepare import convert, data_fingerprint, prepare_dataset
from data.shards import write_split
from pipeline.errors import DataError


def test_fingerprint_is_unchanged():
    # data stages of existing runs compare against this dict: any change re-converts every dataset
    assert data_fingerprint(DataConfig()) == {
        "format": 2,
        "dataset": "digits",
        "train_source": "",
        "test_source": "",
        "out_dir": "",
        "train_urls": "",
        "val_urls": "",
        "test_urls": "",
        "num_classes": 10,
        "image_size": 32,
        "wrong_size": "resize",
        "val_size": 200,
        "shard_size": 1000,
    }
    # settings a conversion does not depend on are left out (changing them must not re-convert)
    assert data_fingerprint(
        DataConfig(num_workers=4, shuffle_buffer=7, on_bad_sample="skip", download_root="/x")
    ) == data_fingerprint(DataConfig())


def test_converted_dataset_json_is_what_is_returned(tmp_path):
    info = prepare_dataset(
        DataConfig(val_size=0, image_size=8, shard_size=2000), tmp_path / "out", progress=False
    )
    assert json.loads((tmp_path / "out" / "dataset.json").read_text()) == info
    assert set(info["splits"]) == {"train", "test"}  # val_size=0: no val split
    assert info["splits"]["train"]["urls"] == str(tmp_path / "out" / "train-{000000..000000}.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind


def test_user_shards_are_described_not_written(tmp_path, random_samples):
    urls = {
        split: write_split(iter(random_samples(n)), tmp_path / "s", split, 32, shard_size=4)["urls"]
        for split, n in (("train", 10), ("test", 3))
    }
    cfg = DataConfig(dataset="shards", train_urls=urls["train"], test_urls=urls["test"], num_classes=5)
    info = prepare_dataset(cfg, tmp_path / "out", progress=False)
    assert info == {
        "name": "shards",
        "classes": ["0", "1", "2", "3", "4"],
        "num_classes": 5,
        "image_size": 32,
        "splits": {
            "train": {"count": 10, "urls": urls["train"], "labeled": True, "count_source": {"scan": 3}},
            "test": {"count": 3, "urls": urls["test"], "labeled": True, "count_source": {"scan": 1}},
        },
    }
    assert not (tmp_path / "out").exists()
    # a piped source is not streamed just to count it
    cfg.train_urls = "pipe:cat x.tar"
    assert prepare_dataset(cfg, tmp_path / "out", progress=False)["splits"]["train"]["count"] == 0
    cfg.test_urls = str(tmp_path / "nope-{000000..000001}.tar")
    with pytest.raises(DataError, match=r"data.test_urls=.* matches no shard files"):
        prepare_dataset(cfg, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="nothing to convert"):
        convert(cfg, tmp_path / "out", progress=False)


def test_unreadable_user_shard_is_named(tmp_path):
    bad = tmp_path / "bad-000000.tar"
    bad.write_bytes(b"not a tar" * 50)
    cfg = DataConfig(dataset="shards", train_urls=str(bad), test_urls=str(bad))
    with pytest.raises(DataError, match=f"shard {bad} is not a readable tar .*drop it from the URL pattern"):
        prepare_dataset(cfg, tmp_path / "out", progress=False)


def test_folder_of_other_files_is_not_replaced(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not empty and holds no dataset.json; choose a new folder"):
        prepare_dataset(DataConfig(), tmp_path, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
