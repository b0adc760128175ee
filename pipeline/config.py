"""The experiment schema: one dataclass tree holds every default; a YAML file overrides it for all
stages; ``key=value`` dot-lists override the YAML.

Load order and errors (all :class:`UsageError`, one line, raised before anything is computed or written):
unknown key, wrong type, missing value, and invalid values (ranges, unknown names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from .attacks.pgd import NORMS, STARTS, AttackConfig
from .errors import UsageError
from .evaluation.config import EvaluateConfig
from .models.normalize import CIFAR10_MEAN, CIFAR10_STD

DATASETS = ("digits", "imagefolder", "cifar10", "cifar100", "stl10", "svhn", "shards")
PRETRAIN_METHODS = ("simclr", "acl", "dynacl")
PROTOCOLS = ("slf", "alf", "aff")
OBJECTIVES = ("trades", "pgd_at", "ce")
OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULES = ("cosine", "piecewise", "constant")


@dataclass
class RunConfig:
    name: str = "quickstart"  # the run directory is <root>/<name>/<stage>/
    root: str = "runs"
    seed: int = 0  # seeds data order, augmentation, initialisation and attacks
    device: str = "auto"  # auto | cpu | cuda (accelerate picks the device; "cpu" forces it)
    mixed_precision: str = "no"  # no | bf16 (autocast)
    num_threads: int = 0  # torch intra-op threads per process on CPU; 0 = torch's default
    progress: bool = True  # tqdm progress bars


@dataclass
class DataConfig:
    dataset: str = "digits"  # a converter (see DATASETS) or "shards" for shards you converted already
    train_source: str = ""  # imagefolder: a directory or a .tar of one, for the training split
    test_source: str = ""  # imagefolder: the same for the test split
    download_root: str = "~/.cache/robustpretrain"  # torchvision datasets are downloaded here
    out_dir: str = ""  # where converted shards go; "" = <run>/data/shards
    train_urls: str = ""  # dataset=shards: webdataset URLs (brace pattern, list, or pipe:) of the train split
    val_urls: str = ""  # dataset=shards: held-out labeled split for model selection ("" = none)
    test_urls: str = ""  # dataset=shards: labeled evaluation split
    num_classes: int = 10
    image_size: int = 32  # side of the square images the models see
    wrong_size: str = "resize"  # resize | error: what to do with an image of another size
    val_size: int = 200  # converters hold this many training images out as the validation split
    shard_size: int = 1000  # samples per shard written by the converters
    num_workers: int = 0  # DataLoader worker processes per training process
    shuffle_buffer: int = 2000  # samples in the streaming shuffle buffer (pretrain / finetune)
    on_bad_sample: str = "error"  # error | skip: an undecodable or unlabeled sample stops or is counted


@dataclass
class ModelConfig:
    name: str = "resnet10_cifar_tiny"  # see pipeline/models/registry.py
    mean: list[float] = field(default_factory=lambda: list(CIFAR10_MEAN))  # normalisation inside the model
    std: list[float] = field(default_factory=lambda: list(CIFAR10_STD))


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | piecewise | constant
    warmup_epochs: float = 0.0  # linear warm-up from 0
    milestones: list[float] = field(default_factory=list)  # piecewise: epochs where lr *= gamma
    gamma: float = 0.1


@dataclass
class TrainLoopConfig:
    """What pretrain and finetune share: budget, batching, checkpoints, logging."""

    epochs: int = 1
    samples_per_epoch: int = 0  # 0 = the training split's size
    batch_size: int = 128  # global batch, split evenly over processes
    grad_accum_steps: int = 1
    checkpoint_every_steps: int = 0  # 0 = only at the end of every epoch
    keep_checkpoints: int = 2  # most recent checkpoints kept on disk
    log_every_steps: int = 1
    tensorboard: bool = False  # log through accelerate's TensorBoard tracker as well
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class DynACLConfig:
    strength_period_epochs: int = 1  # the augmentation strength changes (and the loader is rebuilt) every K epochs
    min_strength: float = 0.0  # strength is annealed linearly from 1 to this, step-wise
    # the loss weights move from (clean, adv) = (1, 1)·(clean_weight, adv_weight) towards
    # (2 − w, w)·(…) with w = 1 + progress·weight_swap (DynACL's swap_param, 2/3 in the paper)
    weight_swap: float = 0.6666666666666666
    # DynACL's reference code sends the second view of every pair through a momentum (EMA) copy of the
    # backbone + head, in the attack and in training, and exports that copy; 0 = off (both views through
    # the trained network, as in ACL)
    momentum: float = 0.99


@dataclass
class PretrainConfig(TrainLoopConfig):
    method: str = "acl"  # simclr | acl | dynacl
    temperature: float = 0.5  # NT-Xent τ
    proj_hidden_dim: int = 512
    proj_dim: int = 128
    clean_weight: float = 0.5  # loss = clean_weight·NT-Xent(clean) + adv_weight·NT-Xent(adversarial)
    adv_weight: float = 0.5
    dual_bn: bool = True  # separate clean/adversarial BN (only for backbones that have BN)
    min_crop_scale: float = 0.08  # SimCLR RandomResizedCrop lower scale at strength 1
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=5, start="uniform"))
    dynacl: DynACLConfig = field(default_factory=DynACLConfig)


@dataclass
class FinetuneConfig(TrainLoopConfig):
    init: str = "pretrain"  # pretrain (this run's backbone) | scratch | local-dir:<exported folder>
    protocol: str = "aff"  # slf (frozen, clean head) | alf (frozen, adversarial head) | aff (full)
    objective: str = ""  # trades | pgd_at | ce; "" = the protocol's own (slf: ce, alf: pgd_at, aff: trades)
    beta: float = 6.0  # TRADES weight of the robustness (KL) term
    bn_branch: str = "adv"  # which BN branch of a dual-BN pretrained backbone initialises the network
    val_attack_steps: int = 10  # PGD steps of the validation robust accuracy that selects "best"
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=10, start="normal"))


@dataclass
class EvaluateStageConfig(EvaluateConfig):
    """The evaluation settings plus which model the stage evaluates."""

    model: str = "finetune"  # finetune (this run's) | local-dir:<exported folder> | timm:<name>@<weights.safetensors>
    checkpoint: str = "best"  # with model=finetune: best | final

    def validate(self, path: str = "evaluate") -> None:
        super().validate(path)
        _check(self.model == "finetune" or self.model.startswith("local-dir:")
               or (self.model.startswith("timm:") and "@" in self.model), f"{path}.model", self.model,
               "use finetune, local-dir:<folder> or timm:<name>@<weights.safetensors>")
        _check_choice(self.checkpoint, ("best", "final"), f"{path}.checkpoint")


@dataclass
class ExportConfig:
    checkpoint: str = "best"  # best | final: which finetuned classifier to export


@dataclass
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateStageConfig = field(default_factory=EvaluateStageConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


PROTOCOL_OBJECTIVE = {"slf": "ce", "alf": "pgd_at", "aff": "trades"}


def finetune_objective(f: FinetuneConfig) -> str:
    """The objective actually used: explicit, or the protocol's default."""
    return f.objective or PROTOCOL_OBJECTIVE[f.protocol]


def _one_line(exc: OmegaConfBaseException) -> str:
    msg = str(exc).splitlines()[0]
    key = getattr(exc, "full_key", None)
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        return f"unknown config key {key!r}; check the spelling against configs/quickstart.yaml or pipeline/config.py"
    if isinstance(exc, MissingMandatoryValue):
        return f"config key {key!r} has no value; set it in the YAML or as {key}=..."
    if isinstance(exc, ValidationError):
        return f"config key {key!r}: {msg}; give a value of the type declared in pipeline/config.py"
    return f"config error at {key!r}: {msg}"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Schema ← YAML ← dot-list overrides, validated. Raises UsageError (one line)."""
    layers = [OmegaConf.structured(ExperimentConfig)]
    if path:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"config file {str(path)!r} does not exist; pass CONFIG=configs/quickstart.yaml or another YAML")
        try:
            layers.append(OmegaConf.load(path))
        except Exception as exc:  # yaml syntax errors come from several classes
            raise UsageError(f"config file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    for item in overrides or []:
        if "=" not in item:
            raise UsageError(f"override {item!r} is not key=value; write e.g. pretrain.epochs=2")
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides or [])))
        merged: DictConfig = OmegaConf.merge(*layers)
        cfg: ExperimentConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise UsageError(_one_line(exc)) from None
    validate(cfg)
    return cfg


def _check(ok: bool, key: str, value: Any, fix: str) -> None:
    if not ok:
        raise UsageError(f"{key}={value!r} is invalid; {fix}")


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    _check(value in choices, key, value, f"use one of: {', '.join(choices)}")


def _check_attack(a: AttackConfig, key: str) -> None:
    _check_choice(a.norm, NORMS, f"{key}.norm")
    _check_choice(a.start, STARTS, f"{key}.start")
    _check(0 < a.eps <= 1, f"{key}.eps", a.eps, "use a value in (0, 1] (pixel units: 8/255 = 0.0314)")
    _check(0 < a.step_size <= 1, f"{key}.step_size", a.step_size, "use a value in (0, 1] (2/255 = 0.0078)")
    _check(a.steps >= 0, f"{key}.steps", a.steps, "use 0 or more steps")


def _check_loop(t: TrainLoopConfig, key: str) -> None:
    _check(t.epochs >= 0, f"{key}.epochs", t.epochs, "use 0 or more epochs")
    _check(t.batch_size >= 1, f"{key}.batch_size", t.batch_size, "use a batch size of at least 1")
    _check(t.samples_per_epoch >= 0, f"{key}.samples_per_epoch", t.samples_per_epoch, "use 0 (= split size) or more")
    _check(t.grad_accum_steps >= 1, f"{key}.grad_accum_steps", t.grad_accum_steps, "use 1 or more")
    _check(t.checkpoint_every_steps >= 0, f"{key}.checkpoint_every_steps", t.checkpoint_every_steps, "use 0 or more")
    _check(t.keep_checkpoints >= 1, f"{key}.keep_checkpoints", t.keep_checkpoints, "keep at least 1")
    _check(t.log_every_steps >= 1, f"{key}.log_every_steps", t.log_every_steps, "use 1 or more")
    _check_choice(t.optim.name, OPTIMIZERS, f"{key}.optim.name")
    _check_choice(t.optim.schedule, SCHEDULES, f"{key}.optim.schedule")
    _check(t.optim.lr > 0, f"{key}.optim.lr", t.optim.lr, "use a positive learning rate")
    _check(t.optim.warmup_epochs >= 0, f"{key}.optim.warmup_epochs", t.optim.warmup_epochs, "use 0 or more")
    if t.tensorboard:
        import importlib.util

        _check(importlib.util.find_spec("tensorboard") is not None, f"{key}.tensorboard", True,
               "install it first: pip install -e '.[tensorboard]' (or pip install tensorboard)")


def validate(cfg: ExperimentConfig) -> None:
    """Cross-field and range checks; every message names the key and the fix."""
    from .models import check_model_name  # imported here: it pulls in timm

    _check_choice(cfg.run.device, ("auto", "cpu", "cuda"), "run.device")
    _check_choice(cfg.run.mixed_precision, ("no", "bf16"), "run.mixed_precision")
    _check(bool(cfg.run.name) and "/" not in cfg.run.name, "run.name", cfg.run.name, "use a non-empty name without '/'")
    d = cfg.data
    _check_choice(d.dataset, DATASETS, "data.dataset")
    _check_choice(d.wrong_size, ("resize", "error"), "data.wrong_size")
    _check_choice(d.on_bad_sample, ("error", "skip"), "data.on_bad_sample")
    _check(d.num_classes >= 2, "data.num_classes", d.num_classes, "use 2 or more classes")
    _check(d.image_size >= 8, "data.image_size", d.image_size, "use 8 px or more")
    _check(d.val_size >= 0 and d.shard_size >= 1, "data.val_size", d.val_size, "use val_size >= 0 and shard_size >= 1")
    _check(d.num_workers >= 0, "data.num_workers", d.num_workers, "use 0 or more workers")
    if d.dataset == "imagefolder":
        _check(bool(d.train_source and d.test_source), "data.train_source", d.train_source,
               "set data.train_source and data.test_source to ImageFolder directories or .tar files")
    if d.dataset == "shards":
        _check(bool(d.train_urls and d.test_urls), "data.train_urls", d.train_urls,
               "set data.train_urls and data.test_urls to webdataset URL patterns of your shards")
    check_model_name(cfg.model.name)
    _check(len(cfg.model.mean) == 3 and len(cfg.model.std) == 3 and min(cfg.model.std) > 0, "model.std",
           cfg.model.std, "give 3 means and 3 positive stds")
    p = cfg.pretrain
    _check_loop(p, "pretrain")
    _check_choice(p.method, PRETRAIN_METHODS, "pretrain.method")
    _check_attack(p.attack, "pretrain.attack")
    _check(p.temperature > 0, "pretrain.temperature", p.temperature, "use a positive temperature (0.5 in ACL)")
    _check(p.dynacl.strength_period_epochs >= 1, "pretrain.dynacl.strength_period_epochs",
           p.dynacl.strength_period_epochs, "use 1 or more epochs")
    _check(0.0 <= p.dynacl.min_strength < 1.0, "pretrain.dynacl.min_strength", p.dynacl.min_strength, "use a value in [0, 1)")
    _check(0.0 <= p.dynacl.momentum < 1.0, "pretrain.dynacl.momentum", p.dynacl.momentum,
           "use a value in [0, 1): 0.99 as in DynACL, 0 to turn the momentum encoder off")
    _check(0.0 <= p.dynacl.weight_swap <= 1.0, "pretrain.dynacl.weight_swap", p.dynacl.weight_swap,
           "use a value in [0, 1] (DynACL uses 2/3)")
    f = cfg.finetune
    _check_loop(f, "finetune")
    _check_choice(f.protocol, PROTOCOLS, "finetune.protocol")
    if f.objective:
        _check_choice(f.objective, OBJECTIVES, "finetune.objective")
    if f.protocol == "slf" and f.objective not in ("", "ce"):
        raise UsageError(f"finetune.protocol=slf trains the head on clean data but finetune.objective={f.objective}; "
                         "use finetune.protocol=alf (or aff) for adversarial objectives, or finetune.objective=ce")
    _check_choice(f.bn_branch, ("clean", "adv"), "finetune.bn_branch")
    _check_attack(f.attack, "finetune.attack")
    _check(f.init in ("pretrain", "scratch") or f.init.startswith("local-dir:"), "finetune.init", f.init,
           "use pretrain, scratch or local-dir:<exported folder>")
    _check(f.val_attack_steps >= 0, "finetune.val_attack_steps", f.val_attack_steps, "use 0 or more")
    _check_choice(cfg.export.checkpoint, ("best", "final"), "export.checkpoint")
    cfg.evaluate.validate("evaluate")


def to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_yaml_section(cfg: ExperimentConfig, sections: tuple[str, ...], seed: int) -> str:
    """The YAML of some sections (for fingerprints: what a checkpoint or a conversion depends on)."""
    full = OmegaConf.structured(cfg)
    return OmegaConf.to_yaml({s: full[s] for s in sections}) + f"seed: {seed}\n"
