"""The finetune stage: SLF / ALF / AFF with TRADES, PGD-AT or CE, from the pretrained backbone, from
scratch, or from an exported folder. Model selection on a held-out validation split by PGD robust
accuracy (robust overfitting is real); both the best and the final classifier are kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from data.augment import CropFlip
from data.readers import expand_urls, load_labeled, stream_loader

from .attacks.pgd import cross_entropy_pgd
from .checkpoint_io import load_backbone_weights, save_timm_folder
from .config import finetune_objective
from .models import build_model
from .objectives import SupervisedObjective
from .optim import build_optimizer, build_scheduler
from .plots import plot_curves
from .run import StageRun, read_manifest, stage_dir, upstream_summary
from .train import Trainer, TrainState, config_fingerprint, open_stage, per_process_batch, steps_per_epoch


class LinearProbe(nn.Module):
    """A classifier whose backbone is frozen: no gradients, and BN kept in eval() so that not even the
    running statistics change (SLF/ALF must leave the backbone bit-identical)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        for p in net.parameters():
            p.requires_grad_(False)
        for p in net.get_classifier().parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        self.net.get_classifier().train(mode)
        return self

    def forward(self, x):
        return self.net(x)


def build_classifier(cfg, num_classes: int) -> tuple[nn.Module, dict | None]:
    """The network to fine-tune and the upstream manifest it came from (None for scratch / a folder)."""
    f = cfg.finetune
    model = build_model(cfg.model.name, num_classes, cfg.model.mean, cfg.model.std)
    if f.init == "scratch":
        return model, None
    if f.init.startswith("local-dir:"):
        load_backbone_weights(model, Path(f.init.split(":", 1)[1]), cfg.model.name, "finetune.init")
        return model, {"init": f.init}
    manifest = read_manifest(cfg, "pretrain")
    backbones = manifest["outputs"]["backbones"]
    branch = f.bn_branch if f.bn_branch in backbones else next(iter(backbones))
    load_backbone_weights(model, stage_dir(cfg, "pretrain") / backbones[branch], cfg.model.name, "finetune.init")
    return model, {**upstream_summary(manifest), "bn_branch": branch}


@torch.no_grad()
def _accuracy(model, x, y):
    return (model(x).argmax(1) == y).sum()


def validate(raw: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, attack, acc, batch: int, seed: int = 0) -> dict:
    """Clean and PGD accuracy on this process's stride of the validation split, summed over processes.

    The attack's random start is seeded (and the training RNG left untouched), so the same weights
    always get the same score: model selection is reproducible.
    """
    with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
        torch.manual_seed(seed + acc.process_index)
        return _validate(raw, x_val, y_val, attack, acc, batch)


def _validate(raw, x_val, y_val, attack, acc, batch) -> dict:
    raw.eval()
    idx = torch.arange(acc.process_index, len(y_val), acc.num_processes)
    counts = torch.zeros(3, device=acc.device)  # correct clean, correct robust, n
    for chunk in idx.split(batch):
        x = x_val[chunk].to(acc.device).float().div(255.0)
        y = y_val[chunk].to(acc.device)
        counts[0] += _accuracy(raw, x, y)
        x_adv = cross_entropy_pgd(raw, x, y, attack) if attack.steps else x
        counts[1] += _accuracy(raw, x_adv, y)
        counts[2] += len(y)
    counts = acc.reduce(counts, "sum")
    return {"val_clean_acc": float(counts[0] / counts[2]), "val_robust_acc": float(counts[1] / counts[2])}


def run_finetune(cfg) -> dict:
    f = cfg.finetune
    acc, yaml, data = open_stage(cfg, "finetune", f.grad_accum_steps, f.tensorboard)
    splits, size = data["outputs"]["splits"], data["outputs"]["image_size"]
    num_classes = cfg.data.num_classes
    urls = expand_urls(splits["train"]["urls"], "data.train_urls")
    batch = per_process_batch(f.batch_size, acc, "finetune.batch_size")
    spe = steps_per_epoch(f, splits["train"], f.batch_size, "finetune")
    x_val = y_val = None
    if "val" in splits:
        x_val, y_val, _ = load_labeled(expand_urls(splits["val"]["urls"], "data.val_urls"), size=size,
                                       num_classes=num_classes, wrong_size=cfg.data.wrong_size,
                                       on_bad=cfg.data.on_bad_sample)

    net, upstream = build_classifier(cfg, num_classes)
    model = LinearProbe(net) if f.protocol in ("slf", "alf") else net
    optimizer = build_optimizer(model.parameters(), f.optim)
    model, optimizer = acc.prepare(model, optimizer)
    # the scheduler counts optimiser steps: one per grad_accum_steps micro-batches
    scheduler = build_scheduler(optimizer, spe * f.epochs // f.grad_accum_steps, max(1, spe // f.grad_accum_steps), f.optim)
    raw = acc.unwrap_model(model)
    objective_name = finetune_objective(f)
    objective = SupervisedObjective(objective_name, model, raw, f.attack, f.beta, num_classes)
    val_attack = replace(f.attack, steps=f.val_attack_steps, start="uniform")

    def make_batches(epoch: int):
        loader = stream_loader(urls, CropFlip(size), batch_size=batch, seed=cfg.run.seed, epoch=epoch,
                               rank=acc.process_index, size=size, wrong_size=cfg.data.wrong_size,
                               need_label=True, on_bad=cfg.data.on_bad_sample,
                               num_workers=cfg.data.num_workers, shuffle_buffer=cfg.data.shuffle_buffer)
        for x, y, _bad in loader:
            yield x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)

    with StageRun(cfg, "finetune", yaml, {"data": upstream_summary(data), "init": upstream},
                  acc.is_main_process) as run:

        def on_epoch_end(epoch: int, state: TrainState) -> dict:
            if x_val is None:
                return {}
            metrics = validate(raw, x_val, y_val, val_attack, acc, 2 * batch, cfg.run.seed)
            best = state.extra.get("best_val_robust_acc", -1.0)
            if metrics["val_robust_acc"] > best and acc.is_main_process:
                save_timm_folder(_plain(raw), run.dir / "best")
            if metrics["val_robust_acc"] > best:
                state.extra.update(best_val_robust_acc=metrics["val_robust_acc"], best_epoch=epoch + 1,
                                   best_val_clean_acc=metrics["val_clean_acc"])
            return metrics

        trainer = Trainer(acc, run, f, models=[model], optimizer=optimizer, scheduler=scheduler,
                          steps_per_epoch=spe, make_batches=make_batches, step_fn=objective.step,
                          on_epoch_end=on_epoch_end, progress=cfg.run.progress,
                          desc=f"finetune[{f.protocol}/{objective_name}]",
                          fingerprint=config_fingerprint(cfg, "finetune"))
        state = trainer.fit()
        if acc.is_main_process:
            save_timm_folder(_plain(raw), run.dir / "final")
            if x_val is None:  # no validation split: "best" is the final model, said so in the manifest
                save_timm_folder(_plain(raw), run.dir / "best")
            png = plot_curves(run.dir / "metrics.jsonl", "epoch", "epoch", ["val_clean_acc", "val_robust_acc"],
                              run.dir / "accuracy_curve.png", "validation accuracy")
            run.outputs.update(best="best", final="final", protocol=f.protocol, objective=objective_name,
                               selection="val_robust_acc" if x_val is not None else "none (no validation split)",
                               num_classes=num_classes, steps=state.global_step,
                               **{k: v for k, v in state.extra.items()}, **({"accuracy_curve": run.rel(png)} if png else {}))
        acc.wait_for_everyone()
    acc.end_training()
    return run.outputs


def _plain(raw: nn.Module) -> nn.Module:
    """The timm classifier inside a possible LinearProbe wrapper."""
    return raw.net if isinstance(raw, LinearProbe) else raw
