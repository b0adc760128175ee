"""Model selection on a held-out labeled split: clean and PGD accuracy after every epoch.

Robust overfitting is real (the last epoch is often not the most robust one), so the finetune stage
keeps the epoch with the best validation *robust* accuracy.

Catastrophic overfitting [0] — single-step training (FGSM-RS, N-FGSM) suddenly losing its robustness to
multi-step attacks within an epoch — is caught by the same per-epoch PGD accuracy: an epoch whose
validation robust accuracy falls below ``collapse_ratio`` × the best so far, *and* whose exact 95%
interval lies wholly below the best epoch's (a drop sampling noise cannot explain on a small split), gets
a one-line warning in the log, ``"collapse": true`` in its metrics row and ``collapse_epoch`` /
``collapse_warning`` in the manifest. ``best/`` is only replaced by a better epoch, so it stays the last
good one.

[0] Wong, Rice & Kolter, Fast is better than free: revisiting adversarial training, ICLR 2020 (Sec. 5).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import nn

from ..attacks import AttackConfig, cross_entropy_attack
from ..evaluation.intervals import accuracy_interval
from ..export import save_timm_folder
from ..models.probe import plain_classifier
from ..plots import plot_curves
from ..run import StageRun
from .loop import TrainState


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (model(x).argmax(1) == y).sum()


def validation_accuracy(
    raw: nn.Module,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    attack: AttackConfig,
    acc: Accelerator,
    batch: int,
    seed: int = 0,
) -> dict:
    """Clean and attacked accuracy on this process's stride of the validation split (uint8 images),
    summed over processes.

    The attack's random start is seeded (and the training RNG left untouched), so the same weights
    always get the same score: model selection is reproducible. The model is left in eval(). Under
    ``run.mixed_precision=bf16`` it runs in bf16 autocast, like the training steps it selects among.
    """
    with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
        torch.manual_seed(seed + acc.process_index)
        raw.eval()
        idx = torch.arange(acc.process_index, len(y_val), acc.num_processes)
        counts = torch.zeros(3, device=acc.device)  # correct clean, correct robust, n
        for chunk in idx.split(batch):
            x = x_val[chunk].to(acc.device).float().div(255.0)
            y = y_val[chunk].to(acc.device)
            with acc.autocast():  # run.mixed_precision: validation at the training steps' precision
                counts[0] += _correct(raw, x, y)
                x_adv = cross_entropy_attack(raw, x, y, attack) if attack.steps else x
                counts[1] += _correct(raw, x_adv, y)
            counts[2] += len(y)
    counts = acc.reduce(counts, "sum")
    return {
        "val_clean_acc": float(counts[0] / counts[2]),
        "val_robust_acc": float(counts[1] / counts[2]),
        "val_n": int(counts[2]),
    }


def is_collapse(best: float, now: float, n: int, ratio: float) -> bool:
    """Robust accuracy ``now`` fell below ``ratio`` × ``best`` (both over the same ``n`` points) by more than
    sampling noise: the 95% exact intervals do not overlap. ``ratio`` 0 turns detection off."""
    if ratio <= 0 or best <= 0 or n <= 0 or now >= ratio * best:
        return False
    return accuracy_interval(round(now * n), n)[1] < accuracy_interval(round(best * n), n)[0]


def select_epoch(
    raw: nn.Module,
    val: tuple,
    attack: AttackConfig,
    acc: Accelerator,
    batch: int,
    seed: int,
    epoch: int,
    state: TrainState,
    best_dir,
    collapse_ratio: float,
    stage: str = "finetune",
) -> dict:
    """Validation accuracy after ``epoch`` (0-based); a new best robust accuracy replaces ``best_dir``, a
    collapse is warned about (module docstring). Returns the epoch's metrics."""
    metrics = validation_accuracy(raw, *val, attack, acc, batch, seed)
    best, now = state.extra.get("best_val_robust_acc", -1.0), metrics["val_robust_acc"]
    if now > best:
        if acc.is_main_process:
            save_timm_folder(plain_classifier(raw), best_dir)
        state.extra.update(
            best_val_robust_acc=now, best_epoch=epoch + 1, best_val_clean_acc=metrics["val_clean_acc"]
        )
    elif is_collapse(best, now, metrics["val_n"], collapse_ratio):
        best_epoch = state.extra["best_epoch"]
        # the same test for every objective; only after single-step training is the name "catastrophic
        # overfitting" (Wong et al.) — after multi-step training it is a plain, significant robustness drop
        line = (
            f"[{stage}] WARNING robustness collapse at epoch {epoch + 1} (catastrophic overfitting, if "
            f"single-step training): validation PGD-{attack.steps} "
            f"accuracy {now:.1%} < {collapse_ratio:g} × best {best:.1%} (epoch {best_epoch}); best/ keeps "
            f"epoch {best_epoch}"
        )
        metrics["collapse"] = True
        state.extra.setdefault("collapse_epoch", epoch + 1)  # the first collapse is the one to report
        state.extra.setdefault("collapse_warning", line)
        acc.print(line)
    return metrics


SELECTION_KEYS = (
    "best_epoch",
    "best_val_robust_acc",
    "best_val_clean_acc",
    "collapse_epoch",
    "collapse_warning",
)


def write_selected(
    run: StageRun, classifier: nn.Module, state: TrainState, has_val: bool, run_name: str
) -> dict:
    """``final/`` and ``best/`` (the final model when there is no validation split) and the accuracy curve;
    returns what was selected (the selection fields of :class:`~pipeline.records.FinetuneOutputs`)."""
    save_timm_folder(classifier, run.dir / "final")
    if not has_val:  # no validation split: "best" is the final model, said so in the manifest
        save_timm_folder(classifier, run.dir / "best")
    png = plot_curves(
        run.dir / "metrics.jsonl",
        "epoch",
        "epoch",
        ["val_clean_acc", "val_robust_acc"],
        run.dir / "accuracy_curve.png",
        "validation accuracy",
        run_name=run_name,
        best_key="val_robust_acc",
    )
    return {
        "best": "best",
        "final": "final",
        "selection": "val_robust_acc" if has_val else "none (no validation split)",
        "steps": state.global_step,
        **{k: state.extra[k] for k in SELECTION_KEYS if k in state.extra},
        "accuracy_curve": run.rel(png) if png else "",
    }


def selection_summary(run: StageRun, state: TrainState) -> str:
    """The stage's last line: which epoch was kept and where it is."""
    e = state.extra
    if "best_epoch" not in e:
        return f"[finetune] no validation split: best = final → {run.dir / 'final'}/"
    return (
        f"[finetune] best epoch {e['best_epoch']}: val robust {e['best_val_robust_acc']:.1%}, clean "
        f"{e['best_val_clean_acc']:.1%} → {run.dir / 'best'}/ (final: {run.dir / 'final'}/)"
    )
