"""The README stays true: every config file it names exists and loads, every make target it names exists."""

import re
from pathlib import Path

import pytest

from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NAMED = sorted(set(re.findall(r"configs/[\w/.-]+\.(?:yaml|sbatch)", README)))


@pytest.mark.parametrize("path", NAMED)
def test_config_named_in_readme_exists_and_loads(path):
    assert (ROOT / path).is_file(), f"README names {path}, which does not exist"
    if path.endswith(".yaml") and "/accelerate/" not in path:
        load_config(ROOT / path)  # validates every key and value


def test_make_targets_named_in_readme_exist():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    code = re.findall(r"```.*?```", README, re.S) + re.findall(r"`[^`\n]+`", README)
    commands = [m for block in code for m in re.findall(r"(?:^|[`\s])make ((?:[a-z-]+ ?)+)", block, re.M)]
    named = {t for cmd in commands for t in cmd.split()}
    assert {"pretrain", "finetune", "evaluate", "index", "protocols"} <= named
    assert named <= targets, named - targets
