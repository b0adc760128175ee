"""The key listing of ``robustpretrain <stage> --help [section]``: every config key of the stage with its type,
default and the comment the schema carries, one line a key, grouped by section.

The listing comes from the schema itself (:func:`pipeline.config_docs.key_table`), which imports torch and
timm (seconds). It is cached, as JSON, under ``$XDG_CACHE_HOME/robustpretrain/`` (``~/.cache``), keyed by a
hash of every ``.py`` file of ``pipeline/`` and ``data/``: any edit of the sources rebuilds it, and a ``--help``
with a fresh cache imports neither torch nor the schema. This module imports only the standard library.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the config sections each stage reads (other sections: `--help <section>` lists any of them)
STAGE_SECTIONS = {
    "data": ("run", "data"),
    "index": ("run", "data"),
    "pretrain": ("run", "data", "model", "pretrain"),
    "finetune": ("run", "data", "model", "finetune"),
    "evaluate": ("run", "data", "model", "evaluate"),
    "export": ("run", "data", "model", "export"),
    "protocols": ("run", "data", "model", "finetune", "evaluate", "protocols"),
}
DEFAULT_WIDTH = 22  # a longer default runs into the comment column rather than widening every line


def _digest() -> str:
    """A hash of the schema's sources: every .py file under pipeline/ and data/ (a few ms)."""
    h = hashlib.sha256()
    for package in ("pipeline", "data"):
        for path in sorted((ROOT / package).rglob("*.py")):
            h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "robustpretrain" / f"config-keys-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}.json"


def key_table() -> list[dict]:
    """The schema's sections and keys (see :func:`pipeline.config_docs.key_table`), from the cache when the
    sources have not changed since it was written; else built (imports the schema) and cached."""
    digest, cache = _digest(), _cache_file()
    try:
        saved = json.loads(cache.read_text())
        if saved.get("sources") == digest:
            return saved["sections"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    from pipeline.config_docs import key_table as build  # imported here: the schema pulls in torch

    sections = build()
    try:  # best effort: an unwritable cache only costs the next --help the import again
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sources": digest, "sections": sections}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return sections


def select(sections: list[dict], stage: str, name: str | None) -> list[dict]:
    """The sections to list: the stage's (with their sub-sections), or the one ``name`` designates — a full
    section name (``finetune.attack``, ``run``) or the part after one of the stage's (``attack``, ``lpaft.probe``).
    Raises ``ValueError`` with the one-line message for an unknown name."""
    own = STAGE_SECTIONS[stage]

    def under(prefix: str) -> list[dict]:
        return [s for s in sections if s["section"] == prefix or s["section"].startswith(prefix + ".")]

    if name is None:
        return [s for top in own for s in under(top)]
    for candidate in (name, *(f"{top}.{name}" for top in own)):
        if any(s["section"] == candidate for s in sections):
            return under(candidate)
    mine = [s["section"] for top in own for s in under(top)]
    raise ValueError(
        f"no config section {name!r}: {stage}'s are {', '.join(mine)} (also without the leading "
        f"'<section>.'), and any other section can be named in full (e.g. finetune.attack)"
    )


def render(sections: list[dict]) -> str:
    """``key  type  = default   # comment``, one line a key, under one header line per section (the
    dataclass(es) that declare it, and the section's own comment)."""
    out = []
    for s in sections:  # columns aligned within a section
        note = f"  # {s['comment']}" if s["comment"] else ""
        out.append(f"{s['section']}:  ({s['where']}){note}")
        if not s["keys"]:
            continue
        kw, tw = (max(len(k[i]) for k in s["keys"]) for i in (0, 1))
        dw = min(DEFAULT_WIDTH, max(len(k[2]) for k in s["keys"]))
        for key, typ, default, comment, *_ in s["keys"]:
            line = f"  {key:<{kw}}  {typ:<{tw}}  = {default:<{dw}}"
            out.append((f"{line}  # {comment}" if comment else line).rstrip())
    return "\n".join(out)


def listing(stage: str, section: str | None) -> str:
    """The stage's keys (or one section's) as ``--help`` lists them; raises ValueError for an unknown section."""
    try:
        table = key_table()
    except Exception as exc:  # help must never fail; the schema is still in pipeline/config.py
        return (
            f"  (could not list them: {type(exc).__name__}: {exc}); see pipeline/config.py ExperimentConfig"
        )
    return render(select(table, stage, section))


def write(text: str) -> None:
    """Print help text; a reader that leaves early (``--help | head``) ends it without a traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _config_keys():
    """``pipeline/config_keys.py``, loaded by path: ``import pipeline.config_keys`` would first run
    ``pipeline/__init__.py``, which imports torch (seconds). The module imports only the standard library."""
    spec = importlib.util.spec_from_file_location("_config_keys", ROOT / "pipeline" / "config_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def precheck(config: str | None, overrides: list[str]) -> str | None:
    """The first mistake in the YAML or the overrides that the key table shows — a missing or unreadable
    YAML, an item that is not key=value, an unknown key (with the likely one and the file that declares it),
    a number that is not one — as the one-line message ``pipeline.config.load_config`` would give, but without
    importing torch. None: nothing seen (the schema's own checks still run after)."""
    import yaml  # omegaconf's YAML parser; the schema parses the same text again after this check

    ck = _config_keys()
    try:
        keys = {row[0]: {"type": row[1], "where": row[4]} for s in key_table() for row in s["keys"]}
    except Exception:  # the table could not be built: leave every check to the schema
        return None

    def tree(path: Path) -> dict | str:
        if not path.is_file():
            return f"config file {str(path)!r} does not exist; pass CONFIG=configs/quickstart.yaml or another YAML"
        try:
            return yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            return f"config file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}"

    dot: dict = {}
    for item in overrides:
        if "=" not in item:
            return f"override {item!r} is not key=value; write e.g. pretrain.epochs=2"
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            value = text
        node = dot
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[key.split(".")[-1]] = value
    layer = tree(Path(config)) if config else {}
    from_run, root = ck.from_run_of(dot, layer if isinstance(layer, dict) else {})
    if (dot.get("run") or {}).get("from_run"):  # an override only, as pipeline.config.config_layers
        try:
            layer = tree(ck.run_config_file(from_run, root))
        except ValueError as exc:
            return str(exc)
    if isinstance(layer, str):
        return layer
    return ck.problems(layer, keys) or ck.problems(dot, keys)
