"""Config errors: one line, naming the key and the fix, exit code 2, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("pretrain.attack.eps=2", "pretrain.attack.eps=2.0 is invalid; use a value in (0, 1]"),
        ("finetune.attack.eps=0", "finetune.attack.eps=0.0 is invalid"),
        ("pretrain.batch_size=0", "pretrain.batch_size=0 is invalid; use a batch size of at least 1"),
        ("finetune.attack.steps=-1", "finetune.attack.steps=-1 is invalid; use 0 or more steps"),
        (
            "model.name=resnet99",
            "model.name='resnet99' is not a registered model; use one of: resnet10_cifar_tiny",
        ),
        ("data.dataset=mnistx", "data.dataset='mnistx' is invalid; use one of: digits"),
        ("evaluate.autoattack.version=custom", "evaluate.autoattack.attacks is empty"),
        ("pretrain.method=byol", "pretrain.method='byol' is invalid; use one of: simclr, acl, dynacl"),
        ("pretrain.nope=1", "unknown config key"),
        ("pretrain.epochs=many", "config key 'pretrain.epochs'"),
        ("finetune.protocol=slf", None),  # valid: objective defaults to the protocol's (ce)
        ("evaluate.threats=[{norm: L2, eps: -1}]", "evaluate.threats[0].eps=-1.0 is invalid"),
        ("evaluate.threats=[{norm: L2, epsilon: 1}]", "unknown config key 'epsilon'"),  # omegaconf: no path
        ("evaluate.corruptions.names=[rain]", "evaluate.corruptions.names[0]='rain' is invalid"),
        ("evaluate.transfer.tolerance=2", "evaluate.transfer.tolerance=2.0 is invalid"),
    ],
)
def test_config_errors_are_one_line(override, expected):
    if expected is None:
        assert load_config(None, [override]).finetune.protocol == "slf"
        return
    with pytest.raises(UsageError) as err:
        load_config(None, [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_threats_corruptions_and_transfer_from_yaml_or_overrides(tmp_path):
    """The issue's YAML and the same keys as key=value overrides give the same config; threats[0] is
    what evaluate.norm/eps then say."""
    y = tmp_path / "x.yaml"
    y.write_text(
        "evaluate:\n  threats: [{norm: Linf, eps: 0.0314}, {norm: L2, eps: 0.5}]\n"
        "  corruptions: {enabled: true}\n  transfer: {enabled: true}\n"
    )
    overrides = [
        "evaluate.threats=[{norm: Linf, eps: 0.0314}, {norm: L2, eps: 0.5}]",
        "evaluate.corruptions.enabled=true",
        "evaluate.transfer.enabled=true",
    ]
    a, b = load_config(y).evaluate, load_config(None, overrides).evaluate
    assert a == b and (a.norm, a.eps) == ("Linf", 0.0314) and a.extra_threats()[0].norm == "L2"
    assert a.corruptions.enabled and a.transfer.enabled


def test_yaml_then_dotlist_precedence(tmp_path):
    y = tmp_path / "x.yaml"
    y.write_text("pretrain:\n  epochs: 7\n  batch_size: 64\n")
    cfg = load_config(y, ["pretrain.epochs=3"])
    assert (cfg.pretrain.epochs, cfg.pretrain.batch_size) == (3, 64)


def test_missing_yaml_file():
    with pytest.raises(UsageError, match="does not exist"):
        load_config("configs/nope.yaml", [])


def test_slf_with_adversarial_objective_is_refused():
    with pytest.raises(UsageError, match="finetune.protocol=slf trains the head on clean data"):
        load_config(None, ["finetune.protocol=slf", "finetune.objective=trades"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["pretrain.attack.eps=2"], "pretrain.attack.eps"),
        (["pretrain.bogus=1"], "unknown config key"),
        (
            [
                "data.dataset=imagefolder",
                "data.train_source=/nonexistent/train.tar",
                "data.test_source=/nonexistent/t.tar",
            ],
            "does not exist",
        ),
    ],
)
def test_cli_usage_errors_exit_2_and_write_nothing(tmp_path, args, expected):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.pretrain",
            "--config",
            "configs/quickstart.yaml",
            f"run.root={tmp_path / 'runs'}",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    # the data stage may have created its directory before failing on the source, but no shards or manifest
    assert not list((tmp_path / "runs").rglob("*.tar"))
    assert not (tmp_path / "runs" / "quickstart" / "pretrain").exists()


def test_lpaft_is_not_in_the_contrastive_phase_fingerprint():
    """Switching DynACL++'s post-processing on after a finished pretrain resumes the contrastive phase;
    other pretrain settings still count."""
    from pipeline.config import checkpoint_fingerprint

    base = load_config(None, ["pretrain.method=dynacl"])
    pp = load_config(
        None, ["pretrain.method=dynacl", "pretrain.lpaft.enabled=true", "pretrain.lpaft.probe.epochs=3"]
    )
    other = load_config(None, ["pretrain.method=dynacl", "pretrain.epochs=7"])
    assert checkpoint_fingerprint(base, "pretrain")[0] == checkpoint_fingerprint(pp, "pretrain")[0]
    assert checkpoint_fingerprint(base, "pretrain")[0] != checkpoint_fingerprint(other, "pretrain")[0]


def test_a_misspelt_key_gets_the_likely_one_and_its_file():
    with pytest.raises(UsageError) as exc:
        load_config("configs/quickstart.yaml", ["pretrain.epoch=1"])
    assert str(exc.value) == (
        "unknown config key 'pretrain.epoch'; did you mean 'pretrain.epochs'? "
        "(declared in pipeline/train/loop.py TrainLoopConfig)"
    )


def test_fractions_are_accepted_where_a_float_is_declared(tmp_path):
    yaml = tmp_path / "x.yaml"
    yaml.write_text("pretrain:\n  attack: {eps: 4/255, step_size: 1/255}\n")
    cfg = load_config(yaml, ["evaluate.eps=8/255", "evaluate.sweep.eps=[2/255,0.05]"])
    assert cfg.evaluate.eps == 8 / 255 and f"{cfg.evaluate.eps:.4f}" == "0.0314"
    assert cfg.evaluate.sweep.eps == [2 / 255, 0.05]
    assert cfg.pretrain.attack.eps == 4 / 255 and cfg.pretrain.attack.step_size == 1 / 255
    with pytest.raises(UsageError, match=r"'pretrain.epochs'.*give an int"):  # an int is not a fraction
        load_config(None, ["pretrain.epochs=8/2"])


def test_run_from_run_reuses_a_runs_resolved_config(tmp_path):
    from pipeline.config import to_yaml

    stage = tmp_path / "runs" / "dyn1" / "finetune"
    stage.mkdir(parents=True)
    earlier = load_config(
        "configs/quickstart.yaml", ["run.name=dyn1", "pretrain.method=dynacl", "finetune.epochs=4"]
    )
    (stage / "config.yaml").write_text(to_yaml(earlier))
    with pytest.raises(UsageError, match="no finished stage there"):  # no complete manifest yet
        load_config("configs/quickstart.yaml", [f"run.from_run={tmp_path / 'runs' / 'dyn1'}"])
    (stage / "manifest.json").write_text('{"status": "complete"}')
    cfg = load_config(
        "configs/quickstart.yaml", [f"run.from_run={tmp_path / 'runs' / 'dyn1'}", "export.checkpoint=final"]
    )
    assert (cfg.run.name, cfg.pretrain.method, cfg.finetune.epochs) == ("dyn1", "dynacl", 4)
    assert cfg.export.checkpoint == "final"  # overrides still apply on top
    by_name = load_config(None, ["run.from_run=dyn1", f"run.root={tmp_path / 'runs'}"])  # under run.root
    assert by_name.finetune.epochs == 4
    # the new stage's config.yaml records run.from_run; read as --config it is that config, not the old run's
    (tmp_path / "new.yaml").write_text(
        to_yaml(load_config(None, [f"run.from_run={stage}", "finetune.epochs=9"]))
    )
    assert load_config(tmp_path / "new.yaml").finetune.epochs == 9
