"""The one way configs are checked: every config dataclass may define ``check(self)``, which raises
:class:`InvalidValue` with a key *relative to itself*; :func:`validate` walks the dataclass tree and
prefixes each key with the path it came from, so a message always names the full YAML key and the fix::

    pretrain.attack.eps=2.0 is invalid; use a value in (0, 1] (pixel units: 8/255 = 0.0314)

Why a walk and not ``__post_init__``: omegaconf's ``to_object`` does run ``__post_init__``, but an
exception raised there carries no information on where in the tree the node sits, so the message could
not name the key. Programmatic users (``evaluate_model(cfg=EvaluateConfig(...))``) call ``validate``
on their section the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import UsageError


class InvalidValue(UsageError):
    """``key=value is invalid; fix`` — or, with ``message``, a whole sentence. In ``fix`` and ``message``,
    ``{at}`` stands for the path of the config node that raised (``"evaluate.autoattack."``), so a message
    can name sibling keys in full; ``{key}`` is the full key."""

    def __init__(self, key: str, value: Any = None, fix: str = "", message: str | None = None, at: str = ""):
        self.rel_key, self.value, self.fix, self.message, self.at = key, value, fix, message, at
        self.key = at + key
        super().__init__(self._text())

    def _text(self) -> str:
        fix = self.fix.replace("{at}", self.at)
        if self.message is not None:
            return self.message.replace("{at}", self.at).replace("{key}", self.key)
        return f"{self.key}={self.value!r} is invalid; {fix}"

    def under(self, prefix: str) -> InvalidValue:
        """The same error raised one level up, from the field ``prefix`` of the parent node."""
        if not prefix:
            return self
        return InvalidValue(self.rel_key, self.value, self.fix, self.message, at=f"{prefix}.{self.at}")


def check(ok: bool, key: str, value: Any, fix: str) -> None:
    if not ok:
        raise InvalidValue(key, value, fix)


def check_choice(key: str, value: str, choices) -> None:
    """``choices``: a :class:`~pipeline.registry.Registry` or any collection of names."""
    if value not in choices:
        raise InvalidValue(key, value, f"use one of: {', '.join(choices)}")


def check_min(key: str, value: int | float, minimum: int | float) -> None:
    check(value >= minimum, key, value, f"use a value >= {minimum}")


def validate(cfg: Any, prefix: str = "") -> None:
    """Check ``cfg`` and every dataclass below it (children first); raise the first problem as a
    one-line :class:`InvalidValue` whose key is the full path (``prefix`` + the fields walked)."""
    try:
        for f in dataclasses.fields(cfg):
            child = getattr(cfg, f.name)
            if dataclasses.is_dataclass(child) and not isinstance(child, type):
                validate(child, f.name)
        if hasattr(cfg, "check"):
            cfg.check()
    except InvalidValue as exc:
        raise exc.under(prefix) from None
