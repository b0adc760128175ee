"""The finetune stage: SLF / ALF / AFF with TRADES, PGD-AT or CE, from this run's pretrained backbone,
from scratch, or from an exported folder.

Model selection on the held-out validation split by PGD robust accuracy (robust overfitting is real);
writes ``runs/<run>/finetune/{best,final}/`` as timm folders, ``metrics.jsonl`` and an accuracy curve.
"""

from __future__ import annotations

from dataclasses import replace

from data.augment import CropFlip
from data.readers import expand_urls, load_labeled, stream_loader
from pipeline.attacks import SINGLE_STEP_ATTACKS
from pipeline.config import ExperimentConfig, checkpoint_fingerprint
from pipeline.errors import UsageError
from pipeline.models.probe import LinearProbe, plain_classifier
from pipeline.objectives import PROTOCOLS, SupervisedObjective
from pipeline.run import RunDir, StageRun, upstream_summary
from pipeline.train import Trainer, TrainState, per_process_batch, prepare_training, steps_per_epoch
from pipeline.train.selection import select_epoch, selection_summary, write_selected
from pipeline.train.start import initial_classifier

from ._cli import main
from ._runtime import open_stage
from .data import show_progress


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
    elif f.objective_name() in SINGLE_STEP_ATTACKS:
        acc.print("[finetune] warning: no validation split to catch catastrophic overfitting; set data.val_size=N")

    frozen = PROTOCOLS.get(f.protocol).frozen_backbone
    net, upstream, dual = initial_classifier(cfg.model, num_classes, init=f.init, head_init=f.head_init,
                                             keep_dual_bn=f.dual_bn and not frozen, bn_branch=f.bn_branch,
                                             run_dir=RunDir.of(cfg.run))
    model = LinearProbe(net) if frozen else net
    model, optimizer, scheduler, raw = prepare_training(acc, model, f, spe, cfg.run)
    objective = SupervisedObjective(f.objective_name(), model, raw, f.attack, f.beta, num_classes, dual_bn=dual)
    val_attack = replace(f.attack, steps=f.val_attack_steps, start="uniform")

    def make_batches(epoch: int):
        loader = stream_loader(urls, CropFlip(size), batch_size=batch, seed=cfg.run.seed, epoch=epoch,
                               rank=acc.process_index, size=size, wrong_size=d.wrong_size, need_label=True,
                               on_bad=d.on_bad_sample, num_workers=d.num_workers, shuffle_buffer=d.shuffle_buffer)
        for x, y, _bad in loader:
            yield x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)

    fingerprint, fingerprint_config = checkpoint_fingerprint(cfg, "finetune")  # what a checkpoint depends on
    with StageRun(stage.run_dir, f.stage(), stage.yaml, {"data": upstream_summary(stage.data), "init": upstream},
                  acc.is_main_process) as run:

        def on_epoch_end(epoch: int, state: TrainState) -> dict:
            """Validation accuracy; a new best robust accuracy replaces ``best/``; a collapse is warned about."""
            return {} if val is None else select_epoch(raw, val, val_attack, acc, 2 * batch, cfg.run.seed, epoch,
                                                       state, run.dir / "best", f.collapse_ratio)

        trainer = Trainer(acc, run, f, models=[model], optimizer=optimizer, scheduler=scheduler,
                          steps_per_epoch=spe, make_batches=make_batches, step_fn=objective.step,
                          on_epoch_end=on_epoch_end, progress=show_progress(cfg.run),
                          desc=f"finetune[{f.protocol}/{objective.name}]", trackers=stage.trackers,
                          fingerprint=fingerprint, fingerprint_config=fingerprint_config)
        state = trainer.fit()
        if acc.is_main_process:
            write_selected(run, plain_classifier(raw), state, has_val=val is not None, run_name=cfg.run.name)
            run.outputs.update(protocol=f.protocol, objective=objective.name, attack=objective.attack.name,
                               num_classes=num_classes, dual_bn=dual)
            print(selection_summary(run, state))
        acc.wait_for_everyone()
    acc.end_training()
    return run.outputs


if __name__ == "__main__":
    main("finetune", run_finetune)
