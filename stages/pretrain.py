"""The pretrain stage: SimCLR / ACL / DynACL / ACL-AIR / DynACL-AIR on the training shards (labels are never
read; an RCS coreset after warm-up with ``pretrain.rcs.fraction``), then, with ``pretrain.lpaft.enabled``,
DynACL++'s post-processing on k-means pseudo-labels. Writes ``runs/<run>/pretrain/backbone*/`` (timm folders;
one per BN branch with dual BN), the projection head, ``metrics.jsonl``, a loss curve (LP-AFT's phases:
``pretrain_lpaft_{probe,trades}/``). Re-running the same command after an interruption resumes."""

from __future__ import annotations

import torch

from data.augment import CropFlip, PlainImage, SimCLRViews
from data.readers import held_out_images
from pipeline.config import ExperimentConfig, checkpoint_fingerprint
from pipeline.errors import UsageError
from pipeline.export import save_backbones, save_module_weights
from pipeline.io import atomic_write_json
from pipeline.models import convert_to_dual_bn, has_batch_norm
from pipeline.objectives import (
    ContrastiveModel,
    ContrastiveObjective,
    FAREObjective,
    MIMIRModel,
    MIMIRObjective,
    ViewsWithOriginal,
    build_head,
    embedding_report,
    frozen_copy,
    pretrain_method,
)
from pipeline.objectives.mimir import vit_of
from pipeline.plots import plot_curves
from pipeline.records import PretrainOutputs
from pipeline.run import upstream_summary
from pipeline.train import ShardBatches, TrainingRun, steps_per_epoch
from pipeline.train.coreset import open_coreset
from pipeline.train.lpaft import post_process, training_images

from ._cli import main
from ._runtime import open_stage


def _loss_curve(run, cfg: ExperimentConfig, keys: list[str], title: str):
    """``loss_curve.png`` of the run's ``metrics.jsonl`` by step (None when there is nothing to plot)."""
    return plot_curves(
        run.dir / "metrics.jsonl",
        "step",
        "step",
        keys,
        run.dir / "loss_curve.png",
        title,
        run_name=cfg.run.name,
    )


def run_pretrain(cfg: ExperimentConfig) -> dict:
    p = cfg.pretrain
    if p.method == "mimir":
        return _run_mimir(cfg)
    if p.method == "fare":
        return _run_fare(cfg)
    stage = open_stage(cfg, "pretrain", p.grad_accum_steps, p.tensorboard)
    acc, train = stage.acc, stage.split("train")
    # the method (simclr/acl/dynacl/…_air) decides, by epoch, the loader's augmentation strength and the loss weights
    method = pretrain_method(p, p.epochs)
    backbone, facts = cfg.model.build_with_facts(0)
    acc.print(f"[pretrain] {facts.line()}")
    if dual := p.dual_bn and method.adversarial and has_batch_norm(backbone):
        convert_to_dual_bn(backbone)
    # the head's BN sees clean and adversarial inputs even without a backbone BN (ViT): dual if attacked
    head = build_head(
        method.head,
        backbone.num_features,
        p.proj_hidden_dim,
        p.proj_dim,
        dual_bn=p.dual_bn and method.adversarial,
    )
    model = ContrastiveModel(backbone, head, momentum=method.momentum)

    def views(epoch: int) -> SimCLRViews:
        return SimCLRViews(
            train.image_size, method.strength(epoch), p.min_crop_scale, method.crop_interpolation
        )

    coreset = open_coreset(
        p.rcs,
        train,
        model,
        views,
        attack=p.attack,
        temperature=p.temperature,
        seed=cfg.run.seed,
        world_batch=p.batch_size,
        acc=acc,
        drop_last=p.drop_last,
        folder=stage.run_dir.stage("pretrain") / "coreset",
    )  # None unless rcs.fraction > 0
    full_steps = (
        coreset.full_steps
        if coreset
        else steps_per_epoch(p, train, p.batch_size, "pretrain", acc.num_processes)
    )
    fingerprint = checkpoint_fingerprint(cfg, "pretrain")  # what a checkpoint depends on
    with TrainingRun(
        stage.training(),
        p,
        "pretrain",
        model,
        full_steps,
        folder="pretrain",
        upstream=upstream_summary(stage.data),
        fingerprint=fingerprint,
        speed=cfg.run,
    ) as job:
        objective = ContrastiveObjective(
            method, job.model, job.raw, p, gather=acc.num_processes > 1, sync=lambda: acc.sync_gradients
        )  # DynACL's momentum: once per step
        # AIR also needs the un-augmented image
        transform = (lambda epoch: ViewsWithOriginal(views(epoch))) if method.air else views
        batches = ShardBatches(
            train,
            transform,
            batch=job.batch,
            seed=cfg.run.seed,
            acc=acc,
            labels=False,
            drop_last=p.drop_last,
            samples_per_epoch=p.samples_per_epoch,
            keep=coreset.keep if coreset else None,
        )
        state = job.fit(
            batches,
            objective.step,
            desc=f"pretrain[{p.method}]",
            on_epoch_end=lambda e, s: {"skipped_samples": batches.skipped},
            epoch_steps=coreset.steps if coreset else None,
        )
        trained_backbone, trained_head = job.raw.export_modules()  # DynACL: the momentum copy
        lpaft = None
        if p.lpaft.enabled:  # DynACL++ on k-means pseudo-labels (true labels: only scored against)
            images, true_labels = training_images(train, cfg.data.num_classes)  # unlabeled shards too
            trained_backbone, lpaft = post_process(
                p.lpaft,
                stage.training(),
                trained_backbone,
                images,
                folder="pretrain",
                base_settings=fingerprint[1],
                true_labels=true_labels,
            )
        if acc.is_main_process:
            run = job.run
            save_module_weights(trained_head, run.dir / "projection_head", "head.safetensors")
            png = _loss_curve(run, cfg, ["loss", "loss_clean", "loss_adv"], "pretrain loss")
            outputs = PretrainOutputs(
                backbones=save_backbones(trained_backbone, dual, run.dir),
                method=p.method,
                dual_bn=dual,
                momentum_encoder=job.raw.key is not None,
                projection_head="projection_head/head.safetensors",
                steps=state.global_step,
                sampling=train.sampling,
                skipped_samples=stage.skipped_when_converting("train") + batches.skipped,
                loss_curve=run.rel(png) if png else "",
                coreset="coreset/" if coreset else "",
                lpaft=lpaft,
                model=facts.to_json(),
            )
            run.outputs.update(outputs.to_json())
            print(
                f"[pretrain] backbone (timm folder{'s, one per BN branch' if dual else ''}): "
                + ", ".join(f"{run.dir / name}/" for name in outputs.backbones.values())
            )
    acc.end_training()
    return job.run.outputs


def _run_mimir(cfg: ExperimentConfig) -> dict:
    """MIMIR (pipeline/objectives/mimir.py): an adversarial MAE on a ViT; exports the encoder as a plain timm
    folder (``backbone/``), the decoder stays in the run folder (``decoder/decoder.safetensors``)."""
    p = cfg.pretrain
    vit_of(cfg.model.build(0), cfg.model.name)  # a non-ViT is a one-line error before any data or run folder
    stage = open_stage(cfg, "pretrain", p.grad_accum_steps, p.tensorboard)
    acc, train = stage.acc, stage.split("train")
    backbone, facts = cfg.model.build_with_facts(0)
    acc.print(f"[pretrain] {facts.line()}")
    model = MIMIRModel(backbone, p.mimir, cfg.model.name, pretrained=bool(cfg.model.pretrained))
    full_steps = steps_per_epoch(p, train, p.batch_size, "pretrain", acc.num_processes)
    with TrainingRun(
        stage.training(),
        p,
        "pretrain",
        model,
        full_steps,
        folder="pretrain",
        upstream=upstream_summary(stage.data),
        fingerprint=checkpoint_fingerprint(cfg, "pretrain"),
        speed=cfg.run,
    ) as job:
        objective = MIMIRObjective(job.model, job.raw, p.mimir, p.attack)
        # pretrain.py build_dataset_pre (CIFAR-10): RandomCrop(32, padding=4) + RandomHorizontalFlip
        batches = ShardBatches(
            train,
            lambda epoch: CropFlip(train.image_size),
            batch=job.batch,
            seed=cfg.run.seed,
            acc=acc,
            labels=False,
            drop_last=p.drop_last,
            samples_per_epoch=p.samples_per_epoch,
        )
        state = job.fit(batches, objective.step, desc="pretrain[mimir]")
        if acc.is_main_process:
            run = job.run
            raw = job.raw
            decoder = torch.nn.ModuleDict(
                {"embed": raw.decoder_embed, "decoder": raw.decoder, "pred": raw.decoder_pred}
            )
            save_module_weights(decoder, run.dir / "decoder", "decoder.safetensors")
            png = _loss_curve(run, cfg, ["loss", "loss_mae"], "pretrain loss (MIMIR)")
            outputs = PretrainOutputs(
                backbones=save_backbones(raw.backbone, False, run.dir),
                method=p.method,
                dual_bn=False,
                momentum_encoder=False,
                projection_head="decoder/decoder.safetensors",  # MIMIR's head is the MAE decoder
                steps=state.global_step,
                sampling=train.sampling,
                skipped_samples=stage.skipped_when_converting("train") + batches.skipped,
                loss_curve=run.rel(png) if png else "",
                model=facts.to_json(),
            )
            run.outputs.update(outputs.to_json())
            print(f"[pretrain] backbone (timm folder, encoder only): {run.dir / 'backbone'}/")
    acc.end_training()
    return job.run.outputs


def _run_fare(cfg: ExperimentConfig) -> dict:
    """FARE (pipeline/objectives/fare.py): ``model.pretrained`` fine-tuned on the unaugmented training images
    against a frozen copy of itself; writes ``backbone/``, ``embedding_report.json`` and a loss curve."""
    p = cfg.pretrain
    if not cfg.model.pretrained:
        raise UsageError(
            "pretrain.method=fare fine-tunes pretrained weights against a frozen copy of them: set "
            "model.pretrained=<timm folder or weights file>"
        )
    stage = open_stage(cfg, "pretrain", p.grad_accum_steps, p.tensorboard)
    acc, train = stage.acc, stage.split("train")
    backbone, facts = cfg.model.build_with_facts(0)
    acc.print(f"[pretrain] {facts.line()}")
    original = frozen_copy(backbone).to(acc.device)  # f₀, before any step
    held_out = next((s for s in ("val", "test") if stage.has_split(s)), "train")
    images = held_out_images(stage.split(held_out), p.fare.report_images)  # uint8 (N, 3, H, W)
    with TrainingRun(
        stage.training(),
        p,
        "pretrain",
        backbone,
        steps_per_epoch(p, train, p.batch_size, "pretrain", acc.num_processes),
        folder="pretrain",
        upstream=upstream_summary(stage.data),
        fingerprint=checkpoint_fingerprint(cfg, "pretrain"),
        speed=cfg.run,
    ) as job:
        objective = FAREObjective(p.fare, p.attack, job.model, job.raw, original)
        batches = ShardBatches(
            train,
            lambda epoch: PlainImage(),  # no augmentation (the reference: resize, crop, to tensor)
            batch=job.batch,
            seed=cfg.run.seed,
            acc=acc,
            labels=False,
            drop_last=p.drop_last,
            samples_per_epoch=p.samples_per_epoch,
        )
        state = job.fit(
            batches,
            objective.step,
            desc="pretrain[fare]",
            on_epoch_end=lambda e, s: {"skipped_samples": batches.skipped},
        )
        if acc.is_main_process:
            run = job.run
            report = ""
            if len(images):
                numbers = embedding_report(
                    job.raw, original, images, p.fare, p.attack, seed=cfg.run.seed,
                    batch_size=job.batch, device=acc.device,
                )  # fmt: skip
                numbers["split"] = held_out
                atomic_write_json(run.dir / "embedding_report.json", numbers)
                report = "embedding_report.json"
                b, a = numbers["before"], numbers["after"]
                print(
                    f"[pretrain] embedding report ({len(images)} {held_out} images, {numbers['attack']}): "
                    f"clean cosine to the original {a['clean_cosine']:.4f}; distance under attack "
                    f"{b['adversarial_distance']:.4g} (original) -> {a['adversarial_distance']:.4g} "
                    f"(x{numbers['distance_ratio']:.3f})"
                )
            png = _loss_curve(run, cfg, ["loss", "loss_clean", "loss_adv"], "FARE loss")
            outputs = PretrainOutputs(
                backbones=save_backbones(job.raw, False, run.dir),
                method="fare",
                dual_bn=False,
                momentum_encoder=False,
                projection_head="",  # FARE has none: the loss is on the backbone's embedding
                steps=state.global_step,
                sampling=train.sampling,
                skipped_samples=stage.skipped_when_converting("train") + batches.skipped,
                loss_curve=run.rel(png) if png else "",
                embedding_report=report,
                model=facts.to_json(),
            )
            run.outputs.update(outputs.to_json())
            print(f"[pretrain] backbone (timm folder): {run.dir / 'backbone'}/")
    acc.end_training()
    return job.run.outputs


if __name__ == "__main__":
    main("pretrain", run_pretrain)
