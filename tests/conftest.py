"""Shared fixtures: tiny generated shards and configs whose run root is the test's tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(int(os.environ.get("TEST_THREADS", "2")))

from data.shards import RawSample, write_split  # noqa: E402
from pipeline.config import load_config  # noqa: E402


def make_images(n: int, size: int = 32, seed: int = 0, num_classes: int = 4) -> list[RawSample]:
    """Class-dependent coloured squares + noise: learnable in a few steps, so accuracies are not all 0."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % num_classes
        img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        c = label * (size // num_classes)
        img[c : c + size // num_classes, :, label % 3] = 220
        out.append(RawSample(label=label, array=img))
    return out


@pytest.fixture
def tiny_shards(tmp_path: Path) -> dict:
    """train (64) / val (16) / test (16) shards of 32 px images, 4 classes."""
    out = tmp_path / "shards"
    info = {}
    for split, n, seed in (("train", 64, 0), ("val", 16, 1), ("test", 16, 2)):
        info[split] = write_split(make_images(n, seed=seed), out, split, 32, shard_size=32)["urls"]
    return info


@pytest.fixture
def tiny_cfg(tmp_path: Path, tiny_shards: dict):
    """A config for a seconds-long chain on the tiny shards; call it with extra overrides."""

    def make(*overrides: str):
        base = [
            f"run.root={tmp_path / 'runs'}",
            "run.name=t",
            "run.progress=false",
            "run.num_threads=2",
            "data.dataset=shards",
            f"data.train_urls={tiny_shards['train']}",
            f"data.val_urls={tiny_shards['val']}",
            f"data.test_urls={tiny_shards['test']}",
            "data.num_classes=4",
            "data.shuffle_buffer=64",
            "model.name=resnet10_cifar_tiny",
            "pretrain.epochs=1",
            "pretrain.batch_size=32",
            "pretrain.attack.steps=2",
            "pretrain.proj_hidden_dim=64",
            "pretrain.proj_dim=32",
            "finetune.epochs=1",
            "finetune.batch_size=32",
            "finetune.attack.steps=2",
            "finetune.val_attack_steps=2",
            "evaluate.n_examples=16",
            "evaluate.batch_size=16",
            "evaluate.chunk_size=16",
            "evaluate.pgd.steps=5",
            "evaluate.sweep.enabled=false",
            "evaluate.autoattack.version=custom",
            "evaluate.autoattack.attacks=[apgd-ce,apgd-t]",
        ]
        return load_config(ROOT / "configs" / "quickstart.yaml", base + list(overrides))

    return make
