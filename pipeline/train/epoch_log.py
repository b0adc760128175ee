"""What a person reads while a run trains: one line per epoch, a summary at the end.

Progress bars are for terminals; under SLURM, CI or ``make … > run.log`` they would fill the log with
carriage returns, so the stages turn them off there (``stages/_runtime.py``) and these lines carry the news:

    [finetune] epoch  3/10  loss 1.91 (acc 41.2%, robust 30.1%)  val clean 48.0% robust 31.5% (best 31.5% @ 3)  lr 0.0905  612 img/s  ETA 0:00:57
"""

from __future__ import annotations

import datetime
import time
from collections import defaultdict

# step metrics averaged into the epoch line, and how they are shown
_SHOWN = (
    ("loss_clean", "clean {:.3f}"),
    ("loss_adv", "adv {:.3f}"),
    ("train_acc", "acc {:.1%}"),
    ("train_robust_acc", "robust {:.1%}"),
)


class EpochMeter:
    """Averages of the step metrics over the steps of one epoch run in this process, and the epoch's
    images/s; independent of ``log_every_steps`` (every step counts)."""

    def __init__(self):
        self.start_epoch_clock()
        self.epoch_seconds: list[float] = []

    def start_epoch_clock(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.images, self.t0 = 0, time.perf_counter()

    def add(self, loss: float, metrics: dict, images: int) -> None:
        self.images += images
        for k, v in (("loss", loss), *metrics.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.sums[k] += v
                self.counts[k] += 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def end_epoch(self) -> tuple[float, float]:
        """(seconds, images/s) of the epoch just finished."""
        seconds = time.perf_counter() - self.t0
        self.epoch_seconds.append(seconds)
        return seconds, self.images / seconds if seconds > 0 else 0.0

    def eta(self, epochs_left: int) -> str:
        if not self.epoch_seconds:
            return "?"
        return str(
            datetime.timedelta(seconds=round(epochs_left * sum(self.epoch_seconds) / len(self.epoch_seconds)))
        )


def epoch_line(
    stage: str,
    epoch: int,
    epochs: int,
    means: dict,
    lr: float,
    images_per_s: float,
    eta: str,
    val: dict,
    best: dict,
) -> str:
    """``[stage] epoch e/E  loss … (…)  val …  lr …  img/s  ETA``; ``val``: this epoch's validation metrics,
    ``best``: the best validation robust accuracy so far and its epoch (finetune)."""
    width = len(str(epochs))
    parts = [f"[{stage}] epoch {epoch:>{width}}/{epochs}"]
    if "loss" in means:
        extra = ", ".join(fmt.format(means[k]) for k, fmt in _SHOWN if k in means)
        parts.append(f"loss {means['loss']:.3f}" + (f" ({extra})" if extra else ""))
    if "val_clean_acc" in val:
        text = f"val clean {val['val_clean_acc']:.1%} robust {val['val_robust_acc']:.1%}"
        if "best_val_robust_acc" in best:
            text += f" (best {best['best_val_robust_acc']:.1%} @ {best['best_epoch']})"
        parts.append(text)
    if val.get("skipped_samples"):
        parts.append(f"{val['skipped_samples']} samples skipped")
    parts += [f"lr {lr:.4g}", f"{images_per_s:,.0f} img/s", f"ETA {eta}"]
    return "  ".join(parts)
