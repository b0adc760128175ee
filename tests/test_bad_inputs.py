"""The crafted bad inputs of the README's table that are not covered next to their modules:
truncated tar, a labeled sample without .cls, a pickle posing as weights, a NaN loss, two writers."""

import fcntl
import io
import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from data.readers import expand_urls, load_labeled
from data.shards import write_split
from data.spec import ShardSpec
from pipeline.errors import DataError, RunLocked, UsageError
from pipeline.run import RunDir
from stages.finetune import run_finetune

ROOT = Path(__file__).resolve().parents[1]


def test_truncated_tar_is_a_one_line_error(tmp_path, tiny_shards):
    good = expand_urls(tiny_shards["test"], "k")[0]
    cut = tmp_path / "cut-000000.tar"
    data = Path(good).read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(DataError, match="unreadable shard data|not a decodable|does not|fix the shard"):
        load_labeled(ShardSpec.of_urls([str(cut)], image_size=32), num_classes=4)
    # skip mode keeps what can be read and counts the rest
    x, _, skipped = load_labeled(ShardSpec.of_urls([str(cut)], image_size=32, on_bad="skip"), num_classes=4)
    assert 0 < len(x) < 16 and skipped >= 1


def test_labeled_sample_without_cls(tmp_path):
    path = tmp_path / "nolabel-000000.tar"
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(png, format="PNG")
    with tarfile.open(path, "w") as tf:
        ti = tarfile.TarInfo("s_0.png")
        ti.size = len(png.getvalue())
        tf.addfile(ti, io.BytesIO(png.getvalue()))
    with pytest.raises(DataError, match="labeled sample without .cls"):
        load_labeled(ShardSpec.of_urls([str(path)], image_size=32), num_classes=4)


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/robustpretrain_pwned"),))


def test_pickle_posing_as_weights_is_refused(tmp_path):
    marker = Path("/tmp/robustpretrain_pwned")
    marker.unlink(missing_ok=True)
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": _Evil()}))
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet10_cifar_tiny", "num_classes": 4}))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": _Evil()}))
    from pipeline.export import load_safetensors_into, load_timm_folder
    from pipeline.models import build_model

    with pytest.raises(UsageError, match="cannot load"):
        load_timm_folder(folder)
    with pytest.raises(UsageError, match="only safetensors weights are read"):
        load_safetensors_into(
            build_model("resnet10_cifar_tiny", 4, (0.5,) * 3, (0.5,) * 3), tmp_path / "evil.pt"
        )
    assert not marker.exists(), "a pickle was executed"


def test_pickles_planted_in_a_checkpoint_never_run(tiny_cfg, monkeypatch):
    """Resume reads weights through safetensors, the optimiser and RNG states with weights_only loads and
    the loop's state as JSON: a planted pickle is either never read or refused, and never executed."""
    from pipeline.train import loop

    original = loop.Trainer._one_step
    finetune = run_finetune

    def interrupt_at(m, step):
        def one_step(self, batch, bar):
            if self.state.global_step == step:
                raise KeyboardInterrupt
            return original(self, batch, bar)

        m.setattr(loop.Trainer, "_one_step", one_step)

    marker = Path("/tmp/robustpretrain_pwned")
    marker.unlink(missing_ok=True)
    cfg = tiny_cfg("finetune.init=scratch", "finetune.epochs=2", "finetune.checkpoint_every_steps=1")
    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            finetune(cfg)
    (last,) = sorted((RunDir.of(cfg.run).stage("finetune") / "checkpoints").glob("step_*"))[-1:]
    # what accelerate unpickles with weights_only=False for objects registered for checkpointing (we
    # register none): refused before it is read
    (last / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(
        UsageError, match=r"^cannot resume from .*step_00000003.*delete the checkpoint folder"
    ):
        finetune(cfg)
    (last / "custom_checkpoint_0.pkl").unlink()
    # a pickle posing as the optimiser state: refused by the weights_only load
    good = (last / "optimizer.bin").read_bytes()
    (last / "optimizer.bin").write_bytes(pickle.dumps({"state": _Evil()}))
    with pytest.raises(
        UsageError, match=r"^cannot resume from .*UnpicklingError.*delete the checkpoint folder"
    ):
        finetune(cfg)
    assert not marker.exists(), "a pickle was executed"
    (last / "optimizer.bin").write_bytes(good)
    finetune(cfg)  # the untouched checkpoint resumes and finishes
    assert (
        json.loads((RunDir.of(cfg.run).stage("finetune") / "manifest.json").read_text())["status"]
        == "complete"
    )


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tiny_cfg):
    cfg = tiny_cfg(
        "finetune.init=scratch",
        "finetune.epochs=3",
        "finetune.checkpoint_every_steps=1",
        "finetune.optim.lr=1e30",
        "finetune.optim.schedule=constant",
    )
    with pytest.raises(UsageError, match=r"loss is (nan|inf) at step \d+; lower the learning rate"):
        run_finetune(cfg)
    d = RunDir.of(cfg.run).stage("finetune")
    assert json.loads((d / "manifest.json").read_text())["status"] == "failed"
    checkpoints = sorted((d / "checkpoints").glob("step_*"))
    assert checkpoints, "the last good checkpoint must be kept"
    from safetensors.torch import load_file

    assert load_file(str(checkpoints[-1] / "model.safetensors"))


def test_second_writer_of_the_same_run_directory_is_refused(tiny_cfg):
    cfg = tiny_cfg("finetune.init=scratch")
    d = RunDir.of(cfg.run).stage("finetune")
    d.mkdir(parents=True)
    with open(d / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process is writing
        with pytest.raises(RunLocked, match="is being written by another process"):
            run_finetune(cfg)
    assert not (d / "manifest.json").exists()


def test_wrong_size_image_policy_at_read_time(tmp_path):
    import numpy as np

    from data.shards import RawSample

    info = write_split(
        iter([RawSample(label=0, array=np.zeros((40, 40, 3), np.uint8))]), tmp_path, "x", 40, 10
    )
    x, _, _ = load_labeled(
        ShardSpec.of_urls(expand_urls(info["urls"], "k"), image_size=32), num_classes=2
    )  # resized by default
    assert x.shape[-1] == 32
    with pytest.raises(DataError, match="expected 32x32"):
        load_labeled(
            ShardSpec.of_urls(expand_urls(info["urls"], "k"), image_size=32, wrong_size="error"),
            num_classes=2,
        )


def _cli(stage: str, cfg, *extra: str) -> subprocess.CompletedProcess:
    args = [
        f"run.root={cfg.run.root}",
        "run.name=cli",
        "run.progress=false",
        "data.dataset=shards",
        f"data.train_urls={cfg.data.train_urls}",
        f"data.test_urls={cfg.data.test_urls}",
        "data.num_classes=4",
        *extra,
    ]
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_nan_via_cli_exits_2_one_line(tiny_cfg):
    cfg = tiny_cfg()
    proc = _cli(
        "finetune",
        cfg,
        "finetune.init=scratch",
        "finetune.epochs=1",
        "finetune.batch_size=32",
        "finetune.attack.steps=1",
        "finetune.optim.lr=1e30",
        "finetune.optim.schedule=constant",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "[finetune] loss is nan" in lines[0] or "[finetune] loss is inf" in lines[0]
    manifest = json.loads((Path(cfg.run.root) / "cli" / "finetune" / "manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_missing_init_folder_via_cli_exits_2_one_line(tiny_cfg):
    proc = _cli("finetune", tiny_cfg(), "finetune.init=local-dir:/nonexistent")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is not an exported model folder" in proc.stderr
