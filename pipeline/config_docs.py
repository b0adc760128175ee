"""Where every config key is documented: the dataclass (and file) behind each section, generated from
:class:`pipeline.config.ExperimentConfig` so it follows the schema (the command line's ``--help``)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def _where(cls: type) -> str:
    """``path/relative/to/repo.py ClassName`` of a config dataclass."""
    path = Path(inspect.getsourcefile(cls) or "?").resolve()
    try:
        path = path.relative_to(_ROOT)
    except ValueError:
        pass
    return f"{path.as_posix()} {cls.__name__}"


def _composition(cls: type) -> str:
    """Where a section's keys are declared: the class, and the component dataclasses it inherits from."""
    bases = [b for b in reversed(cls.__mro__[1:]) if dataclasses.is_dataclass(b)]
    if not bases:
        return _where(cls)
    own = bool(cls.__dict__.get("__annotations__"))
    return f"{_where(cls)} {'+' if own else '='} " + " + ".join(_where(b) for b in bases)


def key_docs() -> list[str]:
    """One line per config section (and nested section): the dataclass(es) whose commented fields document
    its keys. Generated from :class:`pipeline.config.ExperimentConfig`, so it follows the schema."""
    from .config import ExperimentConfig  # imported here: the schema pulls in timm and torch

    rows: list[tuple[str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            sub = hints.get(f.name)
            if isinstance(sub, type) and dataclasses.is_dataclass(sub):
                rows.append((f"{prefix}{f.name}.*", _composition(sub)))
                walk(sub, f"{prefix}{f.name}.")

    walk(ExperimentConfig, "")
    width = max(len(k) for k, _ in rows)
    return [f"  {k:<{width}}  {v}" for k, v in rows]
