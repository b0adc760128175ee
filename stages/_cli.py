"""What every stage entry point shares: argument parsing, config loading, and turning user mistakes
(:class:`UsageError`) into one line on stderr with exit code 2.

Two ways in, same options: ``python -m stages.<stage> [--config X] [--print-config] [key=value ...]`` (what
the Makefile calls) and the console script ``robustpretrain <stage> ...`` (:func:`cli`, also
``python -m stages <stage> ...``), which imports the stage module only when the stage actually runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable

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


def _parser(prog: str, stage: str | None) -> argparse.ArgumentParser:
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


# ---------------------------------------------------------------------------------------------- run


def main(stage: str, run: Callable, argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse ``[--config X] [--print-config] [key=value ...]``, load the config and ``run(cfg)``."""
    parser = _parser(prog or f"python -m stages.{stage}", stage)
    args = parser.parse_intermixed_args(argv)
    warnings.filterwarnings("ignore", message=".*shardshuffle.*")
    logging.getLogger("timm").setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pipeline.errors import UsageError  # not at the top: `robustpretrain` alone answers without torch

    try:
        from pipeline.config import load_config, to_yaml

        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            sys.stdout.write(to_yaml(cfg))
            return
        run(cfg)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"\n{stage}: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(130)


def stage_runner(stage: str) -> Callable:
    """The run function of ``stages.<stage>`` (``run_<stage>``, or ``run``), imported on first call."""

    def run(cfg):
        module = importlib.import_module(f"stages.{stage}")
        fn = getattr(module, f"run_{stage}", None) or module.run
        return fn(cfg)

    return run


def cli(argv: list[str] | None = None, prog: str = "robustpretrain") -> None:
    """``robustpretrain <stage> [--config X] [--print-config] [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser = _parser(prog, None)
        if not argv:
            print(f"error: name a stage: {prog} <stage> [--config X] [key=value ...], "
                  f"<stage> one of {', '.join(STAGES)} (--help for more)", file=sys.stderr)
            sys.exit(2)
        parser.parse_args(["--help"])
    stage = argv[0]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}; use one of {', '.join(STAGES)}", file=sys.stderr)
        sys.exit(2)
    main(stage, stage_runner(stage), argv[1:], prog=f"{prog} {stage}")
