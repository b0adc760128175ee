"""Thin command-line entry points, one per stage: ``python -m stages.<stage> --config X key=value ...``."""
