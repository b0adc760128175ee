"""Models in and out: timm ``local-dir:`` folders (safetensors only) and the model card."""

from .card import CardFacts, model_card
from .folders import (
    folder_architecture,
    folder_facts,
    load_backbone_weights,
    load_file,
    load_safetensors_into,
    load_timm_folder,
    load_timm_weights,
    max_logit_diff,
    save_backbones,
    save_module_weights,
    save_timm_folder,
)

__all__ = [
    "CardFacts",
    "folder_architecture",
    "folder_facts",
    "load_backbone_weights",
    "load_file",
    "load_safetensors_into",
    "load_timm_folder",
    "load_timm_weights",
    "max_logit_diff",
    "model_card",
    "save_backbones",
    "save_module_weights",
    "save_timm_folder",
]
