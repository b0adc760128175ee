"""``python -m stages <stage> [--config X] [--print-config] [key=value ...]`` — the same as ``robustpretrain``."""

from ._cli import cli

if __name__ == "__main__":
    cli(prog="python -m stages")
