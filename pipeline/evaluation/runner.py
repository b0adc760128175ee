"""The public entry points: evaluate a model on tensors or on an iterable of batches.

Distribution: the evaluation set is cut into fixed chunks (``cfg.chunk_size``); chunk ``i`` is computed
by rank ``i % world_size``. Each finished chunk is saved atomically under ``work_dir/chunks/``, which
also makes the evaluation resumable. After a barrier every rank reads all chunks and builds the same
report; this assumes ``work_dir`` is on a filesystem all ranks share (one machine, or NFS/Lustre across
nodes).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from contextlib import nullcontext

import torch

from pipeline.errors import UsageError
from pipeline.models.modes import eval_mode
from pipeline.progress import lines_wanted

from .chunk_eval import evaluate_chunk
from .chunks import (
    Chunk,
    ChunkStore,
    chunk_fingerprint,
    library_versions,
    model_digest,
    plan_chunks,
    tensor_digest,
)
from .config import EvaluateConfig, PGDEvalConfig, SweepConfig
from .counting import PassCounter
from .measurements import EvalContext, in_order
from .merge import build_report
from .progress import EvalProgress
from .report import EvalReport
from .sampling import first_n


def quick_config(norm: str = "Linf", eps: float = 8 / 255) -> EvaluateConfig:
    """The Python API's default: clean accuracy and standard AutoAttack, with their 95% intervals, calibration
    and the masking checks that need no extra attack. PGD, the ε-sweep and smoothing are opt-in (pass an
    :class:`EvaluateConfig`); the evaluate stage's defaults run them all."""
    return EvaluateConfig(norm=norm, eps=eps, pgd=PGDEvalConfig(steps=0), sweep=SweepConfig(enabled=False))


def evaluate_model(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: EvaluateConfig | None = None,
    *,
    num_classes: int | None = None,
    work_dir: str | os.PathLike | None = None,
    accelerator=None,
    progress: bool = True,
    surrogate: torch.nn.Module | None = None,
    indices: torch.Tensor | None = None,
) -> EvalReport:
    """Evaluate any classifier mapping [0, 1] NCHW images to logits.

    Measures clean accuracy, PGD-k, AutoAttack (pyautoattack) with per-attack attribution, an
    epsilon sweep, calibration under attack and randomized-smoothing certificates, as configured, and
    runs the gradient-masking checks. The model is put in ``eval()`` and its parameters stop requiring
    gradients during the call (attacks only need input gradients); both are restored afterwards.

    Args:
        model: the classifier; normalisation must happen inside it.
        x: images in [0, 1], (N, C, H, W), on any device (chunks are moved to the model's device).
        y: labels, (N,), long.
        cfg: the ``evaluate`` settings, an :class:`EvaluateConfig` (validated here); ``None`` =
            :func:`quick_config` (standard AutoAttack at Linf 8/255 and clean accuracy only).
        num_classes: number of logits; ``None`` = ``model.num_classes``, else one forward pass finds it.
        work_dir: where finished chunks are kept (resume; shared between ranks). ``None`` keeps them in
            memory, which is only allowed in a single process.
        accelerator: an ``accelerate.Accelerator`` to split chunks over its processes (the model is moved
            to ``accelerator.device``); ``None`` runs in this process alone.
        progress: show progress — a tqdm bar when stderr is a terminal, and one plain line per phase and
            chunk (elapsed time, ETA, running accuracies) when stdout is not (a log); ``False``: silent.
        surrogate: the model the transfer check (``cfg.transfer``) crafts its attacks on; [0, 1] inputs.
        indices: each row's position in its dataset (per-image corruption seeds, pre-computed corruption
            files); ``None`` = 0, 1, ...

    Returns:
        The same :class:`EvalReport` on every rank; write it from the main process only.

    Raises:
        UsageError: bad configuration or inputs.
        TypeError: ``cfg`` is not an :class:`EvaluateConfig` (e.g. an omegaconf node).
    """
    wall = time.perf_counter()
    cfg = quick_config() if cfg is None else cfg
    _check_config(cfg)
    num_classes = num_classes or _count_logits(model, x)
    _check_inputs(x, y, num_classes)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    if world > 1 and work_dir is None:
        raise UsageError(
            "evaluation on several processes needs work_dir (on a filesystem all ranks share) to exchange chunks"
        )
    if accelerator is not None:
        model.to(accelerator.device)
    device = torch.device(accelerator.device if accelerator is not None else _model_device(model))
    chunks = plan_chunks(first_n(cfg.n_examples, x.shape[0]), cfg)
    store = ChunkStore(work_dir)
    if surrogate is not None:
        surrogate.to(device)
    with eval_mode(model, freeze_params=True), _frozen(surrogate):  # attacks need input gradients only
        counted = PassCounter(surrogate) if surrogate is not None else None
        ctx = EvalContext(PassCounter(model), device, cfg, num_classes, surrogate=counted, indices=indices)
        _check_measurement_inputs(ctx, x, y)
        fps = _fingerprints(model, x, y, cfg, chunks, num_classes, surrogate, indices)
        reused = _run_my_chunks(ctx, x, y, chunks, fps, store, rank, world, progress)
    if accelerator is not None:
        accelerator.wait_for_everyone()  # every chunk file exists once all ranks pass this point
        reused = int(accelerator.reduce(torch.tensor(reused, device=accelerator.device), "sum"))
    records, tensors = _load_all(store, chunks, fps, cfg, work_dir)
    extra = {
        "notes": _notes(cfg, x.shape[0], num_classes),
        "versions": library_versions(),
        "wall_seconds": time.perf_counter() - wall,
        "distributed": {
            "world_size": world,
            "n_chunks": len(chunks),
            "chunk_size": cfg.chunk_size,
            "chunks_reused": reused,
        },
    }
    return build_report(records, tensors, cfg, num_classes=num_classes, extra=extra)


def evaluate_batches(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    cfg: EvaluateConfig,
    *,
    num_classes: int,
    **kwargs,
) -> EvalReport:
    """Like :func:`evaluate_model` on the concatenation of ``(x, y)`` batches (e.g. a DataLoader).

    Reading stops once ``cfg.n_examples`` examples are collected (all of them when it is 0). Every rank
    must see the same batches in the same order: pass an unsharded loader, not an accelerate-prepared one.
    """
    _check_config(cfg)
    wanted = first_n(cfg.n_examples, sys.maxsize)  # n_examples=0: read every batch
    xs, ys, total = [], [], 0
    for xb, yb in batches:
        xs.append(xb.detach().cpu())
        ys.append(yb.detach().cpu().long())
        total += yb.shape[0]
        if total >= wanted:
            break
    if not xs:
        raise UsageError("the evaluation loader produced no batches; check the test split path")
    x, y = torch.cat(xs)[:wanted], torch.cat(ys)[:wanted]
    return evaluate_model(model, x, y, cfg, num_classes=num_classes, **kwargs)


def check_inputs(
    cfg: EvaluateConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    surrogate: torch.nn.Module | None = None,
    indices: torch.Tensor | None = None,
) -> None:
    """What :func:`evaluate_model` checks before any compute — the inputs, and the files, libraries and
    models the enabled measurements need — for a caller that must fail before it writes anything (the
    evaluate stage). Raises :class:`UsageError`."""
    _check_config(cfg)
    _check_inputs(x, y, num_classes)
    device = _model_device(surrogate) if surrogate is not None else torch.device("cpu")
    with _frozen(surrogate):
        counted = PassCounter(surrogate) if surrogate is not None else None
        ctx = EvalContext(None, device, cfg, num_classes, surrogate=counted, indices=indices)
        _check_measurement_inputs(ctx, x, y)


def _check_measurement_inputs(ctx: EvalContext, x: torch.Tensor, y: torch.Tensor) -> None:
    for m in in_order():  # files, libraries and models the measurements need, before any compute
        if m.enabled(ctx.cfg):
            m.check_inputs(ctx, x, y)


def _count_logits(model: torch.nn.Module, x: torch.Tensor) -> int:
    classes = getattr(model, "num_classes", None)
    if isinstance(classes, int) and classes > 0:
        return classes
    with torch.no_grad(), eval_mode(model):
        return int(model(x[:1].to(_model_device(model))).shape[-1])


def _check_config(cfg: EvaluateConfig) -> None:
    if not isinstance(cfg, EvaluateConfig):
        raise TypeError(
            f"cfg must be an EvaluateConfig, not {type(cfg).__name__}; convert an omegaconf node with "
            "OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), node))"
        )
    cfg.validate()


def _check_inputs(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise UsageError(
            f"evaluation images must be a float NCHW tensor, got {tuple(x.shape)} {x.dtype}; convert with x.float() / 255"
        )
    if x.shape[0] == 0:
        raise UsageError("the evaluation set is empty; check the test split and evaluate.n_examples")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.dtype != torch.long:
        raise UsageError(
            f"evaluation labels must be a long tensor of {x.shape[0]} class indices, got {tuple(y.shape)} {y.dtype}"
        )
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise UsageError(
            f"evaluation images must be in [0, 1] (got [{x.min():.3g}, {x.max():.3g}]); "
            "normalisation belongs inside the model, so that eps is in pixel units"
        )
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise UsageError(
            f"labels must lie in [0, {num_classes}) but range over [{y.min()}, {y.max()}]; check num_classes"
        )


def _notes(cfg: EvaluateConfig, available: int, num_classes: int) -> list[str]:
    """Facts about this call worth a line in the report (not failures)."""
    notes = [note for m in in_order() for note in m.notes(cfg, num_classes)]
    if cfg.precision == "bf16":
        notes.append(
            "PGD and the sweep ran under bf16 autocast (evaluate.precision=bf16); clean accuracy and "
            "AutoAttack ran in fp32"
        )
    if cfg.n_examples > available:
        notes.append(
            f"evaluate.n_examples={cfg.n_examples} but the test split has {available} examples; "
            "evaluated all of them"
        )
    return notes


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _frozen(model: torch.nn.Module | None):
    return eval_mode(model, freeze_params=True) if model is not None else nullcontext()


def _fingerprints(
    model, x, y, cfg: EvaluateConfig, chunks: list[Chunk], num_classes: int, surrogate, indices
) -> list[str]:
    # the surrogate's weights and the points' dataset positions matter only to the measurements that read
    # them: an evaluation without those keeps its fingerprints
    model_fp = model_digest(model)
    if cfg.transfer.enabled and surrogate is not None:
        model_fp += ":" + model_digest(surrogate)
    positions = cfg.corruptions.enabled and indices is not None
    return [
        chunk_fingerprint(
            cfg,
            c,
            model_fp=model_fp,
            data_fp=tensor_digest(
                x[c.start : c.stop], y[c.start : c.stop], *([indices[c.start : c.stop]] if positions else [])
            ),
            num_classes=num_classes,
        )
        for c in chunks
    ]


def _run_my_chunks(
    ctx: EvalContext, x, y, chunks, fps, store: ChunkStore, rank: int, world: int, progress: bool
) -> int:
    """Compute this rank's chunks that are not already on disk; returns how many were reused."""
    mine = [c for c in chunks if c.index % world == rank]
    done = [_load(store, c, fps[c.index], ctx.cfg) is not None for c in mine]
    shown = EvalProgress(
        mine, len(chunks), rank, world, bar=progress and sys.stderr.isatty(), lines=lines_wanted(progress)
    )
    ctx.status, ctx.finished = shown.status, shown.finished
    shown.begin(chunks[-1].stop if chunks else 0, sum(done))
    for chunk, reused in zip(mine, done, strict=True):
        if reused:
            shown.reused(chunk)
            continue
        shown.start_chunk(chunk)
        record, tensors = evaluate_chunk(ctx, x[chunk.start : chunk.stop], y[chunk.start : chunk.stop], chunk)
        record["fingerprint"] = fps[chunk.index]
        store.save(chunk.index, record, tensors)
        shown.end_chunk(chunk)
    shown.close()
    return sum(done)


def _load(store: ChunkStore, chunk: Chunk, fingerprint: str, cfg: EvaluateConfig):
    """A finished chunk of this configuration holding the record of every measurement that runs on it, or
    ``None``. (A measurement added without settings leaves the fingerprint as it was; the chunks written
    before it lack its record and are computed again.)"""
    found = store.load(chunk.index, fingerprint)
    if found is None:
        return None
    record, tensors = found
    complete = all(m.Record.read(record, tensors) is not None for m in in_order() if m.runs_on(chunk, cfg))
    return found if complete else None


def _load_all(
    store: ChunkStore, chunks: list[Chunk], fps: list[str], cfg: EvaluateConfig, work_dir
) -> tuple[list[dict], list[dict[str, torch.Tensor]]]:
    """Every chunk's record and tensors, in chunk order (after the barrier: all must be there)."""
    loaded = [_load(store, c, fp, cfg) for c, fp in zip(chunks, fps, strict=True)]
    missing = [c.index for c, got in zip(chunks, loaded, strict=True) if got is None]
    if missing:
        raise RuntimeError(
            f"chunks {missing[:10]} are missing or stale after the barrier; is {work_dir} shared by all ranks?"
        )
    return [r for r, _ in loaded], [t for _, t in loaded]
