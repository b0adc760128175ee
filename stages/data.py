"""Convert the configured dataset into webdataset shards (or check the shards you point at).

Writes ``runs/<run>/data/manifest.json`` and, for converters, ``shards/`` with ``dataset.json``.
The other stages run this implicitly when the data stage is missing.
"""

from data.prepare import run_data_stage
from pipeline.config import to_yaml

from ._cli import main


def run(cfg) -> None:
    manifest = run_data_stage(cfg, to_yaml(cfg), cfg.run.progress)
    for split, info in manifest["outputs"]["splits"].items():
        print(f"data: {split:5s} {info['count']:6d} samples  {info['urls']}")


if __name__ == "__main__":
    main("data", run)
