"""Starting from someone else's weights: ``model.pretrained`` and the normalisation rule.

A network here takes [0,1] images and normalises inside, so the (mean, std) it was *trained* with must be
known — a wrong guess gives silently wrong features and robustness numbers. The rule, first match wins:

1. ``model.mean`` / ``model.std`` when set;
2. the weights' own ``pretrained_cfg``: the ``config.json`` of a timm / Hugging Face folder (or one next to a
   ``.safetensors`` file), or timm's registered config when the name carries the weights' tag
   (``timm:vit_small_patch16_224.augreg_in21k_ft_in1k``);
3. our registry's default, for our own architectures (``pipeline/models/``);
4. otherwise a one-line error — never a guess.

Weights are read without unpickling: safetensors, or ``torch.load(weights_only=True)`` (timm's loader) for
plain state-dict checkpoints. Loading goes through timm's own pretrained path, so a ViT's position
embedding is resampled to ``model.kwargs.img_size`` and a classifier of another class count is dropped.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import UsageError
from .normalize import DEFAULT_MEAN, DEFAULT_STD

WEIGHT_FILES = (".safetensors", ".pth", ".pt", ".bin")


def weights_path(spec: str, key: str) -> Path:
    """``spec`` (a folder, ``local-dir:<folder>`` or a weights file) as an existing path."""
    path = Path(spec.removeprefix("local-dir:")).expanduser()
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise UsageError(
                f"{key}={spec}: the folder has no model.safetensors (only safetensors are read from "
                "folders); convert the weights or point at the weights file"
            )
        return path / "model.safetensors"
    if not path.is_file():
        raise UsageError(
            f"{key}={spec}: no such file or folder; give a .safetensors file or a timm/HF model folder"
        )
    if not path.name.endswith(WEIGHT_FILES):
        raise UsageError(
            f"{key}={spec}: not a weights file; use one of {', '.join(WEIGHT_FILES)} or a model folder"
        )
    return path


def _sidecar_config(file: Path) -> dict | None:
    """The ``config.json`` that timm / HF write next to ``model.safetensors``, if any."""
    cfg_file = file.parent / "config.json"
    return json.loads(cfg_file.read_text()) if cfg_file.is_file() else None


def normalization_from_weights(name: str, file: Path | None) -> tuple[tuple, tuple, str] | None:
    """Step 2 of the rule: the weights' own (mean, std) and where they were read, or None."""
    side = _sidecar_config(file) if file is not None else None
    if side is not None:
        args, cfg = side.get("model_args") or {}, side.get("pretrained_cfg") or {}
        if "mean" in args and "std" in args:  # a folder exported by this project: normalisation inside
            return tuple(args["mean"]), tuple(args["std"]), f"{file.parent / 'config.json'} (model_args)"
        if "mean" in cfg and "std" in cfg:
            return tuple(cfg["mean"]), tuple(cfg["std"]), f"{file.parent / 'config.json'} (pretrained_cfg)"
    arch = name.removeprefix("timm:")
    if file is not None and "." in arch:  # the name states which published weights these are
        cfg = timm.models.get_pretrained_cfg(arch)
        if cfg is not None and cfg.mean and cfg.std:
            return tuple(cfg.mean), tuple(cfg.std), f"timm's pretrained_cfg of {arch}"
    return None


def resolve_normalization(
    name: str, mean: Sequence[float], std: Sequence[float], weights: Path | None, key: str = "model"
) -> tuple[tuple, tuple, str]:
    """(mean, std, where they came from) by the rule in this module's docstring."""
    if mean and std:
        return tuple(mean), tuple(std), f"{key}.mean/std"
    found = normalization_from_weights(name, weights)
    if found is not None:
        return found
    if not name.startswith("timm:"):
        return (
            DEFAULT_MEAN,
            DEFAULT_STD,
            f"the registry default of {name} (ImageNet statistics, as the references)",
        )
    where = f" and {weights} carries no pretrained_cfg" if weights is not None else ""
    raise UsageError(
        f"{key}.name={name} has no known input normalisation{where}: set {key}.mean and {key}.std "
        "(ImageNet: [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225]) or name the weights' tag "
        "(timm:<arch>.<tag>)"
    )


def read_state_dict(file: Path, key: str) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or, for .pt/.pth/.bin, ``torch.load(weights_only=True)`` — which
    refuses any pickle that would build objects or run code. Nested ``state_dict`` / ``model`` entries and
    DataParallel's ``module.`` prefix are unwrapped (timm's loader)."""
    try:
        return timm.models.load_state_dict(str(file), use_ema=False, weights_only=True)
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{key}: cannot read {file} as weights without running code ({first}); "
            "give a safetensors file or a plain state dict"
        ) from None


def _file_classes(state: dict, classifier: str | None) -> int | None:
    weight = state.get(f"{classifier}.weight") if classifier else None
    return int(weight.shape[0]) if weight is not None and weight.dim() >= 1 else None


def load_pretrained_into(
    network: nn.Module,
    arch: str,
    file: Path,
    num_classes: int,
    arch_kwargs: dict,
    key: str,
    whole: bool = False,
) -> str:
    """Copy ``file``'s weights into ``network`` (built as ``timm.create_model(arch, **arch_kwargs)``), through
    timm's pretrained loading: architecture-specific filters (ViT position-embedding resampling), every key
    strict except the classifier, which ``network`` keeps fresh when the file's class count differs (or the
    file is a backbone without one).

    ``whole``: the classifier must be loaded too (evaluating the weights as they are: a fresh head would
    give a silently meaningless accuracy), so another class count is an error.

    Returns what became of the classifier, for the start line and the manifest (``head`` of :class:`ModelFacts`)."""
    state = read_state_dict(file, key)
    classifier = timm.models.get_pretrained_cfg_value(arch.split(".")[0], "classifier") or None
    file_classes = _file_classes(state, classifier)
    if whole and file_classes != num_classes:
        has = f"a {file_classes}-class classifier" if file_classes else f"no classifier ({classifier}.weight)"
        raise UsageError(
            f"{key}: {file} has {has} but data.num_classes={num_classes}; evaluate a classifier "
            "with the dataset's classes (or set data.num_classes to match)"
        )
    # timm loads non-strictly whenever it drops a classifier, so the weights are loaded at their own class
    # count (strict: every key must fit; no classifier in the file = a backbone, 0 classes) and the classifier
    # is left out of the copy instead
    own = file_classes or 0
    overlay = dict(
        state_dict=state, source="", file=None, url=None, hf_hub_id=None, custom_load=False, num_classes=own
    )
    try:
        loaded = timm.create_model(
            arch, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=own, **arch_kwargs
        )
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UsageError(
            f"{key}: {file} does not fit {arch} with {key.split('.')[0]}.kwargs={arch_kwargs} "
            f"({first}); check the architecture name and its arguments"
        ) from None
    head = tuple(f"{classifier}." for classifier in ([classifier] if classifier else []))
    copy = {k: v for k, v in loaded.state_dict().items() if own == num_classes or not k.startswith(head)}
    missing, unexpected = network.load_state_dict(copy, strict=False)
    if unexpected or [k for k in missing if not k.startswith(head)]:
        raise UsageError(
            f"{key}: {file} does not fit {arch} as configured (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); check {key.split('.')[0]}.kwargs"
        )
    return head_fate(file_classes, num_classes)


def fresh_head(num_classes: int) -> str:
    return f"a fresh {num_classes}-class classifier" if num_classes else "no classifier (a backbone)"


def head_fate(file_classes: int | None, num_classes: int) -> str:
    """``the weights' 1000-class classifier replaced by a fresh 10-class classifier`` and the like."""
    fresh = fresh_head(num_classes)
    if not file_classes:
        return f"{fresh} (the weights have none)"
    if file_classes == num_classes:
        return f"the weights' {file_classes}-class classifier kept"
    return f"the weights' {file_classes}-class classifier replaced by {fresh}"
