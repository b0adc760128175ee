"""Exact epochs (data/epochs.py): every sample once per epoch, in a seeded order mixed across shards, the
same number of steps on every process, the partial last batch kept or dropped."""

import numpy as np
import pytest
import torch

from data.epochs import epoch_plan, epoch_steps, exact_loader, index_shards
from data.readers import list_sample_ids, load_labeled, to_tensor
from data.shards import write_split
from data.spec import ShardSpec


def _flat(plan):
    return np.concatenate(plan) if plan else np.empty(0, int)


@pytest.mark.parametrize("n, batch, world", [(100, 32, 1), (100, 32, 2), (97, 8, 4), (64, 16, 2)])
def test_every_sample_once_and_equal_steps_per_process(n, batch, world):
    plans = [
        epoch_plan(n, global_batch=batch, world=world, rank=r, seed=3, epoch=1, drop_last=False)
        for r in range(world)
    ]
    assert len({len(p) for p in plans}) == 1 and len(plans[0]) == epoch_steps(n, batch, world, False)
    seen = np.concatenate([_flat(p) for p in plans])
    assert set(seen.tolist()) == set(range(n))  # distinct = the split
    rest = n % batch
    assert len(seen) - n == (
        max(-(-rest // world), 2) * world - rest if rest else 0
    )  # only the last batch pads
    for step in range(len(plans[0])):  # a step's shares are equal: DDP and the NT-Xent gather need it
        assert len({len(p[step]) for p in plans}) == 1


def test_the_step_is_the_same_whatever_the_process_count():
    one = epoch_plan(100, global_batch=32, world=1, rank=0, seed=0, epoch=0, drop_last=False)
    two = [
        epoch_plan(100, global_batch=32, world=2, rank=r, seed=0, epoch=0, drop_last=False) for r in (0, 1)
    ]
    for step in range(3):  # full batches: rank 0 + rank 1 = the one-process batch
        assert np.array_equal(np.concatenate([two[0][step], two[1][step]]), one[step])


def test_drop_last_and_the_reference_batch_count():
    assert epoch_steps(50_000, 512, 1, drop_last=False) == 98  # ACL train_simCLR.py: 97 × 512 + 336
    assert epoch_steps(50_000, 512, 1, drop_last=True) == 97
    plan = epoch_plan(50_000, global_batch=512, world=1, rank=0, seed=0, epoch=0, drop_last=False)
    assert len(plan[-1]) == 336 and len(_flat(plan)) == 50_000


def test_orders_are_seeded_by_seed_and_epoch():
    a = _flat(epoch_plan(200, global_batch=50, world=1, rank=0, seed=0, epoch=0, drop_last=False))
    assert np.array_equal(
        a, _flat(epoch_plan(200, global_batch=50, world=1, rank=0, seed=0, epoch=0, drop_last=False))
    )
    assert not np.array_equal(
        a, _flat(epoch_plan(200, global_batch=50, world=1, rank=0, seed=0, epoch=1, drop_last=False))
    )
    assert not np.array_equal(
        a, _flat(epoch_plan(200, global_batch=50, world=1, rank=0, seed=1, epoch=0, drop_last=False))
    )
    assert not np.array_equal(a, np.arange(200))


def test_a_coreset_epoch_visits_its_samples_once():
    keep = np.arange(0, 100, 3)
    plan = epoch_plan(100, global_batch=8, world=1, rank=0, seed=0, epoch=0, drop_last=False, positions=keep)
    assert sorted(_flat(plan).tolist()) == keep.tolist()


def test_the_loader_reads_each_sample_of_the_shards_once(tmp_path, random_samples):
    info = write_split(iter(random_samples(45)), tmp_path, "train", 32, shard_size=10)  # 5 shards
    spec = ShardSpec.of_urls(info["urls"], image_size=32)
    index = index_shards(spec)
    assert len(index) == 45 and index.sample_ids() == list_sample_ids(spec)
    x_all, y_all, _ = load_labeled(spec, num_classes=5)  # shard order = index order
    seen = []
    loader = exact_loader(
        index,
        spec,
        lambda img: (to_tensor(img),),
        global_batch=16,
        world=1,
        rank=0,
        seed=0,
        epoch=0,
        drop_last=False,
        need_label=True,
    )
    for (x, y), bad, positions in loader:
        assert bad == 0 and torch.equal(y, y_all[positions])
        assert torch.equal(
            (x * 255).round().to(torch.uint8), x_all[positions]
        )  # the right bytes for each position
        seen += positions.tolist()
    assert sorted(seen) == list(range(45)) and len({s // 10 for s in seen[:16]}) > 1  # mixed across shards
