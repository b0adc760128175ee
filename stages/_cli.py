"""What every stage entry point shares: argument parsing (the parser and its help: ``_help.py``), config
loading, and turning user mistakes (:class:`UsageError`) into one line on stderr with exit code 2.

Two ways in, same options: ``python -m stages.<stage> [--config X] [--print-config] [key=value ...]`` (what
the Makefile calls) and the console script ``robustpretrain <stage> ...`` (:func:`cli`, also
``python -m stages <stage> ...``), which imports the stage module only when the stage actually runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable

from ._help import STAGES, parser_for
from ._keys import precheck

__all__ = ["STAGES", "cli", "main", "stage_runner"]


def main(stage: str, run: Callable, argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse ``[--config X] [--print-config] [key=value ...]``, load the config and ``run(cfg)``."""
    parser = parser_for(prog or f"python -m stages.{stage}", stage)
    args = parser.parse_intermixed_args(argv)
    warnings.filterwarnings("ignore", message=".*shardshuffle.*")
    logging.getLogger("timm").setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    mistake = precheck(args.config, args.overrides)  # from the cached key table: torch is not imported yet
    if mistake:
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)
    from pipeline.errors import UsageError  # not at the top: `robustpretrain` alone answers without torch

    try:
        from pipeline.config import config_layers, load_config, to_yaml

        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            sys.stdout.write(_explained(cfg, args.config, args.overrides) if args.explain else to_yaml(cfg))
            return
        for line in _fractions(args.overrides):
            print(f"[{stage}] {line}")
        if cfg.run.from_run:
            print(
                f"[{stage}] config: {config_layers(args.config, args.overrides).yaml_file} (run.from_run; "
                f"--config {args.config} not read), then the key=value overrides"
            )
        run(cfg)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"\n{stage}: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(130)


def _fractions(overrides: list[str]) -> list[str]:
    """``evaluate.eps=8/255 = 0.03137``: each fraction given on the command line, resolved (the YAML's show in
    ``--print-config``)."""
    from pipeline.config_keys import fraction

    resolved = [(item, fraction(item.partition("=")[2])) for item in overrides]
    return [f"{item} = {value:.6g}" for item, value in resolved if value is not None]


def _explained(cfg, config: str, overrides: list[str]) -> str:
    """``--print-config --explain``: each key's value, its source (default, which YAML, an override) and comment."""
    from omegaconf import OmegaConf

    from pipeline.config import config_layers
    from pipeline.config_docs import explain

    layers = config_layers(config, overrides)
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg))
    return explain(resolved, layers.yaml_file, layers.yaml, overrides, layers.overrides)


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
        parser = parser_for(prog, None)
        if not argv:
            print(
                f"error: name a stage: {prog} <stage> [--config X] [key=value ...], "
                f"<stage> one of {', '.join(STAGES)} (--help for more)",
                file=sys.stderr,
            )
            sys.exit(2)
        parser.parse_args(["--help"])
    stage = argv[0]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}; use one of {', '.join(STAGES)}", file=sys.stderr)
        sys.exit(2)
    main(stage, stage_runner(stage), argv[1:], prog=f"{prog} {stage}")
