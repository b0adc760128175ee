"""Typed records of what each stage publishes in its manifest (``outputs``) and the next stage reads back.

A stage writes ``run.outputs.update(record.to_json())``; a downstream stage reads the same type with
``Record.read(run_dir, stage)``, so a key is spelled once, here. Paths are relative to the stage's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .run import RunDir


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


class _Record:
    @classmethod
    def from_json(cls, outputs: dict):
        names = {f.name for f in dataclasses.fields(cls)}  # older manifests may carry more keys
        return cls(**{k: v for k, v in outputs.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``outputs``: optional fields that are unset ("" / None) are left out; a required
        field is always written, so ``from_json`` reads back whatever ``to_json`` wrote."""
        required = {f.name for f in dataclasses.fields(self) if _required(f)}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in required or v not in ("", None)}

    @classmethod
    def read(cls, run_dir: RunDir, stage: str, make_target: str | None = None):
        """``(record, manifest)`` of the complete stage ``stage``; a one-line UpstreamMissing otherwise."""
        manifest = run_dir.read_manifest(stage, make_target)
        return cls.from_json(manifest["outputs"]), manifest


@dataclass
class DataOutputs(_Record):
    """The data stage: each split's description (``urls``, ``count``, ``labeled``, …, as JSON: the readers
    take it as a :class:`data.spec.ShardSpec`) and the dataset's facts."""

    splits: dict[str, dict]
    image_size: int
    num_classes: int  # 0: unlabeled images
    classes: list = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)  # the data settings the shards were made with
    dataset_json: str = ""  # converters: where dataset.json is


@dataclass
class PretrainOutputs(_Record):
    """The pretrain stage: the backbone (one timm folder per BN branch) and how it was made."""

    backbones: dict[str, str]  # BN branch (clean / adv, or "backbone" without dual BN) → folder
    method: str
    dual_bn: bool
    momentum_encoder: bool  # DynACL: the backbone is the momentum copy
    steps: int
    # safetensors file of the head; "" for FARE, which has none. It must default: to_json leaves "" out,
    # and a required field read back without it broke `make finetune` after FARE
    projection_head: str = ""
    sampling: str = ""  # exact (every sample once per epoch) | resampled (shards drawn with replacement)
    # bad samples left out (data.on_bad_sample=skip): by the data stage's conversion (dataset.json names them)
    # plus those skipped while training, so it agrees with the data manifest
    skipped_samples: int = 0
    loss_curve: str = ""
    coreset: str = ""  # RCS: the folder of its selections
    lpaft: dict | None = None  # DynACL++'s post-processing summary
    embedding_report: str = ""  # FARE: clean cosine and distance under attack, before and after (JSON file)
    model: dict = field(
        default_factory=dict
    )  # what was pretrained (ModelFacts): architecture, normalisation, ...


@dataclass
class FinetuneOutputs(_Record):
    """A fine-tune: the selected and the final classifier (timm folders) and how they were chosen."""

    best: str  # the folder evaluate and export take by default
    final: str
    selection: str  # val_robust_acc, or "none (no validation split)" (best = final)
    steps: int
    protocol: str
    objective: str
    attack: str
    num_classes: int
    dual_bn: bool
    sampling: str = ""  # exact | resampled: how the training epochs drew samples
    best_epoch: int | None = None
    best_val_robust_acc: float | None = None
    best_val_clean_acc: float | None = None
    collapse_epoch: int | None = None  # first epoch of a robustness collapse (a warning was printed)
    collapse_warning: str = ""
    accuracy_curve: str = ""
    # what was fine-tuned: architecture, weights, normalisation and its source, head (ModelFacts)
    model: dict = field(default_factory=dict)
    skipped_samples: int = 0  # as PretrainOutputs.skipped_samples, for the training split

    def folder(self, checkpoint: str) -> str:
        """``best`` | ``final`` → its folder name."""
        return self.best if checkpoint == "best" else self.final
