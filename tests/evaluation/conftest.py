"""Fixtures for the evaluation tests: a tiny trained CNN and its data, built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # eval_helpers is shared with the subprocess workers

from eval_helpers import make_data, train_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    return train_tiny()


@pytest.fixture(scope="session")
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_data(40, seed=7)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Module scope: set before the module fixtures that evaluate, and restored before other test folders
    # run. Results are compared bit for bit with subprocess workers on one thread, and on a 2-core
    # machine a second intra-op thread mostly adds contention.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
