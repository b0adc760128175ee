"""Builders of small image sources for the data tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.shards import RawSample


@pytest.fixture
def random_samples():
    """``make(n, size=32, seed=0)``: n noise images labeled ``i % 5``."""

    def make(n: int, size: int = 32, seed: int = 0) -> list[RawSample]:
        rng = np.random.default_rng(seed)
        return [
            RawSample(label=i % 5, array=rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            for i in range(n)
        ]

    return make


@pytest.fixture
def imagefolder_tar():
    """``make(path, split, per_class)``: a tar of ``<split>/{cat,dog}/NNNN.jpg``, 32 px, sorted by class
    (as ImageFolder sources are)."""

    def make(path: Path, split: str, per_class: int) -> Path:
        with tarfile.open(path, "w") as tf:
            for cls in ("cat", "dog"):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), (40 * i) % 256, np.uint8)).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))
        return path

    return make
