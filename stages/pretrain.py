"""Pretrain a backbone with SimCLR / ACL / DynACL on the training shards (labels unused).

Writes ``runs/<run>/pretrain/backbone*/`` (timm folders), the projection head, ``metrics.jsonl`` and a
loss curve. Re-running the same command after an interruption resumes from the last checkpoint.
"""

from pipeline.pretrain import run_pretrain

from ._cli import main

if __name__ == "__main__":
    main("pretrain", run_pretrain)
