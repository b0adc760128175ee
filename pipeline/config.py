"""The experiment schema: one dataclass tree, composed of the components' own configs, holds every
default; a YAML file overrides it for all stages; ``key=value`` dot-lists override the YAML.

Each component owns its config and its checks (``check(self)``, see ``pipeline/validation.py``):
``DataConfig`` (data/config.py), ``ModelConfig`` (models/registry.py), ``TrainLoopConfig`` and
``OptimConfig`` (train/), ``AttackConfig`` (attacks/base.py; ε is checked in attacks/threat.py),
``ContrastiveConfig`` / ``DynACLConfig`` (objectives/), ``EvaluateConfig`` (evaluation/config.py).
This file adds the stage sections that combine them and the checks that span a section.

Load order and errors (all :class:`UsageError`, one line, raised before anything is computed or written):
unknown key, wrong type, missing value, and invalid values (ranges, unknown names).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from data.config import DataConfig

from .config_keys import (
    from_run_of,
    problems,
    resolve_fractions,
    run_config_file,
    schema_keys,
    unknown_key,
    wrong_type,
)
from .errors import UsageError
from .evaluation.config import EvaluateConfig
from .models import ModelConfig
from .objectives import FINETUNE_OBJECTIVES, PRETRAIN_METHODS, PROTOCOLS, ContrastiveConfig, MIMIRConfig
from .objectives.fare import FAREConfig
from .objectives.rcs import RCSConfig
from .objectives.supervised import FinetuneAttackConfig
from .run import RunConfig, settings_digest
from .train import TrainLoopConfig
from .train.lpaft import LPAFTConfig
from .validation import InvalidValue, check, check_choice, validate

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "FinetuneConfig",
    "ModelConfig",
    "PretrainConfig",
    "RunConfig",
    "checkpoint_fingerprint",
    "config_layers",
    "load_config",
    "to_yaml",
    "with_overrides",
]


@dataclass
class PretrainConfig(ContrastiveConfig, TrainLoopConfig):
    """``pretrain:`` — the training loop's settings, then the contrastive objective's."""

    # RCS coreset selection (pipeline/objectives/rcs.py): train on `fraction` of the set after warm-up
    rcs: RCSConfig = field(default_factory=RCSConfig)
    # DynACL++'s post-processing (k-means pseudo-labels, linear probe, TRADES; pipeline/train/lpaft.py), run
    # after the contrastive epochs when lpaft.enabled: the stage's backbone is then the post-processed one.
    # Not in the contrastive phase's checkpoint fingerprint (its phases fingerprint it themselves), so
    # switching it on after a finished pretrain runs only the post-processing
    lpaft: LPAFTConfig = field(default_factory=LPAFTConfig, metadata={"fingerprint": False})
    # method=mimir (pipeline/objectives/mimir.py): masking, decoder, HSIC term; its attack is pretrain.attack
    mimir: MIMIRConfig = field(default_factory=MIMIRConfig)
    # method=fare (pipeline/objectives/fare.py): its attack variant, loss weights, BN rule and report
    fare: FAREConfig = field(default_factory=FAREConfig)

    def check(self) -> None:
        TrainLoopConfig.check(self)
        ContrastiveConfig.check(self)
        if self.method == "mimir":
            fix = "MIMIR (a masked autoencoder) has no coreset or LP-AFT phase; switch it off"
            check(self.rcs.fraction == 0, "rcs.fraction", self.rcs.fraction, fix)
            check(not self.lpaft.enabled, "lpaft.enabled", self.lpaft.enabled, fix)
        if self.method == "fare":
            check(
                not self.lpaft.enabled,
                "lpaft.enabled",
                True,
                "LP-AFT post-processes ACL/DynACL; set it false with fare",
            )
        if self.rcs.fraction > 0:
            check(
                PRETRAIN_METHODS.get(self.method).adversarial,
                "rcs.fraction",
                self.rcs.fraction,
                f"coreset selection scores adversarial batches: use method acl or dynacl (not {self.method}), or 0",
            )
            check(
                self.samples_per_epoch == 0,
                "samples_per_epoch",
                self.samples_per_epoch,
                "leave it 0 with rcs: each epoch's length is the (core)set's size",
            )


@dataclass
class FinetuneConfig(TrainLoopConfig):
    # where the weights start: pretrain (this run's backbone) | model (as model.* builds it: model.pretrained,
    # or random) | scratch (random; refused when model.pretrained is set) | local-dir:<exported folder>
    init: str = "pretrain"
    protocol: str = (
        "aff"  # slf (frozen, clean head) | alf (frozen, adversarial head) | aff (full) (PROTOCOLS)
    )
    # trades | pgd_at | fgsm_rs | nfgsm | ce (FINETUNE_OBJECTIVES); "" = the protocol's own. fgsm_rs / nfgsm
    # bring their own single-step attack (attack.name/steps replaced, step from ε: pipeline/attacks/single_step.py)
    objective: str = ""
    beta: float = 6.0  # TRADES weight of the robustness (KL) term
    # label smoothing of the training loss's cross-entropy (MIMIR finetune.py --smoothing 0.1); 0 = off
    label_smoothing: float = 0.0
    # which BN branch of a dual-BN pretrained backbone initialises a single-BN network (SLF, ALF, or AFF
    # with dual_bn=false); the fine-tuned network is exported with this branch
    bn_branch: str = "adv"
    # AFF from a dual-BN backbone keeps both branches (RobustSSL's dualBN=1, DynACL test_AFF.py): clean
    # inputs through the clean branch, adversarial ones through the adversarial branch; exported: adv
    dual_bn: bool = True
    head_init: str = "default"  # default (timm's) | zero: the classifier starts at 0 (RobustSSL)
    name: str = ""  # "" → runs/<run>/finetune/; "slf" → runs/<run>/finetune_slf/ (several fine-tunes per run)
    val_attack_steps: int = 10  # PGD steps of the validation robust accuracy that selects "best"
    # catastrophic overfitting (fgsm_rs / nfgsm): warn when the validation robust accuracy falls below this
    # fraction of the best so far, beyond sampling noise (pipeline/train/selection.py); 0 = never warn
    collapse_ratio: float = field(default=0.5, metadata={"fingerprint": False})  # only decides when to warn
    # start "": the objective's own (TRADES: x + 0.001·N(0,1); PGD-AT: uniform in the ball); model_mode: the
    # network's mode during the attack, eval | train (train = the FGSM-RS / N-FGSM references; why eval is the
    # default: pipeline/objectives/supervised.py FinetuneAttackConfig)
    attack: FinetuneAttackConfig = field(default_factory=lambda: FinetuneAttackConfig(steps=10, start=""))

    def stage(self, base: str = "finetune") -> str:
        """The stage folder of this fine-tune (``finetune``, ``evaluate``, ``export``), by its name."""
        return f"{base}_{self.name}" if self.name else base

    def objective_name(self) -> str:
        """The objective actually used: explicit, or the protocol's default (slf: ce, alf: pgd_at, aff: trades)."""
        return self.objective or PROTOCOLS.get(self.protocol, "finetune.protocol").objective

    def check(self) -> None:
        super().check()
        check_choice("protocol", self.protocol, PROTOCOLS)
        if self.objective:
            check_choice("objective", self.objective, FINETUNE_OBJECTIVES)
        if self.protocol == "slf" and self.objective not in ("", "ce"):
            raise InvalidValue(
                "objective",
                self.objective,
                message=(
                    f"{{at}}protocol=slf trains the head on clean data but {{at}}objective={self.objective}; use "
                    "{at}protocol=alf (or aff) for adversarial objectives, or {at}objective=ce"
                ),
            )
        check_choice("bn_branch", self.bn_branch, ("clean", "adv"))
        check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "use a value in [0, 1)")
        check_choice("head_init", self.head_init, ("default", "zero"))
        check(
            self.name == "" or self.name.replace("_", "").replace("-", "").isalnum(),
            "name",
            self.name,
            "use letters, digits, - and _ only (it becomes a folder name)",
        )
        check(
            self.init in ("pretrain", "model", "scratch") or self.init.startswith("local-dir:"),
            "init",
            self.init,
            "use pretrain, model, scratch or local-dir:<exported folder>",
        )
        check(self.val_attack_steps >= 0, "val_attack_steps", self.val_attack_steps, "use 0 or more")
        check(
            0 <= self.collapse_ratio < 1,
            "collapse_ratio",
            self.collapse_ratio,
            "use a value in [0, 1) (0 = off)",
        )


@dataclass
class EvaluateStageConfig(EvaluateConfig):
    """The evaluation settings plus which model the stage evaluates."""

    # finetune (this run's) | local-dir:<exported folder> | timm:<name>@<weights file> (.safetensors, or a plain
    # state dict .pt/.pth/.bin read with weights_only=True); normalisation by model.mean/std's rule
    model: str = "finetune"
    checkpoint: str = "best"  # with model=finetune: best | final

    def check(self) -> None:
        super().check()
        check(
            self.model == "finetune"
            or self.model.startswith("local-dir:")
            or (self.model.startswith("timm:") and "@" in self.model),
            "model",
            self.model,
            "use finetune, local-dir:<folder> or timm:<name>@<weights file>",
        )
        check_choice("checkpoint", self.checkpoint, ("best", "final"))


@dataclass
class ExportConfig:
    checkpoint: str = "best"  # best | final: which finetuned classifier to export

    def check(self) -> None:
        check_choice("checkpoint", self.checkpoint, ("best", "final"))


@dataclass
class ProtocolsConfig:
    """``make protocols``: RobustSSL's evaluation of a pretrained backbone — SLF, ALF and AFF from the same
    backbone, each a named fine-tune (``finetune.name=<protocol>``) with its own overrides."""

    names: list[str] = field(default_factory=lambda: ["slf", "alf", "aff"])  # which protocols, in order
    slf: list[str] = field(default_factory=list)  # key=value overrides for SLF, e.g. [finetune.optim.lr=0.01]
    alf: list[str] = field(default_factory=list)
    aff: list[str] = field(default_factory=list)

    def check(self) -> None:
        for name in self.names:
            check_choice("names", name, PROTOCOLS)


@dataclass
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateStageConfig = field(default_factory=EvaluateStageConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    protocols: ProtocolsConfig = field(default_factory=ProtocolsConfig)


@functools.cache
def config_keys() -> dict[str, dict]:
    """Every leaf key of the schema with its type and the dataclass (file) that declares it."""
    return schema_keys(ExperimentConfig)


def _one_line(exc: OmegaConfBaseException) -> str:
    msg = str(exc).splitlines()[0]
    key = getattr(exc, "full_key", None)
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        return unknown_key(str(key), config_keys())
    if isinstance(exc, MissingMandatoryValue):
        return f"config key {key!r} has no value; set it in the YAML or as {key}=..."
    if isinstance(exc, ValidationError):
        return wrong_type(str(key), None, config_keys(), detail=msg)
    return f"config error at {key!r}: {msg}"


def _load_yaml(path: Path) -> dict:
    """A YAML layer as nested dicts, interpolations (``${...}``) kept as written."""
    if not path.is_file():
        raise UsageError(
            f"config file {str(path)!r} does not exist; pass CONFIG=configs/quickstart.yaml or another YAML"
        )
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    except Exception as exc:  # yaml syntax errors come from several classes
        raise UsageError(f"config file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None


def _overrides(overrides: list[str]) -> dict:
    """``key=value`` items as nested dicts (fractions such as ``8/255`` made floats where a float is declared)."""
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r} is not key=value; write e.g. pretrain.epochs=2")
    try:
        tree = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)
    except OmegaConfBaseException as exc:
        raise UsageError(_one_line(exc)) from None
    return resolve_fractions(tree, config_keys())


@dataclass
class ConfigLayers:
    """What a config is made of, above the schema's defaults: the YAML actually read and the overrides."""

    yaml_file: Path | None  # --config's, or the run's config.yaml with run.from_run
    yaml: dict
    overrides: dict


def config_layers(path: str | Path | None, overrides: list[str] | None = None) -> ConfigLayers:
    """The YAML (``path``; replaced by a run's resolved ``config.yaml`` when an override sets ``run.from_run``)
    and the overrides, each checked for unknown keys and clear type mistakes."""
    keys, dot = config_keys(), _overrides(list(overrides or []))
    yaml_file = Path(path) if path else None
    yaml = resolve_fractions(_load_yaml(yaml_file), keys) if yaml_file else {}
    # an override only: a run's config.yaml records the run.from_run it was made with, and reading that file
    # as --config must give that config, not jump to the run it came from
    from_run, root = from_run_of(dot, yaml)
    from_run = from_run if (dot.get("run") or {}).get("from_run") else ""
    if from_run:
        try:
            yaml_file = run_config_file(from_run, root)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        yaml = resolve_fractions(_load_yaml(yaml_file), keys)
    for layer in (yaml, dot):
        problem = problems(layer, keys)
        if problem:
            raise UsageError(problem)
    return ConfigLayers(yaml_file, yaml, dot)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Schema ← YAML ← dot-list overrides, validated. Raises UsageError (one line)."""
    layers = config_layers(path, overrides)
    try:
        merged: DictConfig = OmegaConf.merge(
            OmegaConf.structured(ExperimentConfig),
            OmegaConf.create(layers.yaml),
            OmegaConf.create(layers.overrides),
        )
        cfg: ExperimentConfig = OmegaConf.to_object(merged)  # resolves ${...} interpolations too
    except OmegaConfBaseException as exc:
        raise UsageError(_one_line(exc)) from None
    validate(cfg)
    cfg.model.follow_image_size(cfg.data.image_size)
    return cfg


def with_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """A copy of ``cfg`` with dot-list overrides applied and validated (e.g. one protocol's settings)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cfg), OmegaConf.create(_overrides(overrides)))
        out: ExperimentConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise UsageError(_one_line(exc)) from None
    validate(out)
    return out


def checkpoint_fingerprint(cfg: ExperimentConfig, section: str) -> tuple[str, dict]:
    """What a checkpoint depends on — the stage's section, the model, the data and the seed — as a hash and
    as the settings themselves (for naming what changed).

    A section's fields marked ``metadata={"fingerprint": False}`` are left out: logging and checkpoint
    retention (they may change between a kill and a resume) and procedures that fingerprint themselves.
    ``data.num_workers`` and ``data.shuffle_buffer`` stay in: each worker draws its own shards, so they
    change the sample stream."""
    full = OmegaConf.to_container(OmegaConf.structured(cfg))
    node = getattr(cfg, section)
    drop = {f.name for f in dataclasses.fields(node) if f.metadata.get("fingerprint") is False}
    settings = {
        section: {k: v for k, v in full[section].items() if k not in drop},
        "model": full["model"],
        "data": full["data"],
        "seed": cfg.run.seed,
    }
    return settings_digest(settings), settings


def to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
