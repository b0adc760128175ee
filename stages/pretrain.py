"""The pretrain stage: SimCLR / ACL / DynACL / ACL-AIR / DynACL-AIR on the training shards (labels are never
read; an RCS coreset after warm-up with ``pretrain.rcs.fraction``), then, with ``pretrain.lpaft.enabled``,
DynACL++'s post-processing on k-means pseudo-labels. Writes ``runs/<run>/pretrain/backbone*/`` (timm folders;
one per BN branch with dual BN), the projection head, ``metrics.jsonl``, a loss curve (LP-AFT's phases:
``pretrain_lpaft_{probe,trades}/``). Re-running the same command after an interruption resumes."""

from __future__ import annotations  # noqa: I001  (the objectives import is wrapped by hand: the 90-line budget)

from data.augment import SimCLRViews
from data.readers import expand_urls, stream_loader
from pipeline.config import ExperimentConfig, checkpoint_fingerprint
from pipeline.export import save_backbones, save_module_weights
from pipeline.models import convert_to_dual_bn, has_batch_norm
from pipeline.objectives import (ContrastiveModel, ContrastiveObjective, ViewsWithOriginal, build_head,
                                 post_process, pretrain_method, training_images)
from pipeline.plots import plot_curves
from pipeline.run import StageRun, upstream_summary
from pipeline.train import Trainer, per_process_batch, prepare_training, steps_per_epoch
from pipeline.train.coreset import open_coreset

from ._cli import main
from ._runtime import open_stage
from .data import show_progress


def run_pretrain(cfg: ExperimentConfig) -> dict:
    p, d = cfg.pretrain, cfg.data
    stage = open_stage(cfg, "pretrain", p.grad_accum_steps, p.tensorboard)
    acc, size, urls = stage.acc, stage.image_size, expand_urls(stage.splits["train"]["urls"], "data.train_urls")
    batch = per_process_batch(p.batch_size, acc, "pretrain.batch_size")
    # the method (simclr/acl/dynacl/…_air) decides, by epoch, the loader's augmentation strength and the loss weights
    method = pretrain_method(p, p.epochs)
    backbone = cfg.model.build(0)
    if dual := p.dual_bn and method.adversarial and has_batch_norm(backbone):
        convert_to_dual_bn(backbone)
    # the head's BN sees clean and adversarial inputs even without a backbone BN (ViT): dual if attacked
    head = build_head(method.head, backbone.num_features, p.proj_hidden_dim, p.proj_dim,
                      dual_bn=p.dual_bn and method.adversarial)
    model = ContrastiveModel(backbone, head, momentum=method.momentum)
    def views(epoch: int) -> SimCLRViews:
        return SimCLRViews(size, method.strength(epoch), p.min_crop_scale, method.crop_interpolation)
    coreset = open_coreset(cfg, stage, model, views)  # None unless pretrain.rcs.fraction > 0
    spe = coreset.full_steps if coreset else steps_per_epoch(p, stage.splits["train"], p.batch_size, "pretrain")
    model, optimizer, scheduler, raw = prepare_training(acc, model, p, spe, cfg.run)
    objective = ContrastiveObjective(method, model, raw, p, gather=acc.num_processes > 1,  # sync: DynACL's momentum
                                     sync=lambda: acc.sync_gradients)  # copy moves once per optimiser step
    bad = {"skipped": 0}

    def make_batches(epoch: int):  # AIR also needs the un-augmented image
        loader = stream_loader(urls, ViewsWithOriginal(views(epoch)) if method.air else views(epoch), batch_size=batch,
                               seed=cfg.run.seed, epoch=epoch, rank=acc.process_index, size=size,
                               wrong_size=d.wrong_size, on_bad=d.on_bad_sample, num_workers=d.num_workers,
                               shuffle_buffer=d.shuffle_buffer, keep=coreset.keep(epoch) if coreset else None)
        for *images, _labels, n_bad in loader:  # labels are dropped: pretraining is unsupervised
            bad["skipped"] += n_bad
            yield tuple(v.to(acc.device, non_blocking=True) for v in images)

    fingerprint, fingerprint_config = checkpoint_fingerprint(cfg, "pretrain")  # what a checkpoint depends on
    loop_kw = dict(progress=show_progress(cfg.run), fingerprint=fingerprint, fingerprint_config=fingerprint_config)
    with StageRun(stage.run_dir, "pretrain", stage.yaml, upstream_summary(stage.data), acc.is_main_process) as run:
        trainer = Trainer(acc, run, p, models=[model], optimizer=optimizer, scheduler=scheduler,
                          steps_per_epoch=coreset.steps if coreset else spe, schedule_epoch_steps=spe,
                          make_batches=make_batches, step_fn=objective.step,
                          on_epoch_end=lambda e, s: {"skipped_samples": bad["skipped"]},
                          desc=f"pretrain[{p.method}]", trackers=stage.trackers, **loop_kw)
        trainer.fit()
        trained_backbone, trained_head = raw.export_modules()  # DynACL: the momentum copy
        if p.lpaft.enabled:  # DynACL++ on k-means pseudo-labels (true labels: only scored against)
            images, true_labels = training_images(urls, size=size, data=d,  # unlabeled shards too
                                                  labeled=stage.splits["train"].get("labeled") is not False)
            trained_backbone, run.outputs["lpaft"] = post_process(
                p.lpaft, acc, trained_backbone, images, seed=cfg.run.seed, true_labels=true_labels, **loop_kw,
                open_run=lambda name: StageRun(stage.run_dir, f"pretrain_{name}", stage.yaml, None, acc.is_main_process))
        if acc.is_main_process:
            save_module_weights(trained_head, run.dir / "projection_head", "head.safetensors")
            png = plot_curves(run.dir / "metrics.jsonl", "step", "step", ["loss", "loss_clean", "loss_adv"],
                              run.dir / "loss_curve.png", "pretrain loss", run_name=cfg.run.name)
            run.outputs.update(backbones=save_backbones(trained_backbone, dual, run.dir), method=p.method, dual_bn=dual,
                               momentum_encoder=raw.key is not None, projection_head="projection_head/head.safetensors",
                               **({"loss_curve": run.rel(png)} if png else {}), steps=trainer.state.global_step,
                               skipped_samples=bad["skipped"], **({"coreset": "coreset/"} if coreset else {}))
            print(f"[pretrain] backbone (timm folder{'s, one per BN branch' if dual else ''}): "
                  + ", ".join(f"{run.dir / name}/" for name in run.outputs["backbones"].values()))
        acc.wait_for_everyone()
    acc.end_training()
    return run.outputs


if __name__ == "__main__":
    main("pretrain", run_pretrain)
