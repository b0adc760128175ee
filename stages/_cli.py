"""What every stage entry point shares: argument parsing, config loading, and turning user mistakes
(:class:`UsageError`) into one line on stderr with exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable

from pipeline.errors import UsageError


def main(stage: str, run: Callable, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}",
                                     description=f"Run the {stage} stage of an experiment.")
    parser.add_argument("--config", default="configs/quickstart.yaml", help="experiment YAML (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. pretrain.epochs=2 run.name=try1")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*shardshuffle.*")
    logging.getLogger("timm").setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from pipeline.config import load_config

        cfg = load_config(args.config, args.overrides)
        run(cfg)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"\n{stage}: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(130)
