"""The command line: ``robustpretrain <stage>`` / ``python -m stages.<stage>``, ``--help``, ``--print-config``
and one-line errors with exit code 2."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.config import ExperimentConfig
from pipeline.config_docs import key_table
from stages import _keys
from stages._cli import STAGES, cli, main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("robustpretrain", path=str(Path(sys.executable).parent))
needs_script = pytest.mark.skipif(SCRIPT is None, reason="console script not installed (pip install -e .)")


def _run(*cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def key_cache(tmp_path, monkeypatch):
    """The --help key cache in a folder of the test's own (never the user's ~/.cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _help(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli(list(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_key_table_is_the_schema():
    """Every leaf of the schema once, with its default as --print-config resolves it; files that exist."""
    sections = key_table()
    listed = {key: default for s in sections for key, _typ, default, _c, _where in s["keys"]}
    assert len(listed) == sum(len(s["keys"]) for s in sections)  # no key twice

    def leaves(node, prefix=""):
        for k, v in node.items():
            yield from (
                leaves(v, f"{prefix}{k}.")
                if isinstance(v, dict) and v and k != "kwargs"
                else [(prefix + k, v)]
            )

    schema = dict(leaves(OmegaConf.to_container(OmegaConf.structured(ExperimentConfig))))
    assert listed.keys() == schema.keys()
    assert listed["pretrain.attack.steps"] == str(schema["pretrain.attack.steps"]) == "5"
    assert listed["finetune.init"] == '"pretrain"' and listed["finetune.objective"] == '""'
    for s in sections:
        for word in s["where"].split() + [w for k in s["keys"] for w in k[4].split()]:
            if word.endswith(".py"):
                assert (ROOT / word).is_file(), s
    where = {k[0]: k[4] for s in sections for k in s["keys"]}  # the class that declares each key
    assert where["pretrain.epochs"] == "pipeline/train/loop.py TrainLoopConfig"
    assert where["pretrain.attack.eps"] == "pipeline/attacks/threat.py ThreatModel"


def test_stage_help_lists_its_keys_with_type_default_and_comment(capsys, key_cache):
    code, out, _ = _help(capsys, "pretrain", "--help")
    assert code == 0
    # one line a key: key, type, default, the comment the schema carries
    assert re.search(
        r"^  pretrain\.attack\.eps +float +\= 0\.03137254901960784 +# radius, pixel units$", out, re.M
    ), out
    assert re.search(r"^  pretrain\.attack\.steps +int +\= 5 +# iterations", out, re.M)
    assert re.search(r"^  run\.name +str +\= \"quickstart\" +# the run directory", out, re.M)
    # the comment lines above a field count as its comment
    assert re.search(
        r"^  run\.channels_last +str +\= \"auto\" +# faster passes .* auto \| true \| false", out, re.M
    )
    # grouped by section, each under the dataclass(es) that declare it
    assert (
        "\npretrain.attack:  (pipeline/attacks/base.py AttackConfig" in out
        and "data/config.py DataConfig" in out
    )
    assert "pretrain.optim.lr" in out and "finetune.epochs" not in out and "evaluate.eps" not in out
    assert "--print-config" in out and "examples:" in out
    code, out, _ = _help(capsys, "finetune", "--help")
    assert "finetune.attack.eps" in out and "pretrain.attack.eps" not in out


@pytest.mark.parametrize(
    "stage, section, prefix",
    [
        ("pretrain", "attack", "pretrain.attack."),
        ("finetune", "attack", "finetune.attack."),
        ("pretrain", "lpaft.probe", "pretrain.lpaft.probe."),
        ("evaluate", "finetune.attack", "finetune.attack."),
        ("data", "run", "run."),
    ],
)
def test_help_section_lists_that_section_only(capsys, key_cache, stage, section, prefix):
    code, out, err = _help(capsys, stage, "--help", section)
    assert code == 0 and err == ""
    keys = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert keys and all(k.startswith(prefix) for k in keys), out
    assert "usage:" not in out


def test_help_unknown_section_is_one_line_exit_2(capsys, key_cache):
    code, out, err = _help(capsys, "pretrain", "--help", "atack")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: no config section 'atack'")
    assert "pretrain.attack" in err


def test_help_key_listing_is_cached_and_rebuilt_when_the_sources_change(key_cache, monkeypatch):
    first = _keys.key_table()
    assert list(key_cache.glob("robustpretrain/config-keys-*.json"))
    import pipeline.config_docs

    calls = []
    monkeypatch.setattr(pipeline.config_docs, "key_table", lambda: calls.append(1) or first)
    assert _keys.key_table() == first and calls == []  # fresh: read from the cache
    monkeypatch.setattr(_keys, "_digest", lambda: "edited sources")
    assert _keys.key_table() == first and calls == [1]  # stale: built again


def test_help_does_not_import_torch(key_cache):
    """`robustpretrain --help` never needs the schema; a stage's --help reads a fresh cache without it."""
    _keys.key_table()  # the cache, as the first --help leaves it
    probe = (
        "import sys\nfrom stages._cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
    )
    for args in (["--help"], ["pretrain", "--help"], ["finetune", "--help", "attack"]):
        proc = _run(sys.executable, "-c", probe, *args, env={"XDG_CACHE_HOME": str(key_cache)})
        assert proc.stderr.strip().endswith("no torch"), (args, proc.stderr)
        assert proc.stdout


@needs_script
def test_top_level_help_names_the_stages_and_the_key_listing():
    proc = _run(SCRIPT, "--help")
    assert proc.returncode == 0, proc.stderr
    assert all(stage in proc.stdout for stage in STAGES)
    assert "<stage> --help" in proc.stdout and "pretrain --help attack" in proc.stdout


@needs_script
def test_print_config_resolves_and_writes_nothing(tmp_path):
    root = tmp_path / "runs"
    proc = _run(
        SCRIPT,
        "pretrain",
        "--config",
        "configs/quickstart.yaml",
        "--print-config",
        "pretrain.epochs=7",
        f"run.root={root}",
    )
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


def test_config_mistakes_are_answered_without_torch(key_cache):
    """A misspelt key and a mistyped number: the one-line error comes from the cached key table, before
    torch is imported; the suggestion names the file that declares the key."""
    _keys.key_table()
    probe = (
        "import sys\nfrom stages._cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    print('exit', e.code, 'torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
    )
    cases = {
        "pretrain.epoch=1": "error: unknown config key 'pretrain.epoch'; did you mean 'pretrain.epochs'? "
        "(declared in pipeline/train/loop.py TrainLoopConfig)",
        "pretrain.epochs=many": "error: config key 'pretrain.epochs': Value 'many' could not be converted",
        "run.from_run=/nonexistent": "error: run.from_run=/nonexistent: no finished stage there",
    }
    for arg, expected in cases.items():
        proc = _run(sys.executable, "-c", probe, "pretrain", arg, env={"XDG_CACHE_HOME": str(key_cache)})
        first, last = proc.stderr.strip().splitlines()
        assert first.startswith(expected) and last == "exit 2 no torch", proc.stderr


def test_print_config_explain_names_each_keys_source(capsys, tmp_path):
    main("evaluate", lambda cfg: None, ["--print-config", "--explain", "evaluate.eps=8/255"])
    lines = capsys.readouterr().out.splitlines()
    by_key = {line.split(":")[0]: line for line in lines if not line.startswith("#")}
    assert by_key["evaluate.eps"] == (
        "evaluate.eps: 0.03137254901960784  # override evaluate.eps=8/255 — radius, pixel units"
    )
    assert by_key["pretrain.attack.steps"].startswith(
        "pretrain.attack.steps: 3  # configs/quickstart.yaml (default 5) — iterations"
    )
    assert by_key["evaluate.seed"].startswith("evaluate.seed: 0  # default")
    assert by_key["finetune.attack.eps"].startswith(
        "finetune.attack.eps: 0.03137254901960784  # configs/quickstart.yaml as ${pretrain.attack.eps}"
    )
    assert len(by_key) == sum(len(s["keys"]) for s in key_table())  # every key, once


def test_a_fraction_runs_resolved_and_says_so(capsys):
    seen = []
    main("evaluate", lambda cfg: seen.append(cfg.evaluate.eps), ["evaluate.eps=8/255"])
    assert seen == [8 / 255] and f"{seen[0]:.4f}" == "0.0314"
    assert "[evaluate] evaluate.eps=8/255 = 0.0313725\n" in capsys.readouterr().out
