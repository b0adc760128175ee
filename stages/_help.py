"""The stage entry points' argument parser and their ``--help`` (kept free of torch imports: the key
documentation is built only when ``--help`` asks for it). Used by :mod:`stages._cli`."""

from __future__ import annotations

import argparse

STAGES = ("data", "index", "pretrain", "finetune", "evaluate", "export", "protocols")
DEFAULT_CONFIG = "configs/quickstart.yaml"


_EXAMPLE_KEY = {"finetune": "finetune.epochs=2", "evaluate": "evaluate.eps=0.0157", "export": "export.checkpoint=final"}


def _epilog(prog: str, stage: str | None) -> str:
    try:
        from pipeline.config_docs import key_docs  # imported here: the schema pulls in torch

        docs = "\n".join(key_docs())
    except Exception as exc:  # help must never fail; the schema is still in pipeline/config.py
        docs = f"  (could not list them: {exc}); see pipeline/config.py ExperimentConfig"
    key = _EXAMPLE_KEY.get(stage or "pretrain", "pretrain.epochs=2")
    prog = prog if stage else f"{prog} pretrain"
    return (
        "where every key is documented (each field carries a comment there):\n"
        f"{docs}\n\n"
        "--print-config shows the values actually used (defaults <- YAML <- key=value, validated) and exits.\n"
        "The make targets (`make help`) run the same stages and stay the documented way.\n\n"
        "examples:\n"
        f"  {prog} --config {DEFAULT_CONFIG} --print-config {key}\n"
        f"  {prog} --config {DEFAULT_CONFIG} run.name=try1 {key}"
    )


class _LazyHelp(argparse.Action):
    """``--help`` that builds the key documentation only when asked (it imports the config schema)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.epilog = _epilog(parser.prog, getattr(parser, "_stage", None))
        parser.print_help()
        parser.exit(0)


def parser_for(prog: str, stage: str | None) -> argparse.ArgumentParser:
    description = (f"Run the {stage} stage of an experiment." if stage else
                   "Run one stage of an experiment: " + ", ".join(STAGES) + ".")
    usage = f"{prog}{'' if stage else ' <stage>'} [--config YAML] [--print-config] [key=value ...]"
    parser = argparse.ArgumentParser(prog=prog, usage=usage, description=description, add_help=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser._stage = stage  # type: ignore[attr-defined]
    if stage is None:
        parser.add_argument("stage", choices=STAGES, metavar="<stage>", help="one of: " + ", ".join(STAGES))
    parser.add_argument("-h", "--help", action=_LazyHelp, help="show this help (and where every key is documented)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="YAML", help="experiment YAML (default: %(default)s)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit; runs and writes nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dot-list overrides, e.g. pretrain.epochs=2 run.name=try1")
    return parser
