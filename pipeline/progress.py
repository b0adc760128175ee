"""Plain progress lines for logs: what a redirected run (``make … > run.log``, SLURM, CI) prints instead of
tqdm's carriage-return frames — elapsed time, a rate and an ETA, one line per finished piece of work.

tqdm bars are for terminals (``stderr``); these lines go to ``stdout``, so ``make … > run.log`` gets the lines
while the terminal keeps its bar. Imports only the standard library (``data/`` uses it too).
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Iterable, Iterator


def clock(seconds: float) -> str:
    """``0:01:05``: a duration as ``H:MM:SS``."""
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def lines_wanted(enabled: bool = True) -> bool:
    """Plain lines are printed when asked for and ``stdout`` is not a terminal (a log file or a pipe)."""
    return enabled and not sys.stdout.isatty()


def say(text: str) -> None:
    """One progress line on stdout, flushed at once (a log read with ``tail -f`` sees it when it happens)."""
    print(text, flush=True)


def eta(done: float, total: float, seconds: float) -> str:
    """The time left at the rate so far (``?`` before anything is done)."""
    if done <= 0 or total <= 0:
        return "?"
    return clock(seconds * (total - done) / done)


def counted(
    items: Iterable, label: str, total: int | None = None, every_seconds: float = 10.0, enabled: bool = True
) -> Iterator:
    """``items`` unchanged, with a line ``<label>: 5,000/45,000 (11%)  elapsed 0:00:06  ETA 0:00:48`` at most
    every ``every_seconds`` (a long run shows it is alive without filling its log) and one at the end."""
    if not enabled:
        yield from items
        return
    start = last = time.perf_counter()
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        if now - last >= every_seconds:
            last = now
            say(_count_line(label, n, total, now - start))
    say(_count_line(label, n, total, time.perf_counter() - start) + "  done")


def _count_line(label: str, n: int, total: int | None, seconds: float) -> str:
    if total:
        return f"{label}: {n:,}/{total:,} ({n / total:.0%})  elapsed {clock(seconds)}  ETA {eta(n, total, seconds)}"
    return f"{label}: {n:,}  elapsed {clock(seconds)}"
