"""What a measurement is, and what each one gets to work with.

A measurement is one module of this package that owns everything about one number (or curve) the
evaluation reports: its settings (a section of ``EvaluateConfig``), the record it keeps per chunk (a
dataclass that writes itself into the chunk's files and reads itself back), how the chunks combine, what
it puts in the report, how report.md and the summary show it, and the sanity checks that need its
results alone. :data:`~pipeline.evaluation.measurements.MEASUREMENTS` lists them in the order of work;
the chunk evaluator, the merger, the checks and the writers loop over it and know no measurement by name.

What passes between measurements is explicit: on a chunk, :class:`ChunkWork` carries the clean logits and
AutoAttack's adversarial inputs; after merging, :class:`Merged` holds each one's typed result by name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..autoattack_runner import make_autoattack
from ..counting import PassCount, PassCounter
from ..intervals import accuracy_interval
from ..sampling import derive_seed

if TYPE_CHECKING:
    from pyautoattack import AutoAttack

    from ..chunks import Chunk
    from ..config import EvaluateConfig
    from ..report import EvalReport


@dataclass
class EvalContext:
    """What every chunk needs: the counted model, where to run, and the settings."""

    counter: PassCounter
    device: torch.device
    cfg: EvaluateConfig
    num_classes: int
    status: Callable[[str], None] = lambda _: None  # progress display hook: a phase begins
    # ... and ends: (phase, seconds, correct, n, what) — correct/n: the points it left classified right
    finished: Callable[..., None] = lambda *_, **__: None
    surrogate: PassCounter | None = None  # the transfer check's surrogate model (counted, eval mode)
    indices: torch.Tensor | None = None  # each evaluated point's position in its dataset; None = 0, 1, ...
    state: dict[str, Any] = field(default_factory=dict)  # what a measurement prepares once (check_inputs)

    def positions(self, start: int, stop: int) -> list[int]:
        """The dataset positions of evaluated points ``[start, stop)`` (per-image seeds, pre-computed files)."""
        if self.indices is None:
            return list(range(start, stop))
        return [int(i) for i in self.indices[start:stop]]

    def autoattack(
        self, version: str, attacks: list[str] | None, seed: int, *, eps: float | None = None
    ) -> AutoAttack:
        """An AutoAttack on the counted model, this device and the threat model's norm, at ``eps``
        (default: the threat model's radius). The one place its arguments are spelled out."""
        return make_autoattack(
            self.counter,
            eps=self.cfg.eps if eps is None else eps,
            norm=self.cfg.norm,
            version=version,
            attacks=attacks,
            seed=seed,
            device=self.device,
            num_classes=self.num_classes,
        )


def logits_of(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's logits on ``x``, ``batch_size`` images per forward pass, without gradients."""
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@dataclass
class PhaseTally:
    """What a phase reports to the progress display: ``correct`` of its ``n`` points (none: only its time)."""

    correct: int | None = None
    n: int | None = None
    what: str = "robust"  # how the line names the share: robust (attacks) | accuracy (clean)

    def count(self, right: torch.Tensor, what: str = "robust") -> None:
        """``right``: one boolean per point of the phase."""
        self.correct, self.n, self.what = int(right.sum()), int(right.numel()), what


@dataclass
class ChunkWork:
    """One chunk being measured: its inputs, its record being filled, and what earlier measurements found.

    Every random stream is seeded from :meth:`seed` and the batching inside a chunk depends only on the
    configuration, so a chunk's record is the same whichever process computes it.
    """

    ctx: EvalContext
    chunk: Chunk
    x: torch.Tensor  # the chunk's images in [0, 1], on the device
    y: torch.Tensor  # its labels
    record: dict  # the chunk's JSON record: "seconds", "passes" and "warnings" are filled through this class
    tensors: dict[str, torch.Tensor]  # stored next to the record (safetensors)
    clean_logits: torch.Tensor | None = None  # set by the clean measurement, which runs first
    clean_pred: torch.Tensor | None = None  # ... and their argmax
    adversarial: torch.Tensor | None = None  # AutoAttack's final inputs on its prefix (read by calibration)

    @property
    def cfg(self) -> EvaluateConfig:
        return self.ctx.cfg

    @property
    def counter(self) -> PassCounter:
        return self.ctx.counter

    def covered(self, name: str) -> int:
        """How many of the chunk's first examples the prefix measurement ``name`` covers."""
        return self.chunk.covered[name]

    def seed(self, purpose: str) -> int:
        return derive_seed(self.cfg.seed, self.chunk.index, purpose)

    def logits(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        return logits_of(self.counter, x, batch_size or self.cfg.batch_size)

    def low_precision(self):
        """``evaluate.precision=bf16``: autocast for PGD and the sweep (never clean accuracy or AutoAttack)."""
        return torch.autocast(
            self.ctx.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"
        )

    def add_cost(self, phase: str, seconds: float, passes: PassCount) -> None:
        """Add wall time and passes to ``phase``'s row of the cost table."""
        self.record["seconds"][phase] = self.record["seconds"].get(phase, 0.0) + seconds
        forward, backward = self.record["passes"].get(phase, (0, 0))
        self.record["passes"][phase] = (forward + passes.forward, backward + passes.backward)

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseTally]:
        """Count the wall time and passes spent inside the block as ``name``'s; what the block tallies (the
        points it left classified right) goes to the progress display with its time."""
        self.ctx.status(name)
        tally = PhaseTally()
        before, start = self.counter.snapshot(), time.perf_counter()
        yield tally
        seconds = time.perf_counter() - start
        self.add_cost(name, seconds, self.counter.snapshot() - before)
        self.ctx.finished(name, seconds, tally.correct, tally.n, tally.what)

    def warn(self, messages: list[str]) -> None:
        """Library messages for the report (counted over chunks by the checks)."""
        self.record["warnings"] += messages


@dataclass
class Merged:
    """Every measurement's merged result by name (what the checks and later measurements read)."""

    cfg: EvaluateConfig
    num_classes: int
    label: torch.Tensor  # the labels of every evaluated point, in order
    results: dict[str, Any] = field(default_factory=dict)
    # the results at each further threat model (evaluate.threats), by its name: checked like these
    other_threats: dict[str, Merged] = field(default_factory=dict)


class Measurement:
    """One thing the evaluation measures; a subclass sets the attributes and overrides what applies."""

    name: str = ""  # registry name; also its phase in the cost table
    section: str | None = (
        None  # its field of EvaluateConfig (evaluate.<section>.* in YAML); None: no settings
    )
    # True: it measures only the first <section>.n_examples examples. Each chunk records how many of its own
    # it covers (Chunk.covered[name], which enters the chunk fingerprint)
    prefix: bool = False
    headline: str | None = None  # its key in report.robust_accuracy (None there when it does not run)
    # False for a measurement added after chunks were first written (corruptions, transfer): while it is off,
    # its section and its coverage stay out of the chunk fingerprint, so the chunks written before it stay valid
    fingerprint_when_off: bool = True
    Record: type  # its chunk record: write(record, tensors) and the classmethod read(record, tensors)

    # -- settings ----------------------------------------------------------------------------------------
    def enabled(self, cfg: EvaluateConfig) -> bool:
        return True

    def check(self, cfg: EvaluateConfig) -> None:
        """Checks of its settings that need the rest of ``evaluate`` (the threat model); keys relative to
        ``evaluate``. Its section's own ``check()`` covers the rest."""

    def n_examples(self, cfg: EvaluateConfig, available: int) -> int:
        """How many of the first evaluated examples it measures."""
        return available if self.enabled(cfg) else 0

    def notes(self, cfg: EvaluateConfig, num_classes: int) -> list[str]:
        """Facts about this configuration worth a line in the report's notes (not failures)."""
        return []

    def check_inputs(self, ctx: EvalContext, x: torch.Tensor, y: torch.Tensor) -> None:
        """Checks of the inputs (files, models, libraries) before any compute, when it is enabled; may keep
        what it opened in ``ctx.state[name]``. Raises :class:`~pipeline.errors.UsageError`."""

    def settings(self, cfg: EvaluateConfig) -> dict:
        """Its section as it enters the chunk fingerprint: without ``n_examples`` (which decides only which
        chunks exist and what they cover, recorded in the chunk), and with the values actually used where
        the setting spells a default (so an explicit default reuses the same chunks)."""
        d = asdict(getattr(cfg, self.section))
        d.pop("n_examples", None)
        return d

    # -- one chunk -----------------------------------------------------------------------------------------
    def in_fingerprint(self, cfg: EvaluateConfig) -> bool:
        return self.fingerprint_when_off or self.enabled(cfg)

    def runs_on(self, chunk: Chunk, cfg: EvaluateConfig) -> bool:
        return self.enabled(cfg) and (not self.prefix or chunk.covered[self.name] > 0)

    def run(self, work: ChunkWork) -> Any:
        """Measure one chunk; returns its record (an instance of :attr:`Record`)."""
        raise NotImplementedError

    # -- the report ----------------------------------------------------------------------------------------
    def merge(self, parts: list, merged: Merged, report: EvalReport) -> Any:
        """Combine the records of the chunks it ran on (in chunk order): fill its part of ``report`` and of
        ``report.per_sample``, and return its typed result (stored as ``merged.results[name]``)."""
        raise NotImplementedError

    def checks(self, merged: Merged) -> tuple[list[str], list[str]]:
        """Sanity checks on its own result: ``(warnings, notes)``. Checks that compare measurements live in
        :mod:`pipeline.evaluation.masking`."""
        return [], []

    def grey_runs(self, result: Any, cfg: EvaluateConfig) -> list[tuple[float, torch.Tensor, str]]:
        """``(radius, predictions on its prefix, name)`` of each of its attacks that the grey-image bound
        (:func:`pipeline.evaluation.masking.grey_checks`) holds to account."""
        return []

    def summary_rows(self, report: EvalReport) -> list[list]:
        """Its rows of the summary table (read from the report, which may come from an older file)."""
        return []

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        """Its section of report.md; ``figures`` maps figure keys to file names."""
        return []

    def figures(self, report: EvalReport, out: Path) -> dict[str, Path]:
        """Draw its figures into ``out``; returns key → path."""
        return {}


# -- merging helpers -------------------------------------------------------------------------------------
def concat(parts: list, attr: str) -> torch.Tensor:
    """The per-sample list ``attr`` of every record, concatenated in chunk order."""
    return torch.tensor([v for p in parts for v in getattr(p, attr)])


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``pred`` against the first labels of ``y`` (NaN without points)."""
    return float((pred == y[: pred.shape[0]]).double().mean()) if pred.numel() else math.nan


def interval(pred: torch.Tensor, y: torch.Tensor) -> list[float] | None:
    """The 95% exact interval of :func:`accuracy` (``None`` when no point was evaluated)."""
    return accuracy_interval(int((pred == y[: pred.shape[0]]).sum()), int(pred.numel()))


def padded(values: list, n: int) -> list:
    """A per-sample column over a prefix, padded with empty cells to all ``n`` evaluated points."""
    return values + [None] * (n - len(values))


# -- rendering helpers -----------------------------------------------------------------------------------
def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table, one line per row."""
    return [
        f"| {' | '.join(header)} |",
        "|" + "---|" * len(header),
        *(f"| {' | '.join(str(c) for c in row)} |" for row in rows),
    ]


def ci_list(values: list, cis: list | None) -> list:
    """The intervals matching ``values`` (a report read from an older file may have none)."""
    return list(cis) if cis else [None] * len(values)


def figure_line(figures: dict[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({figures[key]})"] if key in figures else []
