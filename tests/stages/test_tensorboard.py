"""`run.log_with=[tensorboard]` (or the older `pretrain.tensorboard=true` / `finetune.tensorboard=true`):
accelerate's TensorBoard tracker receives the per-step scalars of metrics.jsonl and the epoch metrics,
under <run>/<stage>/tensorboard; other trackers are optional and say how to install them."""

import json

import pytest

from pipeline.run import RunDir
from stages.finetune import run_finetune
from stages.pretrain import run_pretrain

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(log_dir):
    files = list(log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {log_dir}"
    acc = event_accumulator.EventAccumulator(str(files[0].parent))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize(
    "switch", [["pretrain.tensorboard=true", "finetune.tensorboard=true"], ["run.log_with=[tensorboard]"]]
)
def test_tensorboard_tracker_logs_the_step_and_epoch_metrics(tiny_cfg, switch):
    cfg = tiny_cfg("pretrain.method=acl", *switch)  # the old per-stage switch and run.log_with
    run_pretrain(cfg)
    run_finetune(cfg)
    for stage in ("pretrain", "finetune"):
        d = RunDir.of(cfg.run).stage(stage)
        logged = _scalars(d / "tensorboard")
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in rows if r["kind"] == "step"]
        assert len(losses) == 2
        assert logged["loss"] == pytest.approx(losses, rel=1e-6)
        assert "lr" in logged
        if stage == "finetune":  # epoch metrics reach the tracker too
            epochs = [r for r in rows if r["kind"] == "epoch"]
            assert logged["epoch/val_robust_acc"] == pytest.approx([r["val_robust_acc"] for r in epochs])
            assert "epoch/mean_loss" in logged and "epoch/best_val_robust_acc" in logged
    assert "attack_gain" in _scalars(RunDir.of(cfg.run).stage("pretrain") / "tensorboard")


def test_unknown_or_missing_tracker_is_a_one_line_error():
    import importlib.util

    from pipeline.config import load_config
    from pipeline.errors import UsageError

    with pytest.raises(
        UsageError, match=r"^run.log_with\[0\]='neptune' is invalid; use one of: tensorboard, wandb, mlflow$"
    ):
        load_config(None, ["run.log_with=[neptune]"])
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(
            UsageError, match=r"run.log_with\[0\]='wandb' is invalid; install it first: pip install"
        ):
            load_config(None, ["run.log_with=[wandb]"])
