"""Everything measured on one chunk: clean, PGD, AutoAttack, sweep, smoothing.

The result is a JSON-able record of per-sample integers/floats plus a few tensors (probabilities for
calibration). Every random stream is seeded from ``derive_seed(cfg.seed, chunk.index, purpose)`` and
the batching inside a chunk depends only on the configuration, so a chunk's record is the same whichever
process computes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pipeline.attacks.pgd import AttackConfig, cross_entropy_pgd

from .autoattack_runner import make_autoattack, run_attributed, run_robust_flags
from .chunks import Chunk, derive_seed
from .config import EvaluateConfig
from .counting import PassCounter
from .fast_autoattack import run_fast
from .smoothing import certify


@dataclass
class EvalContext:
    """What every chunk needs: the counted model, where to run, and the settings."""

    counter: PassCounter
    device: torch.device
    cfg: EvaluateConfig
    num_classes: int
    status: Callable[[str], None] = lambda _: None  # progress display hook


def distance_to_grey(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample distance from each image to the all-0.5 image in the threat model's norm.

    Within that distance the attacker can submit the grey image itself, whose prediction is one fixed
    class: this gives an exact upper bound on what robust accuracy any working attack must reach.
    """
    d = (x - 0.5).flatten(1)
    if norm == "Linf":
        return d.abs().amax(dim=1)
    return d.norm(p=2 if norm == "L2" else 1, dim=1)


@contextmanager
def _phase(ctx: EvalContext, rec: dict, name: str) -> Iterator[None]:
    """Add the wall time and passes spent inside the block to ``rec`` under ``name``."""
    ctx.status(name)
    before, start = ctx.counter.snapshot(), time.perf_counter()
    yield
    spent = ctx.counter.snapshot() - before
    rec["seconds"][name] = rec["seconds"].get(name, 0.0) + time.perf_counter() - start
    f, b = rec["passes"].get(name, (0, 0))
    rec["passes"][name] = (f + spent.forward, b + spent.backward)


def _low_precision(ctx: EvalContext):
    """``evaluate.precision=bf16``: autocast for PGD and the sweep (never clean accuracy or AutoAttack)."""
    return torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.cfg.precision == "bf16")


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def evaluate_chunk(
    ctx: EvalContext, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Measure one chunk.

    Args:
        ctx: shared settings and the counting model (already in eval mode).
        x: the chunk's images in [0, 1].
        y: the chunk's labels.
        chunk: which chunk this is (index for seeds, coverage of each component).

    Returns:
        ``(record, tensors)``: the JSON-able record and the tensors to store next to it.
    """
    cfg = ctx.cfg
    x, y = x.to(ctx.device), y.to(ctx.device)
    rec: dict = {
        "index": chunk.index,
        "start": chunk.start,
        "stop": chunk.stop,
        "label": y.tolist(),
        "seconds": {},
        "passes": {},
        "warnings": [],
    }
    tensors: dict[str, torch.Tensor] = {}
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeding below must not disturb the caller's RNG
        with _phase(ctx, rec, "clean"):
            logits = _logits(ctx.counter, x, cfg.batch_size)
            grey = torch.full_like(x[:1], 0.5)
            rec["grey_pred"] = int(_logits(ctx.counter, grey, 1).argmax(dim=1))
        clean_pred = logits.argmax(dim=1)
        rec["clean_pred"] = clean_pred.tolist()
        rec["grey_dist"] = distance_to_grey(x, cfg.norm).tolist()
        if cfg.calibration.enabled:
            tensors["probs_clean"] = logits.float().softmax(dim=1)
        if cfg.pgd.steps > 0:
            with _phase(ctx, rec, "pgd"), _low_precision(ctx):
                rec["pgd_pred"] = _pgd_predictions(
                    ctx, x, y, clean_pred, derive_seed(cfg.seed, chunk.index, "pgd")
                ).tolist()
        if chunk.n_autoattack > 0:
            _autoattack(ctx, x, y, clean_pred, chunk, rec, tensors)
        if chunk.n_sweep > 0:
            _sweep(ctx, x[: chunk.n_sweep], y[: chunk.n_sweep], chunk, rec)
        if chunk.n_smoothing > 0:
            _smoothing(ctx, x[: chunk.n_smoothing], chunk, rec)
    return rec, tensors


def _pgd_predictions(
    ctx: EvalContext, x: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor, seed: int
) -> torch.Tensor:
    """Predictions after PGD-k; misclassified points are not attacked (as in AutoAttack).

    Each restart only attacks the points still robust, so a point counts as broken if any restart broke it.
    """
    cfg = ctx.cfg
    atk = AttackConfig(
        norm=cfg.norm, eps=cfg.eps, step_size=cfg.pgd_step_size(), steps=cfg.pgd.steps, start="uniform"
    )
    pred = clean_pred.clone()
    todo = (clean_pred == y).nonzero().squeeze(1)
    torch.manual_seed(seed)
    for _ in range(cfg.pgd.restarts):
        for s in range(0, todo.numel(), cfg.batch_size):
            idx = todo[s : s + cfg.batch_size]
            x_adv = cross_entropy_pgd(ctx.counter, x[idx], y[idx], atk)
            pred[idx] = _logits(ctx.counter, x_adv, cfg.batch_size).argmax(dim=1)
        todo = todo[pred[todo] == y[todo]]
        if todo.numel() == 0:
            break
    return pred


def _autoattack(
    ctx: EvalContext,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_pred: torch.Tensor,
    chunk: Chunk,
    rec: dict,
    tensors: dict[str, torch.Tensor],
) -> None:
    """AutoAttack with attribution on the chunk's first ``n_autoattack`` points; fills ``rec['autoattack']``."""
    cfg, k = ctx.cfg, chunk.n_autoattack
    xs, ys = x[:k], y[:k]

    def make_aa(version: str, attacks: list[str] | None, seed: int):
        return make_autoattack(ctx.counter, eps=cfg.eps, norm=cfg.norm, version=version, attacks=attacks,
                               seed=seed, device=ctx.device, num_classes=ctx.num_classes)

    seed = derive_seed(cfg.seed, chunk.index, "autoattack")
    status = lambda a: ctx.status(f"autoattack:{a}")  # noqa: E731
    cross = None
    if cfg.autoattack.version == "fast":
        res, cross = run_fast(make_aa, ctx.counter, xs, ys, ctx.num_classes, cfg.attack_batch_size(),
                              cfg.autoattack.fast_targets, cfg.autoattack.cross_check,
                              lambda purpose: derive_seed(cfg.seed, chunk.index, f"autoattack:{purpose}"), status)
        cross["broken_index"] = [chunk.start + i for i in cross["broken_index"]]  # test-split positions
    else:
        aa = make_aa(cfg.autoattack.version, list(cfg.autoattack.attacks), seed)
        res = run_attributed(aa, ctx.counter, xs, ys, cfg.attack_batch_size(), on_attack=status)
    wrong = clean_pred[:k] != ys
    for name in res.attacks:
        res.pred_after[name][wrong] = -1  # misclassified points are never attacked: leave the column blank
        rec["seconds"][f"autoattack:{name}"] = res.seconds[name]
        rec["passes"][f"autoattack:{name}"] = (res.passes[name].forward, res.passes[name].backward)
    rec["autoattack"] = {
        "attacks": res.attacks,
        "pred_after": {a: p.tolist() for a, p in res.pred_after.items()},
        "final_pred": res.final_pred.tolist(),
        **({"cross_check": cross} if cross is not None else {}),
    }
    rec["warnings"] += [f"[pyautoattack] {m}" for m in dict.fromkeys(res.warnings)]
    if cfg.calibration.enabled:
        with _phase(ctx, rec, "calibration"):
            tensors["probs_adv"] = _logits(ctx.counter, res.x_adv, cfg.batch_size).float().softmax(dim=1)


def _sweep(ctx: EvalContext, x: torch.Tensor, y: torch.Tensor, chunk: Chunk, rec: dict) -> None:
    """Robust predictions at every radius of the sweep; fills ``rec['sweep']``."""
    cfg = ctx.cfg
    preds, messages, radii = [], [], cfg.sweep_radii()
    for eps in radii:
        with _phase(ctx, rec, "sweep"):
            ctx.status(f"sweep eps={eps:.4g}")
            aa = make_autoattack(
                ctx.counter,
                eps=eps,
                norm=cfg.norm,
                version="custom",
                attacks=list(cfg.sweep.attacks),
                seed=derive_seed(cfg.seed, chunk.index, f"sweep:{eps!r}"),
                device=ctx.device,
                num_classes=ctx.num_classes,
            )
            with _low_precision(ctx):
                y_adv, msgs = run_robust_flags(aa, x, y, cfg.attack_batch_size())
        preds.append(y_adv.tolist())
        messages += msgs
    rec["sweep"] = {"eps": radii, "pred": preds}
    rec["warnings"] += [f"[pyautoattack, sweep] {m}" for m in dict.fromkeys(messages)]


def _smoothing(ctx: EvalContext, x: torch.Tensor, chunk: Chunk, rec: dict) -> None:
    """Randomized-smoothing certificates of ``x``; fills ``rec['smoothing']``."""
    with _phase(ctx, rec, "smoothing"):
        seed = derive_seed(ctx.cfg.seed, chunk.index, "smoothing")
        certs = certify(ctx.counter, x, ctx.cfg.smoothing, ctx.num_classes, seed)
    rec["smoothing"] = {
        key: [getattr(c, key) for c in certs] for key in ("prediction", "radius", "p_lower", "n_top")
    }
