"""The evaluation subset of a test split: a fixed random order of the whole split, so every "first k"
subset (``evaluate.n_examples``, AutoAttack's, the sweep's) is a uniform sample."""

from __future__ import annotations

import torch

from data.readers import load_labeled
from data.spec import ShardSpec

from .sampling import first_n

EVAL_ORDER_SEED = 20231  # fixed, not run.seed: the evaluated subset must be the same for every run


def load_test_split(
    spec: ShardSpec, n_examples: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x uint8, y, positions in the test split, skipped) in a fixed random order of the split.

    Test sets often come sorted by class (ImageFolder); evaluate.n_examples and the AutoAttack / sweep /
    smoothing subsets take the *first* k examples, which must then be a uniform sample, not k images of
    the first class. Only the selected examples are held in memory when the split's size is known.
    ``spec.count``: the split's size when known (0: unknown).
    """

    def fixed_order(n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(EVAL_ORDER_SEED)
        return torch.randperm(n, generator=g)[: first_n(n_examples, n)]

    if spec.count:
        order = fixed_order(spec.count)
        x, y, skipped = load_labeled(spec, num_classes=num_classes, keep=order)
        if len(y) == len(order):
            return x, y, order, skipped
    # size unknown (pipe: URLs) or samples skipped (positions moved): read all, then permute
    x, y, skipped = load_labeled(spec, num_classes=num_classes)
    order = fixed_order(len(y))
    return x[order], y[order], order, skipped
