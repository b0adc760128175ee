"""What a person sees while an evaluation runs: a tqdm bar on a terminal, plain lines in a log.

An evaluation can take many minutes per chunk, so a log gets a line at the end of every phase of every chunk
— clean accuracy as soon as it is known, PGD, each AutoAttack sub-attack with the robust accuracy so far and
its n, the other measurements with their time — and one per finished chunk with the elapsed time and an ETA::

    [evaluate] chunk 1/2  clean               accuracy 35.0% (n=50)  0.2 s  elapsed 0:00:01
    [evaluate] chunk 1/2  autoattack:apgd-ce  robust 20.0% (n=50)  41.3 s  elapsed 0:00:43
    [evaluate] chunk 1/2  done in 0:01:40  elapsed 0:01:41  ETA 0:01:40

The accuracies are running ones: over this process's chunks so far, for that phase.
"""

from __future__ import annotations

import time
from collections import defaultdict

from tqdm.auto import tqdm

from pipeline.progress import clock, eta, say

from .chunks import Chunk


class EvalProgress:
    """The bar and the lines of one process's share of the chunks (``bar``/``lines`` switch each on)."""

    def __init__(self, mine: list[Chunk], n_chunks: int, rank: int, world: int, bar: bool, lines: bool):
        self.mine, self.n_chunks, self.lines, self.world = mine, n_chunks, lines, world
        self.prefix = "[evaluate]" if world == 1 else f"[evaluate rank {rank}/{world}]"
        self.bar = tqdm(
            total=len(mine),
            desc=f"evaluate [rank {rank}/{world}]",
            position=rank,
            disable=not bar,
            unit="chunk",
        )
        self.start = time.perf_counter()
        self.todo = sum(c.stop - c.start for c in mine)  # examples this process still has to compute
        self.done, self.compute_seconds = 0, 0.0
        self.totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # phase -> [correct, n] so far
        self.chunk: Chunk | None = None
        self.chunk_start = 0.0

    def begin(self, n_examples: int, reused: int) -> None:
        if self.lines:
            plural = "s" if self.n_chunks != 1 else ""
            here = f", {len(self.mine)} on this process" if self.world > 1 else ""
            again = f"; {reused} finished chunk{'s' if reused != 1 else ''} reused" if reused else ""
            say(f"{self.prefix} {n_examples} examples in {self.n_chunks} chunk{plural}{here}{again}")

    def reused(self, chunk: Chunk) -> None:
        self.todo -= chunk.stop - chunk.start
        self.bar.update(1)

    def start_chunk(self, chunk: Chunk) -> None:
        self.chunk, self.chunk_start = chunk, time.perf_counter()

    def status(self, phase: str) -> None:
        """A phase begins (the bar's postfix)."""
        self.bar.set_postfix_str(f"chunk {self.chunk.index}: {phase}", refresh=True)

    def finished(
        self,
        phase: str,
        seconds: float,
        correct: int | None = None,
        n: int | None = None,
        what: str = "robust",
    ) -> None:
        """A phase ended after ``seconds``; ``correct`` of its ``n`` points still classified right (if it
        counts any): the line shows the running accuracy over this process's chunks."""
        if not self.lines:
            return
        result = ""
        if correct is not None and n:
            total = self.totals[phase]
            total[0], total[1] = total[0] + correct, total[1] + n
            result = f"  {what} {total[0] / total[1]:.1%} (n={total[1]})"
        say(
            f"{self.prefix} {self._where()}  {phase:<18}{result}  {seconds:.1f} s  "
            f"elapsed {clock(time.perf_counter() - self.start)}"
        )

    def end_chunk(self, chunk: Chunk) -> None:
        seconds = time.perf_counter() - self.chunk_start
        self.done += chunk.stop - chunk.start
        self.compute_seconds += seconds
        self.bar.update(1)
        if self.lines:
            say(
                f"{self.prefix} {self._where()}  done in {clock(seconds)}  "
                f"elapsed {clock(time.perf_counter() - self.start)}  "
                f"ETA {eta(self.done, self.todo, self.compute_seconds)}"
            )

    def close(self) -> None:
        self.bar.close()

    def _where(self) -> str:
        return f"chunk {self.chunk.index + 1}/{self.n_chunks}"
