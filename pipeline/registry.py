"""One registry per kind of component (models, objectives, optimisers, schedules, attacks, converters).

A component registers itself where it is defined, with one decorator line::

    OPTIMIZERS = Registry("optimizer")

    @OPTIMIZERS.register("sgd")
    def sgd(groups, cfg): ...

Config choices are validated against the registries (no hand-kept lists of names), and an unknown name
is a one-line error that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .validation import InvalidValue

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        """Register without a decorator (e.g. one function under several names)."""
        return self.register(name)(obj)

    def get(self, name: str, key: str = "") -> T:
        """The entry, or an :class:`InvalidValue` naming ``key`` (the config key that chose it)."""
        self.check(name, key or self.kind)
        return self._items[name]

    def check(self, name: str, key: str) -> None:
        if name not in self._items:
            raise InvalidValue(key, name, f"use one of: {', '.join(self._items)}")

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self):
        return self._items.items()

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
