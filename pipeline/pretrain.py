"""The pretrain stage: SimCLR / ACL / DynACL on unlabeled training shards (labels are never read)."""

from __future__ import annotations

import copy

from safetensors.torch import save_file

from data.augment import SimCLRViews
from data.readers import expand_urls, stream_loader

from .checkpoint_io import save_timm_folder
from .models import build_model, convert_to_dual_bn, has_batch_norm, resolve_dual_bn
from .objectives import ContrastiveModel, ContrastiveObjective, dynacl_strength
from .optim import build_optimizer, build_scheduler
from .plots import plot_curves
from .run import StageRun, atomic_dir, upstream_summary
from .train import Trainer, config_fingerprint, open_stage, per_process_batch, steps_per_epoch


def run_pretrain(cfg) -> dict:
    p = cfg.pretrain
    acc, yaml, data = open_stage(cfg, "pretrain", p.grad_accum_steps, p.tensorboard)
    urls = expand_urls(data["outputs"]["splits"]["train"]["urls"], "data.train_urls")
    batch = per_process_batch(p.batch_size, acc, "pretrain.batch_size")
    spe = steps_per_epoch(p, data["outputs"]["splits"]["train"], p.batch_size, "pretrain")

    backbone = build_model(cfg.model.name, 0, cfg.model.mean, cfg.model.std)
    dual = p.dual_bn and p.method != "simclr" and has_batch_norm(backbone)
    if dual:
        convert_to_dual_bn(backbone)
    model = ContrastiveModel(backbone, p.proj_hidden_dim, p.proj_dim,
                             momentum=p.dynacl.momentum if p.method == "dynacl" else 0.0)
    optimizer = build_optimizer(model.parameters(), p.optim)
    model, optimizer = acc.prepare(model, optimizer)
    # the scheduler counts optimiser steps: one per grad_accum_steps micro-batches
    scheduler = build_scheduler(optimizer, spe * p.epochs // p.grad_accum_steps, max(1, spe // p.grad_accum_steps), p.optim)
    raw = acc.unwrap_model(model)
    objective = ContrastiveObjective(p.method, model, raw, p, gather=acc.num_processes > 1)
    size, bad = data["outputs"]["image_size"], {"skipped": 0}

    def make_batches(epoch: int):
        # DynACL: the strength reaches the loader because the loader is rebuilt for every epoch
        strength = dynacl_strength(epoch, p.epochs, p.dynacl) if p.method == "dynacl" else 1.0
        objective.strength = strength
        loader = stream_loader(urls, SimCLRViews(size, strength, p.min_crop_scale), batch_size=batch,
                               seed=cfg.run.seed, epoch=epoch, rank=acc.process_index, size=size,
                               wrong_size=cfg.data.wrong_size, on_bad=cfg.data.on_bad_sample,
                               num_workers=cfg.data.num_workers, shuffle_buffer=cfg.data.shuffle_buffer)
        for v1, v2, _labels, n_bad in loader:  # labels are dropped: pretraining is unsupervised
            bad["skipped"] += n_bad
            yield v1.to(acc.device, non_blocking=True), v2.to(acc.device, non_blocking=True)

    with StageRun(cfg, "pretrain", yaml, upstream_summary(data), acc.is_main_process) as run:
        trainer = Trainer(acc, run, p, models=[model], optimizer=optimizer, scheduler=scheduler,
                          steps_per_epoch=spe, make_batches=make_batches, step_fn=objective.step,
                          on_epoch_end=lambda e, s: {"skipped_samples": bad["skipped"]},
                          progress=cfg.run.progress, desc=f"pretrain[{p.method}]",
                          fingerprint=config_fingerprint(cfg, "pretrain"))
        trainer.fit()
        if acc.is_main_process:
            run.outputs.update(_write_outputs(run, raw, dual), method=p.method, dual_bn=dual,
                               steps=trainer.state.global_step, skipped_samples=bad["skipped"])
        acc.wait_for_everyone()
    acc.end_training()
    return run.outputs


def _write_outputs(run: StageRun, raw: ContrastiveModel, dual: bool) -> dict:
    """Backbone folder(s) in timm format (one per BN branch when dual BN), the projection head, the curve."""
    out: dict = {"backbones": {}, "momentum_encoder": raw.key is not None}
    trained_backbone, trained_head = raw.export_modules()
    for branch in ("clean", "adv") if dual else ("single",):
        backbone = copy.deepcopy(trained_backbone).cpu()
        if dual:
            resolve_dual_bn(backbone, branch)
        name = f"backbone_{branch}" if dual else "backbone"
        save_timm_folder(backbone, run.dir / name)
        out["backbones"][branch] = name
    with atomic_dir(run.dir / "projection_head") as tmp:
        save_file({k: v.contiguous() for k, v in trained_head.state_dict().items()}, str(tmp / "head.safetensors"))
    out["projection_head"] = "projection_head/head.safetensors"
    png = plot_curves(run.dir / "metrics.jsonl", "step", "step", ["loss", "loss_clean", "loss_adv"],
                      run.dir / "loss_curve.png", "pretrain loss")
    if png:
        out["loss_curve"] = run.rel(png)
    return out
