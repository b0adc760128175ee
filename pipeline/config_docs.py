"""Every config key with its type, default and comment, and the dataclass (and file) behind each section,
generated from :class:`pipeline.config.ExperimentConfig` so it follows the schema (the command line's
``<stage> --help``, through the cache of ``stages/_keys.py``)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import typing

from .config_keys import declared_in, source_of, type_name


def _composition(cls: type) -> str:
    """Where a section's keys are declared: the class, and the component dataclasses it inherits from."""
    bases = [b for b in reversed(cls.__mro__[1:]) if dataclasses.is_dataclass(b)]
    if not bases:
        return source_of(cls)
    own = bool(cls.__dict__.get("__annotations__"))
    return f"{source_of(cls)} {'+' if own else '='} " + " + ".join(source_of(b) for b in bases)


def _field_comments(cls: type) -> dict[str, str]:
    """The comment of each field declared in ``cls``'s own body: the comment lines right above it (no blank
    line between) and the comment at the end of its line(s), joined."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = "".join(lines)
    comments: dict[int, str] = {}  # line (1-based, in the class source) -> comment text
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    body = ast.parse(textwrap.dedent(source)).body[0]
    out: dict[str, str] = {}
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in comments and line not in code_lines:  # a comment-only line right above
            above.insert(0, comments[line])
            line -= 1
        inline = [
            comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments
        ]
        out[node.target.id] = " ".join(c for c in above + inline if c)
    return out


def _comment(cls: type, name: str) -> str:
    """The comment of field ``name`` where it is declared: the first class in the MRO that annotates it."""
    for klass in cls.__mro__:
        if name in klass.__dict__.get("__annotations__", {}):
            return _field_comments(klass).get(name, "")
    return ""


def key_table() -> list[dict]:
    """Every config key, by section: ``[{"section", "where", "comment", "keys": [[key, type, default, comment, where]]}]``
    with the schema's defaults (as ``--print-config`` renders them, JSON-encoded) and the comments its fields
    carry. Generated from :class:`pipeline.config.ExperimentConfig`; the command line's ``--help`` shows it."""
    from omegaconf import OmegaConf

    from .config import ExperimentConfig  # imported here: the schema pulls in timm and torch

    defaults = OmegaConf.to_container(OmegaConf.structured(ExperimentConfig))
    sections: list[dict] = []

    def walk(cls: type, prefix: str, values: dict, comment: str) -> None:
        section = {"section": prefix, "where": _composition(cls), "comment": comment, "keys": []}
        sections.append(section)
        hints = typing.get_type_hints(cls)
        nested = []
        for f in dataclasses.fields(cls):
            hint, note = hints.get(f.name), _comment(cls, f.name)
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                nested.append((hint, f"{prefix}.{f.name}", values[f.name], note))
                continue
            value = values[f.name]
            shown = (
                "???" if value == "???" else json.dumps(value, ensure_ascii=False)
            )  # ??? = required (OmegaConf's MISSING)
            where = declared_in(cls, f.name)  # the file a misspelt key's suggestion names
            section["keys"].append([f"{prefix}.{f.name}", type_name(hint), shown, note, where])
        for args in nested:  # sub-sections after the section's own keys
            walk(*args)

    for f in dataclasses.fields(ExperimentConfig):
        walk(
            typing.get_type_hints(ExperimentConfig)[f.name],
            f.name,
            defaults[f.name],
            _comment(ExperimentConfig, f.name),
        )
    return sections


def _lookup(tree: dict, key: str):
    """``tree``'s value at the dotted ``key``, or ``_ABSENT``."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()


def explain(resolved: dict, yaml_file: str | None, yaml: dict, overrides: list[str], tree: dict) -> str:
    """``--print-config --explain``: every key's resolved value, where it came from and the schema's comment::

        pretrain.attack.steps: 3  # configs/quickstart.yaml (default 10) — iterations; …

    ``resolved``: the validated config as nested dicts; ``yaml``/``tree``: the YAML layer and the overrides as
    :func:`pipeline.config.config_layers` read them (fractions already resolved); ``overrides``: as typed."""
    typed = {item.partition("=")[0]: item for item in overrides}
    out = []
    for section in key_table():
        if not section["keys"]:
            continue
        out.append(f"# {section['section']}: {section['where']}")
        for key, _typ, default, comment, _where in section["keys"]:
            value = json.dumps(_lookup(resolved, key), ensure_ascii=False)
            if _lookup(tree, key) is not _ABSENT:
                source = f"override {typed.get(key, key)}"
            elif _lookup(yaml, key) is not _ABSENT:
                raw = _lookup(yaml, key)  # an interpolation says what it refers to
                source = str(yaml_file) + (f" as {raw}" if isinstance(raw, str) and "${" in raw else "")
            else:
                source = "default"
            if source != "default" and value != default:
                source += f" (default {default})"
            out.append(f"{key}: {value}  # {source}" + (f" — {comment}" if comment else ""))
    return "\n".join(out) + "\n"
