"""Unlabeled data, first class: a pile of images → shards; unlabeled shards counted by key without a
full scan when an index or dataset.json exists; damaged shards with on_bad_sample=skip."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.config import DataConfig
from data.index import INDEX_NAME, count_split, write_index
from data.prepare import prepare_dataset
from data.readers import expand_urls, stream_loader
from data.shards import RawSample, write_split
from data.spec import ShardSpec
from pipeline.errors import DataError


def _png(size: int, value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def image_pile(tmp_path) -> Path:
    """7 usable images in nested folders (several formats and sizes), a text file, a truncated PNG."""
    root = tmp_path / "pile"
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    for i in range(3):
        (root / "a" / f"{i}.png").write_bytes(_png(32, 10 * i))
    for i in range(2):
        Image.fromarray(np.full((50, 40, 3), 99, np.uint8)).save(root / "a" / "b" / f"{i}.jpg")
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(root / "c" / "grey.gif")  # grey, small, gif
    Image.fromarray(np.full((64, 64, 4), 200, np.uint8)).save(root / "c" / "rgba.webp")
    (root / "c" / "notes.txt").write_text("not an image")
    (root / "c" / "broken.png").write_bytes(_png(32, 1)[:60])  # truncated
    return root


def test_images_converter_skips_and_reports_bad_files(image_pile, tmp_path):
    cfg = DataConfig(dataset="images", train_source=str(image_pile), on_bad_sample="skip", shard_size=4)
    info = prepare_dataset(cfg, tmp_path / "out", progress=False)
    train = info["splits"]["train"]
    assert set(info["splits"]) == {"train"} and info["num_classes"] == 0 and info["ignored_files"] == 1
    assert train["count"] == 7 and train["labeled"] is False and len(train["shards"]) == 2
    assert train["skipped"] == {
        "count": 1,
        "files": [{"file": "c/broken.png", "why": train["skipped"]["files"][0]["why"]}],
    }
    assert "not a decodable image" in train["skipped"]["files"][0]["why"]
    on_disk = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert on_disk["splits"]["train"]["count"] == 7 and all(
        len(s["sha256"]) == 64 for s in on_disk["splits"]["train"]["shards"]
    )
    # every sample is readable at 32 px (resized, made RGB, gif re-encoded) and has no label
    spec = ShardSpec.of_urls(train["urls"], image_size=32, labeled=False, shuffle_buffer=10)
    loader = stream_loader(
        spec, lambda img: (torch.from_numpy(np.asarray(img).copy()),), batch_size=7, seed=0, epoch=0, rank=0
    )
    images, labels, bad = next(iter(loader))
    assert images.shape == (7, 32, 32, 3) and labels.tolist() == [-1] * 7 and bad == 0


def test_images_converter_stops_on_a_bad_file_by_default(image_pile, tmp_path):
    with pytest.raises(DataError, match=r"c/broken.png.*not a decodable image"):
        prepare_dataset(DataConfig(dataset="images", train_source=str(image_pile)), tmp_path / "out", False)
    assert not (tmp_path / "out").exists()  # nothing half-written


def _unlabeled_shards(tmp_path, n=40, shard_size=10) -> list[str]:
    rng = np.random.default_rng(0)
    samples = [
        RawSample(label=None, array=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)
    ]
    info = write_split(iter(samples), tmp_path / "shards", "train", 32, shard_size)
    return expand_urls(info["urls"], "k")


def test_unlabeled_shards_are_counted_by_key_and_the_index_round_trips(tmp_path):
    urls = _unlabeled_shards(tmp_path)
    scanned = count_split(urls, "error", progress=False)
    assert (scanned.count, scanned.labeled, scanned.sources) == (40, 0, {"scan": 4})
    assert scanned.as_split("p")["labeled"] is False
    (index,) = write_index(urls, "error", progress=False)
    assert index == tmp_path / "shards" / INDEX_NAME
    indexed = count_split(urls, "error", progress=False)
    assert (indexed.count, indexed.sources) == (40, {"index": 4})
    # a shard that changed since the index is counted again
    write_split(
        iter([RawSample(label=None, array=np.zeros((32, 32, 3), np.uint8))]),
        tmp_path / "other",
        "train",
        32,
        10,
    )
    Path(urls[0]).write_bytes((tmp_path / "other" / "train-000000.tar").read_bytes())
    again = count_split(urls, "error", progress=False)
    assert (again.count, again.sources) == (31, {"index": 3, "scan": 1})


def test_truncated_shard_counts_its_readable_samples_with_skip(tmp_path):
    urls = _unlabeled_shards(tmp_path)
    data = Path(urls[1]).read_bytes()
    Path(urls[1]).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"is not a readable tar to its end .*data.on_bad_sample=skip"):
        count_split(urls, "error", progress=False)
    counted = count_split(urls, "skip", progress=False)
    (damaged,) = counted.damaged
    assert damaged["file"] == urls[1] and 0 < damaged["readable"] < 10
    assert counted.count == 30 + damaged["readable"]
    # what webdataset reads of that shard is exactly what the count promised
    import webdataset as wds

    read = wds.DataPipeline(
        wds.SimpleShardList([urls[1]]), wds.tarfile_to_samples(handler=wds.ignore_and_continue)
    )
    assert sum(1 for sample in read if "png" in sample) == damaged["readable"]


def test_converter_counts_come_from_dataset_json(tmp_path, image_pile):
    out = tmp_path / "out"
    prepare_dataset(
        DataConfig(dataset="images", train_source=str(image_pile), on_bad_sample="skip"), out, False
    )
    urls = sorted(str(p) for p in out.glob("train-*.tar"))
    counted = count_split(urls, "error", progress=False)
    assert (counted.count, counted.sources) == (7, {"dataset.json": 1})


def test_declared_size_and_remote_urls(tmp_path):
    urls = _unlabeled_shards(tmp_path)
    pattern = str(tmp_path / "shards" / "train-{000000..000003}.tar")
    info = prepare_dataset(DataConfig(dataset="shards", train_urls=pattern, train_size=123), None, False)
    assert info["splits"]["train"]["count"] == 123 and info["splits"]["train"]["count_source"] == {
        "data.train_size": 4
    }
    remote = count_split(["pipe:cat " + urls[0]], "error", progress=False)
    assert remote.count == 0 and "cannot be counted without streaming" in remote.unknown


def test_the_console_names_skipped_files_and_the_counts(image_pile, tmp_path, capsys):
    from data.prepare import prepare_run_data
    from pipeline.run import RunDir

    cfg = DataConfig(dataset="images", train_source=str(image_pile), on_bad_sample="skip", shard_size=4)
    manifest = prepare_run_data(cfg, RunDir(tmp_path / "runs", "r"), "{}", progress=False)
    dataset_json = tmp_path / "runs" / "r" / "data" / "shards" / "dataset.json"
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("[data] train:"))
    assert line.startswith(
        f"[data] train: 7 converted, 1 skipped: c/broken.png (see {dataset_json}); re-encoded: "
    )
    assert line.endswith("re-encoded: 4 resized, 1 mode P->RGB, 1 format gif->png, 1 mode RGBA->RGB")
    assert manifest["outputs"]["splits"]["train"]["skipped"]["count"] == 1  # what later stages add up
