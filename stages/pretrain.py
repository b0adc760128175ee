"""The pretrain stage: SimCLR / ACL / DynACL on the training shards (labels are never read).

Writes ``runs/<run>/pretrain/backbone*/`` (timm folders; one per BN branch with dual BN), the projection
head, ``metrics.jsonl`` and a loss curve. Re-running the same command after an interruption resumes from
the last checkpoint.
"""

from __future__ import annotations

from data.augment import SimCLRViews
from data.readers import expand_urls, stream_loader
from pipeline.config import ExperimentConfig, checkpoint_fingerprint
from pipeline.export import save_backbones, save_module_weights
from pipeline.models import convert_to_dual_bn, has_batch_norm
from pipeline.objectives import ContrastiveModel, ContrastiveObjective, pretrain_method
from pipeline.objectives.heads import build_head
from pipeline.plots import plot_curves
from pipeline.run import StageRun, upstream_summary
from pipeline.train import Trainer, per_process_batch, prepare_training, steps_per_epoch

from ._cli import main
from ._runtime import open_stage
from .data import show_progress


def run_pretrain(cfg: ExperimentConfig) -> dict:
    p, d = cfg.pretrain, cfg.data
    stage = open_stage(cfg, "pretrain", p.grad_accum_steps, p.tensorboard)
    acc, size = stage.acc, stage.image_size
    urls = expand_urls(stage.splits["train"]["urls"], "data.train_urls")
    batch = per_process_batch(p.batch_size, acc, "pretrain.batch_size")
    spe = steps_per_epoch(p, stage.splits["train"], p.batch_size, "pretrain")

    # the method (simclr/acl/dynacl) decides, by epoch, the loader's augmentation strength and the loss weights
    method = pretrain_method(p, p.epochs)
    backbone = cfg.model.build(0)
    dual = p.dual_bn and method.adversarial and has_batch_norm(backbone)
    if dual:
        convert_to_dual_bn(backbone)
    # the head's BN sees clean and adversarial inputs even when the backbone has none (ViT): dual whenever
    # the method attacks (ACL's proj_head: every BN dual)
    head = build_head(method.head, backbone.num_features, p.proj_hidden_dim, p.proj_dim,
                      dual_bn=p.dual_bn and method.adversarial)
    model = ContrastiveModel(backbone, head, momentum=method.momentum)
    model, optimizer, scheduler, raw = prepare_training(acc, model, p, spe)
    # sync: DynACL's momentum copy moves once per optimiser step, not per accumulated micro-batch
    objective = ContrastiveObjective(method, model, raw, p, gather=acc.num_processes > 1,
                                     sync=lambda: acc.sync_gradients)
    bad = {"skipped": 0}

    def make_batches(epoch: int):
        views = SimCLRViews(size, method.strength(epoch), p.min_crop_scale, method.crop_interpolation)
        loader = stream_loader(urls, views, batch_size=batch, seed=cfg.run.seed, epoch=epoch, rank=acc.process_index,
                               size=size, wrong_size=d.wrong_size, on_bad=d.on_bad_sample,
                               num_workers=d.num_workers, shuffle_buffer=d.shuffle_buffer)
        for v1, v2, _labels, n_bad in loader:  # labels are dropped: pretraining is unsupervised
            bad["skipped"] += n_bad
            yield v1.to(acc.device, non_blocking=True), v2.to(acc.device, non_blocking=True)

    fingerprint, fingerprint_config = checkpoint_fingerprint(cfg, "pretrain")  # what a checkpoint depends on
    with StageRun(stage.run_dir, "pretrain", stage.yaml, upstream_summary(stage.data), acc.is_main_process) as run:
        trainer = Trainer(acc, run, p, models=[model], optimizer=optimizer, scheduler=scheduler,
                          steps_per_epoch=spe, make_batches=make_batches, step_fn=objective.step,
                          on_epoch_end=lambda e, s: {"skipped_samples": bad["skipped"]},
                          progress=show_progress(cfg.run), desc=f"pretrain[{p.method}]",
                          trackers=stage.trackers,
                          fingerprint=fingerprint, fingerprint_config=fingerprint_config)
        trainer.fit()
        if acc.is_main_process:
            trained_backbone, trained_head = raw.export_modules()  # DynACL: the momentum copy
            save_module_weights(trained_head, run.dir / "projection_head", "head.safetensors")
            png = plot_curves(run.dir / "metrics.jsonl", "step", "step", ["loss", "loss_clean", "loss_adv"],
                              run.dir / "loss_curve.png", "pretrain loss", run_name=cfg.run.name)
            run.outputs.update(backbones=save_backbones(trained_backbone, dual, run.dir),
                               momentum_encoder=raw.key is not None,
                               projection_head="projection_head/head.safetensors",
                               **({"loss_curve": run.rel(png)} if png else {}),
                               method=p.method, dual_bn=dual, steps=trainer.state.global_step,
                               skipped_samples=bad["skipped"])
            folders = ", ".join(f"{run.dir / name}/" for name in run.outputs["backbones"].values())
            print(f"[pretrain] backbone (timm folder{'s, one per BN branch' if dual else ''}): {folders}")
        acc.wait_for_everyone()
    acc.end_training()
    return run.outputs


if __name__ == "__main__":
    main("pretrain", run_pretrain)
