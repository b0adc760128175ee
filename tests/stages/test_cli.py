"""The command line: ``robustpretrain <stage>`` / ``python -m stages.<stage>``, ``--help``, ``--print-config``
and one-line errors with exit code 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config_docs import key_docs
from stages._cli import STAGES, main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("robustpretrain", path=str(Path(sys.executable).parent))
needs_script = pytest.mark.skipif(SCRIPT is None, reason="console script not installed (pip install -e .)")


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_key_docs_name_existing_files():
    docs = "\n".join(key_docs())
    for expected in ("data.*", "data/config.py DataConfig", "pipeline/models/registry.py ModelConfig",
                     "pipeline/train/loop.py TrainLoopConfig", "pipeline/objectives/contrastive.py ContrastiveConfig",
                     "pretrain.attack.*", "pipeline/attacks/base.py AttackConfig", "pipeline/train/optim.py",
                     "pipeline/evaluation/config.py EvaluateConfig"):
        assert expected in docs, docs
    for line in docs.splitlines():
        for word in line.split():
            if word.endswith(".py"):
                assert (ROOT / word).is_file(), line


@needs_script
@pytest.mark.parametrize("args", [("--help",), ("pretrain", "--help")])
def test_help_says_where_keys_are_documented(args):
    proc = _run(SCRIPT, *args)
    assert proc.returncode == 0, proc.stderr
    for expected in ("data/config.py", "pipeline/evaluation/config.py", "--print-config", "example"):
        assert expected in proc.stdout
    if args[0] == "--help":
        assert all(stage in proc.stdout for stage in STAGES)


@needs_script
def test_print_config_resolves_and_writes_nothing(tmp_path):
    root = tmp_path / "runs"
    proc = _run(SCRIPT, "pretrain", "--config", "configs/quickstart.yaml", "--print-config",
                "pretrain.epochs=7", f"run.root={root}")
    assert proc.returncode == 0, proc.stderr
    assert "\n  epochs: 7\n" in proc.stdout.split("\nfinetune:")[0]
    assert f"root: {root}" in proc.stdout
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_module_form_prints_config():
    proc = _run(sys.executable, "-m", "stages.finetune", "--print-config", "finetune.epochs=3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("run:\n") and "\nfinetune:\n" in proc.stdout


@needs_script
def test_unknown_stage_is_one_line_exit_2():
    line = _one_line_error(_run(SCRIPT, "pretrian"))
    assert "pretrian" in line and all(stage in line for stage in STAGES)


@needs_script
def test_bad_key_is_one_line_exit_2():
    line = _one_line_error(_run(SCRIPT, "pretrain", "--print-config", "pretrain.epochz=1"))
    assert "pretrain.epochz" in line


def test_usage_error_and_interrupt_keep_their_exit_codes(capsys):
    from pipeline.errors import UsageError

    def bad(cfg):
        raise UsageError("something is wrong; fix it")

    def interrupted(cfg):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        main("pretrain", bad, ["--config", str(ROOT / "configs/quickstart.yaml")])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: something is wrong; fix it\n"
    with pytest.raises(SystemExit) as exc:
        main("pretrain", interrupted, ["--config", str(ROOT / "configs/quickstart.yaml")])
    assert exc.value.code == 130
    assert "pretrain: interrupted; re-run the same command to resume" in capsys.readouterr().err
