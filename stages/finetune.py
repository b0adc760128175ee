"""The finetune stage: SLF / ALF / AFF with TRADES, PGD-AT or CE, from this run's pretrained backbone,
from scratch, or from an exported folder.

Model selection on the held-out validation split by PGD robust accuracy (robust overfitting is real);
writes ``runs/<run>/finetune/{best,final}/`` as timm folders, ``metrics.jsonl`` and an accuracy curve.
"""

from __future__ import annotations

from dataclasses import replace

from data.augment import CropFlip
from data.readers import load_labeled
from pipeline.attacks import SINGLE_STEP_ATTACKS
from pipeline.config import ExperimentConfig, checkpoint_fingerprint
from pipeline.errors import UsageError
from pipeline.models.probe import LinearProbe, plain_classifier
from pipeline.objectives import PROTOCOLS, SupervisedObjective
from pipeline.records import FinetuneOutputs
from pipeline.run import RunDir, upstream_summary
from pipeline.train import ShardBatches, TrainingRun, TrainState, steps_per_epoch
from pipeline.train.selection import select_epoch, selection_summary, write_selected
from pipeline.train.start import initial_classifier

from ._cli import main
from ._runtime import open_stage


def run_finetune(cfg: ExperimentConfig) -> dict:
    f, num_classes = cfg.finetune, cfg.data.num_classes
    stage = open_stage(cfg, "finetune", f.grad_accum_steps, f.tensorboard, folder=f.stage())
    acc, train = stage.acc, stage.split("train")
    if not train.labeled:
        raise UsageError(
            "the training split holds unlabeled samples (no .cls), but fine-tuning needs labels; "
            "fine-tune on a labeled set under another run.name, starting from this backbone with "
            f"finetune.init=local-dir:{RunDir.of(cfg.run).stage('pretrain')}/backbone_adv "
            "(README: 'Pretrain on your own unlabeled images')"
        )
    val = None
    if stage.has_split("val"):
        val = load_labeled(stage.split("val"), num_classes=num_classes)[:2]
    elif f.objective_name() in SINGLE_STEP_ATTACKS:
        acc.print(
            "[finetune] warning: no validation split to catch catastrophic overfitting; set data.val_size=N"
        )

    frozen = PROTOCOLS.get(f.protocol).frozen_backbone
    net, upstream, dual, facts = initial_classifier(
        cfg.model,
        num_classes,
        init=f.init,
        head_init=f.head_init,
        keep_dual_bn=f.dual_bn and not frozen,
        bn_branch=f.bn_branch,
        run_dir=RunDir.of(cfg.run),
    )
    acc.print(f"[finetune] {facts.line()}")
    steps = steps_per_epoch(f, train, f.batch_size, "finetune", acc.num_processes)
    with TrainingRun(
        stage.training(),
        f,
        "finetune",
        LinearProbe(net) if frozen else net,
        steps,
        folder=f.stage(),
        upstream={"data": upstream_summary(stage.data), "init": upstream},
        fingerprint=checkpoint_fingerprint(cfg, "finetune"),
        speed=cfg.run,
    ) as job:
        raw = job.raw
        objective = SupervisedObjective(
            f.objective_name(),
            job.model,
            raw,
            f.attack,
            f.beta,
            num_classes,
            dual_bn=dual,
            label_smoothing=f.label_smoothing,
        )
        val_attack = replace(f.attack, steps=f.val_attack_steps, start="uniform")

        def on_epoch_end(epoch: int, state: TrainState) -> dict:
            """Validation accuracy; a new best robust accuracy replaces ``best/``; a collapse is warned about."""
            return (
                {}
                if val is None
                else select_epoch(
                    raw,
                    val,
                    val_attack,
                    acc,
                    2 * job.batch,
                    cfg.run.seed,
                    epoch,
                    state,
                    job.run.dir / "best",
                    f.collapse_ratio,
                )
            )

        batches = ShardBatches(
            train,
            lambda _epoch: CropFlip(train.image_size),
            batch=job.batch,
            seed=cfg.run.seed,
            acc=acc,
            labels=True,
            drop_last=f.drop_last,
            samples_per_epoch=f.samples_per_epoch,
        )
        state = job.fit(
            batches,
            objective.step,
            desc=f"finetune[{f.protocol}/{objective.name}]",
            on_epoch_end=on_epoch_end,
        )
        if acc.is_main_process:
            selected = write_selected(
                job.run, plain_classifier(raw), state, has_val=val is not None, run_name=cfg.run.name
            )
            outputs = FinetuneOutputs(
                **selected,
                protocol=f.protocol,
                objective=objective.name,
                attack=objective.attack.name,
                num_classes=num_classes,
                dual_bn=dual,
                sampling=train.sampling,
                model=facts.to_json(),
                skipped_samples=stage.skipped_when_converting("train") + batches.skipped,
            )
            job.run.outputs.update(outputs.to_json())
            print(selection_summary(job.run, state))
    acc.end_training()
    return job.run.outputs


if __name__ == "__main__":
    main("finetune", run_finetune)
