"""The evaluate stage draws its examples in a fixed random order of the test split: a class-sorted test
set must not turn evaluate.n_examples / the AutoAttack subset into k images of the first class."""

import numpy as np
import torch

from data.readers import expand_urls, load_labeled
from data.shards import RawSample, write_split
from data.spec import ShardSpec
from pipeline.evaluation.test_split import load_test_split


class _Data:  # the reader settings of the data: section
    wrong_size, on_bad_sample, num_workers, shuffle_buffer, sampling = "resize", "error", 0, 2000, "exact"


def _sorted_split(tmp_path, n_per_class=30, classes=4):
    rng = np.random.default_rng(0)
    samples = [
        RawSample(label=c, array=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        for c in range(classes)
        for _ in range(n_per_class)
    ]
    return write_split(iter(samples), tmp_path, "test", 32, shard_size=50)


def test_first_k_is_a_mixed_fixed_sample_with_true_positions(tmp_path):
    info = _sorted_split(tmp_path)
    known = ShardSpec.from_manifest("test", info, _Data(), 32)
    unknown = ShardSpec.of_urls(info["urls"], image_size=32, split="test")  # count 0: size unknown
    x, y, order, skipped = load_test_split(known, 20, 4)
    assert skipped == 0 and len(y) == 20 and len(set(y.tolist())) >= 3  # not 20 images of class 0
    full_x, full_y, _ = load_labeled(
        ShardSpec.of_urls(expand_urls(info["urls"], "k"), image_size=32), num_classes=4
    )
    assert torch.equal(x, full_x[order]) and torch.equal(y, full_y[order])  # positions are the split's
    again = load_test_split(known, 20, 4)
    assert torch.equal(again[2], order)  # fixed across runs (not tied to run.seed)
    # without a known count (pipe: URLs) the same order comes from reading everything
    x2, y2, order2, _ = load_test_split(unknown, 20, 4)
    assert torch.equal(order2, order) and torch.equal(x2, x)
