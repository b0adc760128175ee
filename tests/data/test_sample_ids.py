"""Sample ids and the coreset readers: a key-filtered stream yields only the kept samples, a keyed pass
visits each kept sample exactly once."""

import itertools

import torch

from data.readers import keyed_pass, list_sample_ids, stream_loader, to_tensor
from data.spec import ShardSpec


def test_keep_filters_the_stream_and_keyed_pass_visits_each_once(tiny_shards):
    urls = ShardSpec.of_urls(tiny_shards["train"], image_size=32)
    ids = list_sample_ids(urls)
    assert len(ids) == len(set(ids)) == 64 and all("#" in i for i in ids)
    keep = frozenset(ids[::3])
    labels = []
    loader = stream_loader(
        urls, lambda img: (to_tensor(img),), batch_size=4, seed=0, epoch=0, rank=0, keep=keep
    )
    for _x, y, _bad in itertools.islice(loader, 30):
        labels += y.tolist()
    kept_labels = {i % 4 for i in range(0, 64, 3)}  # make_images: label = index % 4, in shard order
    assert set(labels) <= kept_labels and len(labels) == 120
    seen = [
        i
        for batch in keyed_pass(urls, lambda img: (to_tensor(img),), keep, batch_size=5, seed=0, epoch=0)
        for i in batch[0]
    ]
    assert sorted(seen) == sorted(keep)  # every kept sample once, the last batch short
    first = next(iter(keyed_pass(urls, lambda img: (to_tensor(img),), keep, batch_size=5, seed=0, epoch=0)))
    assert first[1].shape == (5, 3, 32, 32) and first[1].dtype == torch.float32
