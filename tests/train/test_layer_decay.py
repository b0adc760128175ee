"""``optim.layer_decay`` against a re-typed transcription of MAE/MIMIR's ``util/lr_decay.py param_groups_lrd``
(xiaoyunxxy/MIMIR b5bc401): every parameter's learning rate and weight decay, for our registered ViT and for a
``timm:`` ViT (whose parameters sit under ``model.``); and the LR schedule's warm-up from 0."""

from __future__ import annotations

import pytest

from pipeline.models import ModelConfig
from pipeline.train.optim import OptimConfig, build_optimizer, lr_factor


def ref_param_groups_lrd(model, weight_decay, no_weight_decay_list, layer_decay):
    """util/lr_decay.py, re-typed: {name: (lr_scale, weight_decay)}."""
    num_layers = len(model.blocks) + 1
    layer_scales = list(layer_decay ** (num_layers - i) for i in range(num_layers + 1))
    out = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 1 or n in no_weight_decay_list:
            this_decay = 0.0
        else:
            this_decay = weight_decay
        if n in ["cls_token", "pos_embed"]:
            layer_id = 0
        elif n.startswith("patch_embed"):
            layer_id = 0
        elif n.startswith("blocks"):
            layer_id = int(n.split(".")[1]) + 1
        else:
            layer_id = num_layers
        out[n] = (layer_scales[layer_id], this_decay)
    return out


@pytest.mark.parametrize(
    "name, kwargs, prefix",
    [
        ("vit_micro_patch4_32", {}, ""),
        ("timm:vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "depth": 3}, "model."),
    ],
)
def test_layer_decay_groups_match_the_reference(name, kwargs, prefix):
    model = ModelConfig(name=name, mean=[0.0] * 3, std=[1.0] * 3, kwargs=kwargs).build(10)
    vit = model.model if prefix else model
    cfg = OptimConfig(name="adamw", lr=0.025, weight_decay=0.05, layer_decay=0.65, decay_norm_and_bias=False)
    opt = build_optimizer(model.parameters(), cfg, model)
    ours = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            ours[names[id(p)][len(prefix) :]] = (group["lr"] / cfg.lr, group["weight_decay"])
    ref = ref_param_groups_lrd(vit, 0.05, vit.no_weight_decay(), 0.65)
    assert ours.keys() == ref.keys()
    for n, (scale, wd) in ref.items():
        assert ours[n][0] == pytest.approx(scale, rel=1e-12) and ours[n][1] == wd, n
    # the final norm runs at the full lr (timm's own helper gives it the last block's lr·d)
    assert ours["norm.weight"][0] == 1.0 and ours["blocks.0.attn.qkv.weight"][0] < ours["norm.weight"][0]


def test_warmup_from_zero_is_mae_lr_sched():
    """util/lr_sched.py: lr · (step / steps_per_epoch) / warmup_epochs, the first step at 0."""
    cfg = OptimConfig(name="adamw", lr=1.0, warmup_epochs=2, warmup_from_zero=True)
    assert [lr_factor(s, 40, 4, cfg) for s in range(3)] == [0.0, 1 / 8, 2 / 8]
    assert lr_factor(0, 40, 4, OptimConfig(name="adamw", lr=1.0, warmup_epochs=2)) == 1 / 8  # ACL's
