"""The evaluation subset of a test split: a fixed random order of the whole split, so every "first k"
subset (``evaluate.n_examples``, AutoAttack's, the sweep's) is a uniform sample."""

from __future__ import annotations

import torch

from data.readers import load_labeled

from .sampling import first_n

EVAL_ORDER_SEED = 20231  # fixed, not run.seed: the evaluated subset must be the same for every run


def load_test_split(urls: list[str], count: int, n_examples: int,
                    **reader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x uint8, y, positions in the test split, skipped) in a fixed random order of the split.

    Test sets often come sorted by class (ImageFolder); evaluate.n_examples and the AutoAttack / sweep /
    smoothing subsets take the *first* k examples, which must then be a uniform sample, not k images of
    the first class. Only the selected examples are held in memory when the split's size is known.
    ``count``: the split's size when known (0: unknown); ``reader``: ``load_labeled``'s keyword arguments.
    """

    def fixed_order(n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(EVAL_ORDER_SEED)
        return torch.randperm(n, generator=g)[: first_n(n_examples, n)]

    if count:
        order = fixed_order(count)
        x, y, skipped = load_labeled(urls, keep=order, **reader)
        if len(y) == len(order):
            return x, y, order, skipped
    # size unknown (pipe: URLs) or samples skipped (positions moved): read all, then permute
    x, y, skipped = load_labeled(urls, **reader)
    order = fixed_order(len(y))
    return x[order], y[order], order, skipped
