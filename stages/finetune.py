"""The finetune stage: SLF / ALF / AFF with TRADES, PGD-AT or CE, from this run's pretrained backbone,
from scratch, or from an exported folder.

Model selection on the held-out validation split by PGD robust accuracy (robust overfitting is real);
writes ``runs/<run>/finetune/{best,final}/`` as timm folders, ``metrics.jsonl`` and an accuracy curve.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from torch import nn

from data.augment import CropFlip
from data.readers import expand_urls, load_labeled, stream_loader
from pipeline.config import ExperimentConfig
from pipeline.errors import UsageError
from pipeline.export import load_backbone_weights, save_timm_folder
from pipeline.models import build_model, convert_to_dual_bn, resolve_dual_bn
from pipeline.models.dual_bn import DualBatchNorm2d
from pipeline.models.probe import LinearProbe, unwrap_probe
from pipeline.objectives import PROTOCOLS, SupervisedObjective
from pipeline.plots import plot_curves
from pipeline.run import RunDir, StageRun, upstream_summary
from pipeline.train import Trainer, TrainState, per_process_batch, prepare_training, steps_per_epoch
from pipeline.train.selection import validation_accuracy

from ._cli import main
from ._runtime import config_fingerprint, open_stage
from .data import show_progress


def build_classifier(cfg: ExperimentConfig, num_classes: int) -> tuple[nn.Module, dict | None, bool]:
    """The network to fine-tune (``finetune.init``), the upstream it came from (None for scratch), and
    whether it keeps dual BN (AFF from a dual-BN pretrained backbone, ``finetune.dual_bn``)."""
    f, run_dir = cfg.finetune, RunDir.of(cfg.run)
    model = build_model(cfg.model.name, num_classes, cfg.model.mean, cfg.model.std)
    if f.head_init == "zero":  # RobustSSL starts every protocol's classifier at 0
        for p in model.get_classifier().parameters():
            nn.init.zeros_(p)
    if f.init == "scratch":
        return model, None, False
    if f.init.startswith("local-dir:"):
        load_backbone_weights(model, Path(f.init.split(":", 1)[1]), cfg.model.name, "finetune.init")
        return model, {"init": f.init}, False
    manifest = run_dir.read_manifest("pretrain")
    folders = {b: run_dir.stage("pretrain") / name for b, name in manifest["outputs"]["backbones"].items()}
    dual = f.dual_bn and not PROTOCOLS.get(f.protocol).frozen_backbone and set(folders) == {"clean", "adv"}
    if dual:
        convert_to_dual_bn(model)
        for m in model.modules():  # un-routed forwards (validation, export) use the adversarial branch
            if isinstance(m, DualBatchNorm2d):
                m.branch = "adv"
        load_backbone_weights(model, folders, cfg.model.name, "finetune.init")
        return model, {**upstream_summary(manifest), "bn_branch": "dual (clean + adv)"}, True
    branch = f.bn_branch if f.bn_branch in folders else next(iter(folders))
    load_backbone_weights(model, folders[branch], cfg.model.name, "finetune.init")
    return model, {**upstream_summary(manifest), "bn_branch": branch}, False


def exportable(raw: nn.Module) -> nn.Module:
    """The plain timm classifier to save: out of a LinearProbe, dual BN resolved to its adversarial
    branch (what RobustSSL evaluates and exports)."""
    net = unwrap_probe(raw)
    if any(isinstance(m, DualBatchNorm2d) for m in net.modules()):
        net = resolve_dual_bn(copy.deepcopy(net), "adv")
    return net


def run_finetune(cfg: ExperimentConfig) -> dict:
    f, d, num_classes = cfg.finetune, cfg.data, cfg.data.num_classes
    stage = open_stage(cfg, "finetune", f.grad_accum_steps, f.tensorboard, folder=f.stage())
    acc, size = stage.acc, stage.image_size
    if stage.splits["train"].get("labeled") is False:
        raise UsageError("the training split holds unlabeled samples (no .cls), but fine-tuning needs labels; "
                         "fine-tune on a labeled set under another run.name, starting from this backbone with "
                         f"finetune.init=local-dir:{RunDir.of(cfg.run).stage('pretrain')}/backbone_adv "
                         "(README: 'Pretrain on your own unlabeled images')")
    urls = expand_urls(stage.splits["train"]["urls"], "data.train_urls")
    batch = per_process_batch(f.batch_size, acc, "finetune.batch_size")
    spe = steps_per_epoch(f, stage.splits["train"], f.batch_size, "finetune")
    val = None
    if "val" in stage.splits:
        val = load_labeled(expand_urls(stage.splits["val"]["urls"], "data.val_urls"), size=size,
                           num_classes=num_classes, wrong_size=d.wrong_size, on_bad=d.on_bad_sample)[:2]

    net, upstream, dual = build_classifier(cfg, num_classes)
    model = LinearProbe(net) if PROTOCOLS.get(f.protocol).frozen_backbone else net
    model, optimizer, scheduler, raw = prepare_training(acc, model, f, spe)
    objective = SupervisedObjective(f.objective_name(), model, raw, f.attack, f.beta, num_classes, dual_bn=dual)
    val_attack = replace(f.attack, steps=f.val_attack_steps, start="uniform")

    def make_batches(epoch: int):
        loader = stream_loader(urls, CropFlip(size), batch_size=batch, seed=cfg.run.seed, epoch=epoch,
                               rank=acc.process_index, size=size, wrong_size=d.wrong_size, need_label=True,
                               on_bad=d.on_bad_sample, num_workers=d.num_workers, shuffle_buffer=d.shuffle_buffer)
        for x, y, _bad in loader:
            yield x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)

    fingerprint, fingerprint_config = config_fingerprint(cfg, "finetune")  # what a checkpoint depends on
    with StageRun(stage.run_dir, f.stage(), stage.yaml, {"data": upstream_summary(stage.data), "init": upstream},
                  acc.is_main_process) as run:

        def on_epoch_end(epoch: int, state: TrainState) -> dict:
            """Validation accuracy; a new best robust accuracy replaces ``best/``."""
            if val is None:
                return {}
            metrics = validation_accuracy(raw, *val, val_attack, acc, 2 * batch, cfg.run.seed)
            if metrics["val_robust_acc"] > state.extra.get("best_val_robust_acc", -1.0):
                if acc.is_main_process:
                    save_timm_folder(exportable(raw), run.dir / "best")
                state.extra.update(best_val_robust_acc=metrics["val_robust_acc"], best_epoch=epoch + 1,
                                   best_val_clean_acc=metrics["val_clean_acc"])
            return metrics

        trainer = Trainer(acc, run, f, models=[model], optimizer=optimizer, scheduler=scheduler,
                          steps_per_epoch=spe, make_batches=make_batches, step_fn=objective.step,
                          on_epoch_end=on_epoch_end, progress=show_progress(cfg.run),
                          desc=f"finetune[{f.protocol}/{objective.name}]", trackers=stage.trackers,
                          fingerprint=fingerprint, fingerprint_config=fingerprint_config)
        state = trainer.fit()
        if acc.is_main_process:
            _write_outputs(run, exportable(raw), state, has_val=val is not None, run_name=cfg.run.name)
            run.outputs.update(protocol=f.protocol, objective=objective.name, num_classes=num_classes, dual_bn=dual)
            print(_summary(run, state))
        acc.wait_for_everyone()
    acc.end_training()
    return run.outputs


def _write_outputs(run: StageRun, classifier: nn.Module, state: TrainState, has_val: bool, run_name: str) -> None:
    save_timm_folder(classifier, run.dir / "final")
    if not has_val:  # no validation split: "best" is the final model, said so in the manifest
        save_timm_folder(classifier, run.dir / "best")
    png = plot_curves(run.dir / "metrics.jsonl", "epoch", "epoch", ["val_clean_acc", "val_robust_acc"],
                      run.dir / "accuracy_curve.png", "validation accuracy", run_name=run_name,
                      best_key="val_robust_acc")
    run.outputs.update(best="best", final="final",
                       selection="val_robust_acc" if has_val else "none (no validation split)",
                       steps=state.global_step, **state.extra, **({"accuracy_curve": run.rel(png)} if png else {}))


def _summary(run: StageRun, state: TrainState) -> str:
    e = state.extra
    if "best_epoch" not in e:
        return f"[finetune] no validation split: best = final → {run.dir / 'final'}/"
    return (f"[finetune] best epoch {e['best_epoch']}: val robust {e['best_val_robust_acc']:.1%}, clean "
            f"{e['best_val_clean_acc']:.1%} → {run.dir / 'best'}/ (final: {run.dir / 'final'}/)")


if __name__ == "__main__":
    main("finetune", run_finetune)
