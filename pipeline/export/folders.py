"""Saving and loading models as timm folders (``model.safetensors`` + ``config.json``).

Only safetensors are read: nothing in this project unpickles a weights file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _load_file
from safetensors.torch import save_file
from torch import nn

from .. import models  # noqa: F401  (registers our architectures with timm before any local-dir load)
from ..errors import UsageError
from ..io import atomic_dir


def save_timm_folder(model: nn.Module, folder: Path) -> Path:
    """Write ``model`` as a timm folder, atomically (a crash leaves the previous folder or none)."""
    model = model.eval()
    if any(not t.is_contiguous() for t in model.state_dict().values()):
        # run.channels_last: safetensors stores contiguous tensors only; the copy leaves training's layout alone
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    with atomic_dir(Path(folder)) as tmp:
        timm.models.save_for_hf(model, str(tmp), safe_serialization=True)
        _state_the_normalization(tmp / "config.json")
    return Path(folder)


def _state_the_normalization(config_json: Path) -> None:
    """Say in ``config.json`` which mean/std the model applies, once and unmistakably.

    timm writes two pairs: ``model_args`` (our constructor's: the normalisation *inside* the model) and
    ``pretrained_cfg`` (what timm's data pipeline would apply *before* it). The second must stay 0 / 1 —
    ``timm.data.resolve_data_config`` + ``create_transform`` would otherwise normalise a second time — so a
    top-level ``input_normalization`` (ignored by timm's loader) states the one normalisation that happens."""
    cfg = json.loads(config_json.read_text())
    args = cfg.get("model_args") or {}
    if "mean" not in args or "std" not in args:
        return
    cfg["input_normalization"] = {
        "mean": list(args["mean"]),
        "std": list(args["std"]),
        "applied": "inside the model (its first layer); inputs are RGB in [0,1]",
        "pretrained_cfg": "mean 0 / std 1 there means: timm's transforms add no normalisation of their own",
    }
    config_json.write_text(json.dumps(cfg, indent=2))


def folder_facts(folder: Path) -> dict:
    """The real architecture (``resnet18``, not the ``timm_any`` wrapper) and the normalisation inside an
    exported folder, from its ``config.json``."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    args = cfg.get("model_args") or {}
    arch = cfg.get("architecture", "?")
    facts = {"architecture": args.get("base", arch) if arch == "timm_any" else arch}
    if "mean" in args and "std" in args:
        facts.update(
            mean=list(args["mean"]),
            std=list(args["std"]),
            normalization_source=f"{folder}/config.json (model_args)",
        )
    return facts


def load_file(path: str) -> dict:
    """safetensors only; a file that is not one (e.g. a pickle renamed) is a one-line error."""
    try:
        return _load_file(path)
    except (SafetensorError, OSError) as exc:
        raise UsageError(f"cannot load {path}: not a valid safetensors file ({str(exc)[:80]})") from None


def folder_architecture(folder: Path) -> str:
    cfg_file = Path(folder) / "config.json"
    if not cfg_file.is_file() or not (Path(folder) / "model.safetensors").is_file():
        raise UsageError(
            f"{folder} is not an exported model folder (needs config.json and model.safetensors); "
            "run `make export` or point at another folder"
        )
    return json.loads(cfg_file.read_text()).get("architecture", "?")


def load_timm_folder(folder: Path, **kwargs) -> nn.Module:
    """``timm.create_model("local-dir:<folder>", pretrained=True)`` with a one-line error on bad folders."""
    folder_architecture(folder)
    try:
        return timm.create_model(f"local-dir:{folder}", pretrained=True, **kwargs).eval()
    except (RuntimeError, ValueError, OSError, SafetensorError) as exc:
        raise UsageError(f"cannot load {folder}: {str(exc).splitlines()[0][:200]}") from None


def _checked_state(folder: Path, expected_arch: str, key: str) -> dict:
    arch = folder_architecture(folder)
    if arch == "timm_any":  # any-timm wrapper: the folder records the wrapped architecture
        arch = "timm:" + folder_facts(folder)["architecture"]
    if arch != expected_arch:
        raise UsageError(
            f"{key}: {folder} holds a {arch!r} but model.name={expected_arch!r}; "
            f"set model.name={arch} or use a folder exported from {expected_arch}"
        )
    return load_file(str(Path(folder) / "model.safetensors"))


def load_backbone_weights(
    model: nn.Module, folder: Path | dict[str, Path], expected_arch: str, key: str
) -> None:
    """Copy a backbone folder's weights into ``model`` (a classifier of the same architecture); the
    classifier head stays freshly initialised. Refuses folders of another architecture.

    ``folder`` as ``{"clean": folder, "adv": folder}``: ``model`` has dual BN, and each branch of every
    dual BN layer is loaded from its own folder (the pretrain stage exports one folder per branch; all
    other weights are the same in both)."""
    from ..models.dual_bn import DualBatchNorm2d

    folders = folder if isinstance(folder, dict) else {"": folder}
    dual = {n for n, m in model.named_modules() if isinstance(m, DualBatchNorm2d)}
    state: dict = {}
    for branch, path in folders.items():
        for k, v in _checked_state(path, expected_arch, key).items():
            state[_branch_key(k, branch, dual)] = v
    head = {n for n, _ in model.get_classifier().named_parameters(prefix=_classifier_prefix(model))}
    state = {k: v for k, v in state.items() if k not in head}
    own = model.state_dict()
    wrong = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong:  # e.g. a ViT's pos_embed exported at another image size: name it instead of torch's traceback
        k, theirs, ours = wrong[0]
        raise UsageError(
            f"{key}: {k} in {next(iter(folders.values()))} has shape {list(theirs)}, the model {list(ours)}; "
            "a ViT's pos_embed follows its image size: set data.image_size (or model.kwargs.img_size) to the "
            "size the folder was exported at"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in head]
    if missing or unexpected:
        raise UsageError(
            f"{key}: weights in {next(iter(folders.values()))} do not fit {expected_arch} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); was it exported with other model args?"
        )


def _branch_key(key: str, branch: str, dual: set[str]) -> str:
    """``layer1.0.bn1.weight`` → ``layer1.0.bn1.<branch>.weight`` when that BN layer is dual."""
    module, _, leaf = key.rpartition(".")
    return f"{module}.{branch}.{leaf}" if branch and module in dual else key


def _classifier_prefix(model: nn.Module) -> str:
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name
    return ""


def load_timm_weights(
    name: str,
    weights: Path,
    num_classes: int,
    mean=(),
    std=(),
    kwargs: dict | None = None,
    key: str = "evaluate.model",
) -> tuple[nn.Module, models.ModelFacts]:
    """``timm:<name>@<weights>``: the classifier ``name`` (ours, or any timm architecture behind our
    normalisation) with every weight from the file, head included; and what it is (its normalisation came from
    ``mean``/``std`` when given, else the weights' pretrained_cfg, else our registry default, else an error).
    Weights: safetensors, or a plain state dict read with ``weights_only=True``."""
    spec = name if name in models.MODELS else f"timm:{name}"
    if name not in models.MODELS and not timm.is_model(name):
        raise UsageError(f"{key}: {name!r} is not a timm model; check the name (timm.list_models())")
    cfg = models.ModelConfig(spec, list(mean), list(std), pretrained=str(weights), kwargs=dict(kwargs or {}))
    model, facts = cfg.build_with_facts(num_classes, key=key, whole=True)
    return model.eval(), facts


def load_safetensors_into(model: nn.Module, file: Path) -> nn.Module:
    """Load a bare ``.safetensors`` state dict (for ``timm name + weights file`` evaluation)."""
    if not str(file).endswith(".safetensors"):
        raise UsageError(
            f"{file} is not a .safetensors file; only safetensors weights are read (pickles can run code)"
        )
    if not Path(file).is_file():
        raise UsageError(f"weights file {file} does not exist")
    missing, unexpected = model.load_state_dict(load_file(str(file)), strict=False)
    if missing or unexpected:
        raise UsageError(
            f"{file} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval()


@torch.no_grad()
def max_logit_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    return float((a.eval()(x) - b.eval()(x)).abs().max())


def save_backbones(backbone: nn.Module, dual: bool, out_dir: Path) -> dict[str, str]:
    """A dual-BN backbone as one timm folder per BN branch (``backbone_clean/``, ``backbone_adv/``),
    each an ordinary architecture again; a plain one as ``backbone/``. Returns branch → folder name."""
    from ..models import resolve_dual_bn

    out = {}
    for branch in ("clean", "adv") if dual else ("single",):
        copy_ = copy.deepcopy(backbone).cpu()
        if dual:
            resolve_dual_bn(copy_, branch)
        name = f"backbone_{branch}" if dual else "backbone"
        save_timm_folder(copy_, Path(out_dir) / name)
        out[branch] = name
    return out


def save_module_weights(module: nn.Module, folder: Path, filename: str) -> Path:
    """A module's state dict as ``<folder>/<filename>`` (safetensors), the folder replaced atomically."""
    with atomic_dir(Path(folder)) as tmp:
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp / filename))
    return Path(folder) / filename
