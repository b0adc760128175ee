"""AutoAttack through the reference ``pyautoattack`` package, with per-attack attribution.

``run_standard_evaluation`` only returns the final adversarial points. To learn which sub-attack
broke each point we run the *same* ``AutoAttack`` object once per sub-attack (the library's own
``run_standard_evaluation_individual`` does the same by setting ``attacks_to_run``), each time on the
points still robust, in their original order. A direct run attacks exactly those points, in the same
batches, with the same seed (every attack reseeds the global RNG with ``seed`` at the start of each
batch), so the per-sample outcome is identical to one ``run_standard_evaluation`` call; a test checks it.

pyautoattack reports its sanity checks (randomized model, probabilities instead of logits, dynamic
defense, too few classes, zero gradients) through ``logging.getLogger('auto-attack').warning`` when it
has a logger, which ``AutoAttack`` always passes; ``warnings.warn`` is only the fallback without one.
We capture both.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from pyautoattack import AutoAttack

from .counting import PassCount, PassCounter

AA_LOGGER = "auto-attack"


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def capture_autoattack_warnings() -> Iterator[list[str]]:
    """Collect the warnings pyautoattack emits (logger ``'auto-attack'`` and ``warnings``) in a list."""
    logger = logging.getLogger(AA_LOGGER)
    handler = _ListHandler()
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)  # a quieter global setting must not hide the checks from us
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield handler.messages
        for w in caught:
            if "pyautoattack" in (w.filename or ""):
                handler.messages.append(str(w.message))
            else:  # not ours to swallow: re-emit
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def make_autoattack(
    model: torch.nn.Module,
    *,
    eps: float,
    norm: str,
    version: str,
    attacks: list[str] | None,
    seed: int,
    device: torch.device,
    num_classes: int,
) -> AutoAttack:
    """An ``AutoAttack`` with the standard hyperparameters.

    ``version='custom'`` in pyautoattack leaves every attack at its constructor defaults (APGD with 5
    restarts, FAB with 5); we want "the standard attacks, only fewer of them", so custom runs get the
    standard settings via the library's own ``_set_version`` and then the requested attack list.
    """
    if version == "custom":
        aa = AutoAttack(
            model, attacks=list(attacks or []), device=device, eps=eps, norm=norm, seed=seed, version="custom"
        )
        aa._set_version("standard")  # noqa: SLF001 - the library's single source of the standard settings
        aa.attacks_to_run = list(attacks or [])
        aa.version = "custom"
    else:
        aa = AutoAttack(model, device=device, eps=eps, norm=norm, seed=seed, version=version)
    # Targeted attacks index the k-th most likely class for k up to n_target_classes + 1: with fewer than
    # 10 classes the standard 9 targets would index out of range, so cap them (the authors' advice).
    aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, num_classes - 1)
    aa.fab.n_target_classes = min(aa.fab.n_target_classes, num_classes - 1)
    return aa


# pyautoattack's own attack names (external: its loop raises on anything else)
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
# AttributedResult.pred_after where a sub-attack did not run on a point (broken before, or misclassified
# clean: never attacked); per_sample.csv leaves these cells empty
NOT_RUN = -1


@dataclass
class AttributedResult:
    """Outcome of an attack run that goes sub-attack by sub-attack, each on the points still robust: the
    per-attack bookkeeping of every AutoAttack version (the library's and ``fast``). Start it with
    :meth:`start`, then run each sub-attack inside :meth:`attack` and :meth:`record` what it returned."""

    y: torch.Tensor  # labels
    final_pred: torch.Tensor  # prediction on the final input: the label until some attack breaks the point
    x_adv: torch.Tensor  # final inputs (the clean input where no attack succeeded)
    attacks: list[str] = field(default_factory=list)  # sub-attacks in the order they ran
    # per attack: the prediction on its output, NOT_RUN where it did not run
    pred_after: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    passes: dict[str, PassCount] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # progress display: (attack, seconds, points still robust, n) after each sub-attack
    on_finish: Callable[[str, float, int, int], None] | None = None

    @classmethod
    def start(
        cls, x: torch.Tensor, y: torch.Tensor, on_finish: Callable[[str, float, int, int], None] | None = None
    ) -> AttributedResult:
        return cls(y=y, final_pred=y.clone(), x_adv=x.clone(), on_finish=on_finish)

    def robust(self) -> torch.Tensor:
        """Indices of the points no attack has broken yet, in their original order (before the first
        attack: every point, including the misclassified ones, which that attack's clean pass finds)."""
        return (self.final_pred == self.y).nonzero().squeeze(1)

    @contextmanager
    def attack(self, name: str, counter: PassCounter) -> Iterator[None]:
        """Run sub-attack ``name`` inside the block: its column starts as NOT_RUN, and the wall time and
        the passes of ``counter`` spent in the block are its cost."""
        self.attacks.append(name)
        self.pred_after[name] = torch.full_like(self.y, NOT_RUN)
        before, start = counter.snapshot(), time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.passes[name] = counter.snapshot() - before
        if self.on_finish is not None:
            self.on_finish(name, self.seconds[name], int((self.final_pred == self.y).sum()), self.y.numel())

    def record(self, name: str, idx: torch.Tensor, pred: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Sub-attack ``name`` returned ``pred`` / ``x_adv`` on the points ``idx``; returns those of ``idx``
        it left robust."""
        self.pred_after[name][idx] = pred
        broken = pred != self.y[idx]
        self.final_pred[idx[broken]] = pred[broken]
        self.x_adv[idx[broken]] = x_adv[broken]
        return idx[~broken]


def run_attributed(
    aa: AutoAttack,
    counter: PassCounter,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    on_attack: Callable[[str], None] | None = None,
    on_finish: Callable[[str, float, int, int], None] | None = None,
) -> AttributedResult:
    """Run ``aa``'s attacks one at a time on the still-robust points (see the module docstring).

    Args:
        aa: built by :func:`make_autoattack` around ``counter``.
        counter: the counting wrapper ``aa`` calls, read before and after each sub-attack.
        x: clean inputs in [0,1] (on ``aa.device``).
        y: labels.
        batch_size: pyautoattack's batch size (part of what makes results reproducible).
        on_attack: called with each sub-attack's name before it runs (progress display).
        on_finish: called after each sub-attack (see :class:`AttributedResult`).
    """
    attacks = list(aa.attacks_to_run)
    result = AttributedResult.start(x, y, on_finish)
    with capture_autoattack_warnings() as messages:
        try:
            for attack in attacks:
                if on_attack is not None:
                    on_attack(attack)
                with result.attack(attack, counter):
                    todo = result.robust()
                    if todo.numel() > 0:
                        aa.attacks_to_run = [attack]
                        # the first call also sees the misclassified points: pyautoattack's own clean pass
                        # marks them non-robust and returns their clean prediction, as in a direct run
                        x_adv, y_adv = aa.run_standard_evaluation(x[todo], y[todo], batch_size=batch_size)
                        result.record(attack, todo, y_adv, x_adv)
        finally:
            aa.attacks_to_run = attacks
    result.warnings = list(messages)
    return result


def run_robust_flags(
    aa: AutoAttack, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, list[str]]:
    """One plain ``run_standard_evaluation``; returns the final predictions and pyautoattack's warnings."""
    with capture_autoattack_warnings() as messages:
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return y_adv, list(messages)
