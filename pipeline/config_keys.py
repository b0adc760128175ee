"""The config's keys as plain data, and what is said about a key that is misspelt or mistyped — standard
library only.

``robustpretrain <stage> …`` checks the YAML and the ``key=value`` overrides against the cached key table
(``stages/_keys.py``) *before* torch is imported, so a typo is answered in a fraction of a second; the library
(:func:`pipeline.config.load_config`) says the same from the schema itself. To keep one wording, both use this
module: the command line loads it by file path (``import pipeline.config_keys`` would run
``pipeline/__init__.py``, which imports torch). Keep its imports to the standard library.

A key's description is ``{"type": "float", "where": "pipeline/attacks/base.py AttackConfig"}``: its type as
the schema writes it and the dataclass (and file) that declares it.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
import typing
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a fraction as people write radii and step sizes: 8/255, 2.5 / 255, 1e-3/2
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
FRACTION = re.compile(rf"^\s*({_NUMBER})\s*/\s*({_NUMBER})\s*$")
FLOAT_TYPES = ("float", "list[float]")


def source_of(cls: type) -> str:
    """``path/relative/to/repo.py ClassName`` of a config dataclass."""
    path = Path(inspect.getsourcefile(cls) or "?").resolve()
    try:
        path = path.relative_to(ROOT)
    except ValueError:
        pass
    return f"{path.as_posix()} {cls.__name__}"


def declared_in(cls: type, name: str) -> str:
    """``pipeline/train/loop.py TrainLoopConfig``: the dataclass (first in the MRO) that declares ``name``."""
    return source_of(next((k for k in cls.__mro__ if name in k.__dict__.get("__annotations__", {})), cls))


def type_name(hint: object) -> str:
    """``int``, ``list[str]``, ``dict[str, Any]``: the annotation as it is written in the schema."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def schema_keys(cls: type, prefix: str = "") -> dict[str, dict]:
    """Every leaf key of the dataclass tree ``cls`` (sections are not keys) with its type and declaring file."""
    out: dict[str, dict] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, hint = f"{prefix}{f.name}", hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out.update(schema_keys(hint, key + "."))
        else:
            out[key] = {"type": type_name(hint), "where": declared_in(cls, f.name)}
    return out


def closest_key(key: str, keys: dict[str, dict]) -> str | None:
    """The known key ``key`` was most likely meant to be: among its own section's keys first (``epoch`` →
    ``pretrain.epochs``, not ``finetune.epochs``), then among all of them."""
    section = key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == section]
    for pool, cutoff in ((siblings, 0.6), (list(keys), 0.75)):
        found = difflib.get_close_matches(key, pool, n=1, cutoff=cutoff)
        if found:
            return found[0]
    return None


def unknown_key(key: str, keys: dict[str, dict]) -> str:
    """The one-line message for a key the schema does not have."""
    guess = closest_key(key, keys)
    if guess:
        return f"unknown config key {key!r}; did you mean {guess!r}? (declared in {keys[guess]['where']})"
    section = key.rpartition(".")[0]
    mine = sorted({v["where"] for k, v in keys.items() if k.startswith(section + ".")}) if section else []
    where = f"the keys of {section!r} are declared in {', '.join(mine)}" if mine else "see pipeline/config.py"
    return f"unknown config key {key!r}; `robustpretrain <stage> --help` lists every key ({where})"


def wrong_type(key: str, value: object, keys: dict[str, dict], detail: str = "") -> str:
    """The one-line message for a value that does not fit the key's declared type."""
    info = keys.get(key)
    article = "an" if info and info["type"][0] in "aeiou" else "a"
    declared = f"{article} {info['type']} as declared in {info['where']}" if info else "the declared type"
    what = detail or f"Value {value!r} could not be converted to {info['type'] if info else 'its type'}"
    hint = " (a fraction such as 8/255 is fine)" if info and info["type"] in FLOAT_TYPES else ""
    return f"config key {key!r}: {what}; give {declared}{hint}"


def fraction(value: object) -> float | None:
    """``"8/255"`` → 0.0313…; anything else → None."""
    match = FRACTION.match(value) if isinstance(value, str) else None
    if not match:
        return None
    num, den = float(match[1]), float(match[2])
    return num / den if den else None


def resolve_fractions(tree: dict, keys: dict[str, dict], prefix: str = "") -> dict:
    """``tree`` (a YAML layer or the overrides, nested dicts) with fractions in float keys made floats.
    Other values, interpolations (``${...}``) included, are left as they are for the schema to judge."""
    out = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        kind = keys.get(key, {}).get("type")
        if isinstance(value, dict) and key not in keys:
            value = resolve_fractions(value, keys, key + ".")
        elif kind == "float" and fraction(value) is not None:
            value = fraction(value)
        elif kind == "list[float]" and isinstance(value, list):
            value = [fraction(v) if fraction(v) is not None else v for v in value]
        out[name] = value
    return out


def leaves(tree: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(dotted key, value)`` of a nested dict; a dict-valued *key* of the schema (``model.kwargs``) is a
    leaf, so give the schema's keys to :func:`problems` rather than trusting this alone."""
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            yield key, value
            yield from leaves(value, key + ".")
        else:
            yield key, value


def problems(tree: dict, keys: dict[str, dict]) -> str | None:
    """The first unknown key or unmistakably mistyped number in ``tree`` (a YAML layer or the overrides), as
    the one-line message; None when nothing is wrong that can be seen without the schema's own checks."""
    skip: list[str] = []  # the insides of dict-valued keys (model.kwargs.*) are the constructor's business
    for key, value in leaves(tree):
        if any(key.startswith(s + ".") for s in skip):
            continue
        info = keys.get(key)
        if info is None:
            if isinstance(value, dict) and any(k.startswith(key + ".") for k in keys):
                continue  # a section
            return unknown_key(key, keys)
        if info["type"].startswith("dict"):
            skip.append(key)
        elif not _fits(value, info["type"]):
            return wrong_type(key, value, keys)
    return None


def _fits(value: object, kind: str) -> bool:
    """Could ``value`` be a ``kind`` (int / float)? Only clear mismatches (``many``) count: the schema judges
    the rest, as it always did."""
    if kind not in ("int", "float") or value is None or isinstance(value, bool):
        return True
    if isinstance(value, str) and ("${" in value or value == "???" or fraction(value) is not None):
        return kind == "float" or "${" in value or value == "???"
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def from_run_of(*layers: dict) -> tuple[str, str]:
    """``(run.from_run, run.root)`` as the first of ``layers`` (overrides, then the YAML) sets each."""
    runs = [layer.get("run") or {} for layer in layers]
    from_run = next((str(r["from_run"]) for r in runs if r.get("from_run")), "")
    return from_run, next((str(r["root"]) for r in runs if r.get("root")), "runs")


def run_config_file(spec: str, root: str = "runs") -> Path:
    """``run.from_run``: the resolved ``config.yaml`` to start from — a file; a stage folder holding one; or a
    run folder (``runs/<name>``, or just ``<name>`` under ``root``), whose most recently completed stage's.
    Raises ``ValueError`` with the one-line message."""
    path = Path(spec).expanduser()
    if not path.exists() and (Path(root) / spec).is_dir():
        path = Path(root) / spec
    if path.is_file():
        return path
    if (path / "config.yaml").is_file():
        return path / "config.yaml"
    done = []
    for manifest in path.glob("*/manifest.json") if path.is_dir() else []:
        try:
            complete = json.loads(manifest.read_text()).get("status") == "complete"
        except (OSError, ValueError):
            complete = False
        if complete and (manifest.parent / "config.yaml").is_file():
            done.append((manifest.stat().st_mtime, manifest.parent / "config.yaml"))
    if not done:
        raise ValueError(
            f"run.from_run={spec}: no finished stage there (a <run>/<stage>/config.yaml with a complete "
            "manifest); give a run folder such as runs/quickstart, a stage folder or a config.yaml"
        )
    return max(done)[1]
