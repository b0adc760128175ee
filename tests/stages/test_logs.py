"""A redirected run reads as a short story: one line per epoch (losses, validation with the best so far,
lr, images/s, ETA), a summary at the end of the stage, and no progress-bar spam when stdout is a file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _redirected(stage: str, args: list[str], tmp_path: Path) -> tuple[str, str]:
    """Run ``stage`` with stdout and stderr in files, as ``make … > run.log 2>&1`` does; (stdout, stderr)."""
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "stages", stage, "--config", "configs/quickstart.yaml", *args],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            timeout=300,
        )
    stdout, stderr = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert proc.returncode == 0, stderr[-2000:]
    assert "\r" not in stdout + stderr  # no carriage-return progress bars in a log file
    return stdout, stderr


def test_redirected_finetune_log_has_epoch_lines_and_no_bars(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    args = [
        f"run.root={cfg.run.root}",
        "run.name=log",
        "run.num_threads=1",
        "data.dataset=shards",
        f"data.train_urls={cfg.data.train_urls}",
        f"data.val_urls={cfg.data.val_urls}",
        f"data.test_urls={cfg.data.test_urls}",
        "data.num_classes=4",
        "finetune.init=scratch",
        "finetune.epochs=2",
        "finetune.batch_size=32",
        "finetune.attack.steps=1",
        "finetune.val_attack_steps=1",
    ]
    # run.progress stays on (the default): bars must switch themselves off because stderr is not a terminal
    stdout, stderr = _redirected("finetune", args, tmp_path)
    epochs = [line for line in stdout.splitlines() if line.startswith("[finetune] epoch")]
    assert len(epochs) == 2, stdout
    for line in epochs:
        for part in ("loss ", "val clean ", "robust ", "(best ", "lr ", "img/s", "ETA "):
            assert part in line, line
    assert "[finetune] done: 2 epochs, 4 steps" in stdout
    assert "[finetune] best epoch " in stdout
    assert stdout.startswith(
        "[finetune] model resnet10_cifar_tiny, weights random initialisation, normalisation"
    )

    # the evaluation of that run: a line per phase and chunk, before the summary table
    evaluate = [
        "evaluate.n_examples=8",
        "evaluate.batch_size=8",
        "evaluate.chunk_size=4",
        "evaluate.pgd.steps=1",
        "evaluate.sweep.enabled=false",
        "evaluate.smoothing.enabled=false",
        "evaluate.calibration.enabled=false",
        "evaluate.autoattack.version=custom",
        "evaluate.autoattack.attacks=[apgd-ce]",
    ]
    stdout, _ = _redirected("evaluate", [*args, *evaluate], tmp_path)
    lines = stdout.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("| metric"))
    for phase in ("clean ", "pgd ", "autoattack:apgd-ce "):
        mine = [
            i for i, line in enumerate(lines) if f"  {phase}" in line and line.startswith("[evaluate] chunk")
        ]
        assert len(mine) == 2 and max(mine) < table, (phase, stdout)  # two chunks, both before the report
        assert all("elapsed 0:" in lines[i] for i in mine)
    assert sum("done in" in line and "ETA" in line for line in lines) == 2
    report = (Path(args[0].split("=", 1)[1]) / "log" / "evaluate" / "report.md").read_text()
    assert "Model: `resnet10_cifar_tiny`; normalisation mean [0.5, 0.5, 0.5] std [0.5, 0.5, 0.5]" in report
