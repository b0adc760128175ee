"""The stage entry points' argument parser and their ``--help`` (kept free of torch imports: the key
listing is built only when a stage's ``--help`` asks for it, from a cache when fresh, ``_keys.py``). Used by
:mod:`stages._cli`."""

from __future__ import annotations

import argparse

from ._keys import listing, write  # standard library only: no torch

STAGES = ("data", "index", "pretrain", "finetune", "evaluate", "export", "protocols")
DEFAULT_CONFIG = "configs/quickstart.yaml"
_EXAMPLE_KEY = {
    "finetune": "finetune.epochs=2",
    "evaluate": "evaluate.eps=0.0157",
    "export": "export.checkpoint=final",
}


def _epilog(prog: str, stage: str | None) -> str:
    if stage is None:  # no key listing here: it needs the schema (torch); each stage's --help has its keys
        return (
            f"{prog} <stage> --help lists the stage's config keys (type, default, comment);\n"
            f"{prog} <stage> --help <section> one section's, e.g. {prog} pretrain --help attack.\n"
            "The make targets (`make help`) run the same stages and stay the documented way."
        )
    key = _EXAMPLE_KEY.get(stage, "pretrain.epochs=2")
    return (
        "config keys (key  type  = default  # comment; the schema's, under the dataclasses that declare them):\n"
        f"{listing(stage, None)}\n\n"
        f"{prog} --help <section> lists one section (e.g. attack, optim, or any section's full name).\n"
        "--print-config shows the values actually used (defaults <- YAML <- key=value, validated) and exits;\n"
        "--print-config --explain says for each key where its value came from, with the key's comment.\n"
        "The make targets (`make help`) run the same stages and stay the documented way.\n\n"
        "examples:\n"
        f"  {prog} --config {DEFAULT_CONFIG} --print-config {key}\n"
        f"  {prog} --config {DEFAULT_CONFIG} run.name=try1 {key}"
    )


class _LazyHelp(argparse.Action):
    """``--help [section]`` that builds the key listing only when asked (``_keys.py``: cached, torch-free
    when the cache is fresh). With a section, only that section's keys; an unknown one exits 2."""

    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None, nargs="?"
    ):
        super().__init__(
            option_strings,
            dest=dest,
            default=default,
            nargs=nargs,
            help=help,
            metavar="SECTION" if nargs else None,
        )

    def __call__(self, parser, namespace, values, option_string=None):
        stage = getattr(parser, "_stage", None)
        if stage is not None and values and "=" not in values:  # --help attack; not --help key=value
            try:
                text = listing(stage, values) + "\n"
            except ValueError as exc:
                parser.exit(2, f"error: {exc}\n")
        else:
            parser.epilog = _epilog(parser.prog, stage)
            text = parser.format_help()
        write(text)
        parser.exit(0)


def parser_for(prog: str, stage: str | None) -> argparse.ArgumentParser:
    description = (
        f"Run the {stage} stage of an experiment."
        if stage
        else "Run one stage of an experiment: " + ", ".join(STAGES) + "."
    )
    usage = f"{prog}{'' if stage else ' <stage>'} [--config YAML] [--print-config] [key=value ...]"
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=usage,
        description=description,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser._stage = stage  # type: ignore[attr-defined]
    if stage is None:
        parser.add_argument("stage", choices=STAGES, metavar="<stage>", help="one of: " + ", ".join(STAGES))
    if stage is None:
        parser.add_argument("-h", "--help", action=_LazyHelp, nargs=0, help="show this help")
    else:
        parser.add_argument(
            "-h",
            "--help",
            action=_LazyHelp,
            help="show this help and every config key of the stage; "
            "with SECTION (attack, optim, ...) that section's keys only",
        )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, metavar="YAML", help="experiment YAML (default: %(default)s)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as YAML and exit; runs and writes nothing",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="with --print-config: every key's value, where it came from (default, the YAML, an override) "
        "and its comment",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dot-list overrides, e.g. pretrain.epochs=2 run.name=try1",
    )
    return parser
