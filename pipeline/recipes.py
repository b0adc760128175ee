"""The references' values for every parity recipe (``configs/*_gpu.yaml``), each with the file and line it
comes from: one table, read by ``tests/test_recipes.py`` (every recipe, fully resolved, must hold exactly
these values) and rendered into ``docs/recipes.md`` and the README's recipe summary
(``python -m pipeline.recipes --write``; the test fails when either is stale).

An entry is ``V(key, value, cite, match, note=..., ran=..., deviation=..., summary=...)``:

- ``key``: a config key as ``load_config`` resolves it, defaults included. ``slf:`` / ``alf:`` / ``aff:``
  prefixes read the key from that protocol's configuration (``make protocols``: ``protocols.<p>`` applied).
  A few keys are read as what the code *uses* rather than the raw field (``EFFECTIVE``): an empty
  ``pretrain.crop_interpolation`` is the method's, an empty ``finetune.attack.start`` the objective's.
- ``value``: what the recipe must hold.
- ``cite``: ``"<repo> <path>:<line>"`` (``<line>`` may be ``a-b``), ``path`` relative to the repo's root in
  :data:`REPOS`; ``match``: text that the cited line(s) contain (checked against a checkout of the
  reference when one is available: ``ROBUSTPRETRAIN_REFERENCES``, see the test).
- ``ran``: set where the value is what the reference's script *executed* but not what its code appears to
  intend (RobustSSL's ``--mode ALL`` carries one protocol's settings into the next): why it is the value.
- ``deviation``: set where what our recipe runs deliberately differs from what the reference runs around this
  value (why, and what it would take to match), with a one-line ``summary`` for the README.

What the table does not hold is listed, with the reason, in :data:`NOT_RECIPE_VALUES` (settings that do not
change what is computed: workers, logging, checkpoints, evaluation extras) — the test requires every
resolved key of a parity recipe to be in one of the two, so a new config field cannot slip past.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

# short name -> (GitHub repository, commit the lines were read at, folder the paths are relative to)
REPOS = {
    "ACL": ("VITA-Group/Adversarial-Contrastive-Learning", "399eabd36c7b5708752681774d755bf5242d5eda", ""),
    "DynACL": ("PKU-ML/DYNACL", "7d143db7f63e699a533df8e262bcf6ed02abe805", ""),
    "AIR": ("GodXuxilie/Enhancing_ACL_via_AIR", "15cf0a7628048e04c19014e924fb415279b1409a", ""),
    "RCS": (
        "GodXuxilie/Efficient_ACL_via_RCS",
        "6fc9aef148705f24ae390659f92186e5571278d9",
        "ACL_RCS/small_scale_datasets/",
    ),
    "RobustSSL": (
        "GodXuxilie/RobustSSL_Benchmark",
        "19dc714f1d78034d36c6f7b0f2a9b17c76ebaf3a",
        "Finetuning_Methods/Vanilla_Finetuning/",
    ),
    "TRADES": ("yaodongyu/TRADES", "6e8e11b7c281371c2f027ffadfbaea80361f09de", ""),
    "MIMIR": ("xiaoyunxxy/MIMIR", "b5bc4016c5a76320ff9ab70e4a6ca9d6d32b760e", ""),
    "RobustVLM": ("chs20/RobustVLM", "7de10ee209f169d415c07aa0abaae4806c402b14", ""),
}

EPS, STEP = 8 / 255, 2 / 255
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class V:
    key: str
    value: object
    cite: str
    match: str
    note: str = ""
    ran: str = ""
    deviation: str = ""
    summary: str = ""  # one line for the README (required with a deviation)

    @property
    def repo(self) -> str:
        return self.cite.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.cite.split(" ", 1)[1].rsplit(":", 1)[0]

    @property
    def lines(self) -> tuple[int, int]:
        span = self.cite.rsplit(":", 1)[1]
        first, _, last = span.partition("-")
        return int(first), int(last or first)


# keys whose checked value is the one the code derives from the raw field (tests/test_recipes.py resolves them)
EFFECTIVE = (
    "model.mean",
    "model.std",
    "pretrain.crop_interpolation",
    "pretrain.head",
    "finetune.objective",
    "finetune.attack.start",
)

# ---- pieces shared by several recipes -------------------------------------------------------------------


def _dev(dev: tuple[str, str] | None) -> dict:
    """V's deviation fields from a (summary, detail) pair."""
    return {} if dev is None else {"summary": dev[0], "deviation": dev[1]}


def _one_lr(k: str, cite: str, match: str) -> list[V]:
    """The optimiser switches that only MAE-style recipes turn on (layer decay, warm-up from 0), held off."""
    return [
        V(k + "optim.layer_decay", 1.0, cite, match, "one learning rate for every parameter"),
        V(
            k + "optim.warmup_from_zero",
            False,
            cite,
            match,
            "a warm-up (if any) starts at lr / W, not 0 (pipeline/train/optim.py lr_factor)",
        ),
    ]


def _common(model_repo: str, mean_line: int = 232, conv_line: int = 248, init_line: int = 264) -> list[V]:
    m = f"{model_repo} models/resnet_multi_bn.py"
    return [
        V(
            "model.name",
            "resnet18_cifar",
            f"{m}:{conv_line}",
            "nn.Conv2d(3, self.inplanes, 3, 1, 1",
            "ResNet-18, 3×3 stride-1 stem, no max-pool (the next lines: maxpool = Identity)",
        ),
        V(
            "model.mean",
            IMAGENET_MEAN,
            f"{m}:{mean_line}-{mean_line + 1}",
            "mean=[0.485, 0.456, 0.406]",
            "NormalizeByChannelMeanStd inside the network: ImageNet statistics on CIFAR-10; RobustSSL's "
            "fine-tuning networks normalise the same (models/resnet.py:131-132)",
        ),
        V("model.std", IMAGENET_STD, f"{m}:{mean_line}-{mean_line + 1}", "std=[0.229, 0.224, 0.225]"),
        V(
            "model.kwargs",
            {},
            f"{m}:{conv_line}",
            "self.inplanes",
            "widths 64-128-256-512 (the architecture's own)",
        ),
        V("model.pretrained", "", f"{m}:{init_line}", "kaiming_normal_", "random initialisation"),
        V("data.dataset", "cifar10", "RobustSSL utils.py:417-418", "torchvision.datasets.CIFAR10("),
        V("data.num_classes", 10, "RobustSSL utils.py:424", "num_classes = 10"),
        V("data.image_size", 32, "RobustSSL utils.py:408", "RandomCrop(args.resize"),
        V(
            "data.val_size",
            0,
            "RobustSSL vanilla_finetuning.py:66",
            "default=0.0",
            "no split held out: all 50,000 training images; the final model is reported (test_frequency 0)",
        ),
        V(
            "data.wrong_size",
            "resize",
            "RobustSSL utils.py:407",
            "Resize(args.resize)",
            "CIFAR-10 is 32 px already",
        ),
        V(
            "run.mixed_precision",
            "no",
            "RobustSSL utils.py:694-696",
            "loss.backward()",
            "float32 throughout, no autocast",
        ),
    ]


def _evaluate(
    repo: str = "RobustSSL", ft: str = "vanilla_finetuning.py", utils: str = "utils.py", L: dict | None = None
) -> list[V]:
    """RobustSSL's evaluation of each protocol's final model: PGD-20 and standard AutoAttack on 10,000 test
    images (AIR's and RCS's finetuning.py are the same code at other lines)."""
    L = L or ROBUSTSSL_FT
    aa, pgd = L["aa"], L["pgd_eval"]
    return [
        V("evaluate.norm", "Linf", f"{repo} {utils}:{aa}", "norm='Linf'"),
        V("evaluate.eps", EPS, f"{repo} {utils}:{aa}", "eps=8/255"),
        V(
            "evaluate.n_examples",
            10000,
            f"{repo} {utils}:{aa - 1}",
            "else 10000",
            "one AutoAttack batch of the whole test set (drop_last)",
        ),
        V(
            "evaluate.autoattack.enabled",
            True,
            f"{repo} {ft}:{L['eval_aa']}",
            "--eval-AA",
            "run_vanilla_tune.sh passes --eval-AA",
        ),
        V("evaluate.autoattack.version", "standard", f"{repo} {utils}:{aa}", "version='standard'"),
        V(
            "evaluate.autoattack.attacks",
            [],
            f"{repo} {utils}:{aa}",
            "version='standard'",
            "standard's own four attacks",
        ),
        V(
            "evaluate.autoattack.n_examples",
            0,
            f"{repo} {utils}:{aa - 1}",
            "else 10000",
            "0 = all n_examples",
        ),
        V("evaluate.pgd.steps", 20, f"{repo} {ft}:{L['steps'] + 2}", "default=20"),
        V(
            "evaluate.pgd.step_size",
            STEP,
            f"{repo} {utils}:{pgd}-{pgd + 1}",
            "alpha=alpha",
            "eval_adv_test passes alpha=args.step_size (2/255)",
        ),
        V("evaluate.pgd.restarts", 1, f"{repo} {utils}:{pgd}", "pgd_attack(", "one random start"),
        V("evaluate.precision", "fp32", f"{repo} {utils}:{aa}", "AutoAttack(model", "no autocast"),
        V(
            "evaluate.model",
            "finetune",
            f"{repo} {ft}:255",
            "AFF_AA_acc = runAA(args, model",
            "the fine-tuned model",
        ),
        V(
            "evaluate.checkpoint",
            "final",
            f"{repo} {ft}:68",
            "default=0",
            "test_frequency 0: no model selection, the last epoch's model",
        ),
        V("export.checkpoint", "final", f"{repo} {ft}:68", "default=0"),
    ]


def _acl_pretrain(
    repo: str,
    script: str,
    L: dict,
    method: str,
    *,
    interpolation: str = "bicubic",
    schedule_unit: str = "step",
    sampled_at_end: bool = True,
    weights=(0.5, 0.5),
    weights_note: str = "",
) -> list[V]:
    """ACL's pretraining as ``script`` of ``repo`` types it; ``L``: its line numbers."""
    s = f"{repo} {script}"
    return [
        V("pretrain.method", method, f"{s}:{L['loss']}", L.get("loss_match", "nt_xent")),
        V("pretrain.epochs", 1000, f"{s}:{L['epochs']}", "default=1000"),
        V("pretrain.batch_size", 512, f"{s}:{L['batch']}", "default=512"),
        V(
            "pretrain.samples_per_epoch",
            0,
            f"{s}:{L['loader']}",
            "shuffle=True",
            "every image once per epoch (the reference also keeps the short last batch)",
        ),
        V(
            "pretrain.drop_last",
            False,
            f"{s}:{L['loader']}",
            "shuffle=True",
            "DataLoader's default drop_last=False: the short last batch is trained on",
        ),
        V(
            "data.sampling",
            "exact",
            f"{s}:{L['loader']}",
            "shuffle=True",
            "a shuffled DataLoader: each image exactly once per epoch (not shards drawn with replacement)",
        ),
        V("pretrain.grad_accum_steps", 1, f"{s}:{L['step']}", "optimizer.step()", "one update per batch"),
        V("pretrain.temperature", 0.5, L["nt_xent"], L.get("nt_xent_match", "t=0.5")),
        V(
            "pretrain.head",
            "acl",
            f"{s}:{L['head']}",
            "proj_head(ch",
            "3 × (Linear, BN), dual BN, ReLU between",
        ),
        V(
            "pretrain.proj_hidden_dim",
            0,
            f"{repo} models/resnet_multi_bn.py:{L.get('fc1', 187)}",
            "nn.Linear(ch, ch)",
            "0 = the backbone's width (512), as fc1/fc2",
        ),
        V(
            "pretrain.proj_dim",
            0,
            f"{repo} models/resnet_multi_bn.py:{L.get('fc1', 187) + 6}",
            "nn.Linear(ch, ch, bias=False)",
            "0 = the backbone's width (512), as fc3",
        ),
        V(
            "pretrain.clean_weight",
            weights[0],
            f"{s}:{L['loss']}",
            L.get("loss_match", "nt_xent"),
            weights_note,
        ),
        V(
            "pretrain.adv_weight",
            weights[1],
            f"{s}:{L['loss']}",
            L.get("loss_match", "nt_xent"),
            weights_note,
        ),
        V("pretrain.dual_bn", True, f"{s}:{L['bn_names']}", "['normal', 'pgd']", "--ACL_DS"),
        V(
            "pretrain.min_crop_scale",
            0.1,
            f"{s}:{L.get('crop_scale', L['crop'])}",
            "1.0 - 0.9 * strength",
            "at strength 1",
        ),
        V(
            "pretrain.crop_interpolation",
            interpolation,
            f"{s}:{L['crop']}",
            L.get("crop_match", "interpolation=3"),
            "interpolation=3 is bicubic" if interpolation == "bicubic" else "torchvision's default, bilinear",
        ),
        V("pretrain.attack.norm", "Linf", f"{s}:{L['pgd']}", L.get("pgd_match", "eps=8. / 255.")),
        V("pretrain.attack.eps", EPS, f"{s}:{L['pgd_call']}", L.get("eps_match", "eps=8. / 255.")),
        V("pretrain.attack.step_size", STEP, f"{s}:{L['pgd_call']}", L.get("step_match", "alpha=2. / 255.")),
        V("pretrain.attack.steps", 5, f"{s}:{L['pgd_iter']}", "default=5"),
        V(
            "pretrain.attack.start",
            "uniform",
            f"{s}:{L['pgd'] + 2}",
            "torch.rand_like(inputs) * eps * 2 - eps",
            "ours is clamped to [0,1], theirs not (test_contrastive_parity.py bounds the gap)",
        ),
        V("pretrain.attack.name", "pgd", f"{s}:{L['pgd']}", "def PGD_contrastive"),
        V("pretrain.optim.name", "lars", f"{s}:{L['lars']}", "LARS(model.parameters()"),
        V("pretrain.optim.lr", 5.0, f"{s}:{L['lr']}", "default=5.0"),
        V("pretrain.optim.momentum", 0.9, f"{repo} optimizer/lars.py:29", "momentum=.9"),
        V(
            "pretrain.optim.nesterov",
            False,
            f"{repo} optimizer/lars.py:29",
            "momentum=.9",
            "LARS has no Nesterov",
        ),
        V("pretrain.optim.weight_decay", 1e-6, f"{s}:{L['lars']}", "weight_decay=1e-6"),
        V(
            "pretrain.optim.decay_norm_and_bias",
            True,
            f"{s}:{L['lars']}",
            "model.parameters()",
            "one group: decay and trust ratio on every parameter",
        ),
        *_one_lr("pretrain.", f"{s}:{L['lars']}", "model.parameters()"),
        V("pretrain.optim.schedule", "cosine", f"{s}:{L['cosine']}", "cosine_annealing("),
        V(
            "pretrain.optim.warmup_epochs",
            10.0,
            f"{s}:{L['warmup']}",
            L.get("warmup_match", "warmup_steps=10"),
        ),
        V("pretrain.optim.min_lr", 1e-6, f"{s}:{L['min_lr']}", "1e-6 / args.lr"),
        V(
            "pretrain.optim.schedule_unit",
            schedule_unit,
            f"{s}:{L['sched_step']}",
            "scheduler.step()",
            "LambdaLR stepped every iteration"
            if schedule_unit == "step"
            else "LambdaLR stepped once per epoch",
        ),
        V(
            "pretrain.optim.cosine_sampled_at_end",
            sampled_at_end,
            f"{s}:{L['sched_step']}",
            "scheduler.step()",
            "scheduler.step() before optimizer.step(): each step runs one position ahead"
            if sampled_at_end
            else "stepped after the epoch: its first epoch after warm-up runs at the peak",
        ),
        V("pretrain.optim.milestones", [], f"{s}:{L['cosine']}", "cosine_annealing(", "not piecewise"),
        V("pretrain.optim.gamma", 0.1, f"{s}:{L['cosine']}", "cosine_annealing(", "unused by the cosine"),
    ]


ACL_LINES = dict(
    epochs=21,
    batch=20,
    lr=26,
    pgd_iter=30,
    bn_names=63,
    head=69,
    crop=77,
    loader=106,
    lars=122,
    cosine=134,
    min_lr=137,
    warmup=138,
    sched_step=210,
    loss=223,
    step=227,
    pgd=351,
    pgd_call=351,
    nt_xent="ACL utils.py:238",
    loss_match="(nt_xent(features) + nt_xent(features_adv))/2",
    warmup_match="warmup_steps=10 * len(train_loader)",
)

DYNACL_LINES = dict(
    epochs=31,
    batch=30,
    lr=43,
    pgd_iter=52,
    bn_names=76,
    head=86,
    crop=458,
    crop_scale=459,
    loader=481,
    lars=160,
    cosine=174,
    min_lr=177,
    warmup=178,
    sched_step=311,
    loss=290,
    step=295,
    pgd=431,
    pgd_call=431,
    nt_xent="DynACL utils.py:292",
    nt_xent_match="t=0.5",
    loss_match="nt_xent(features) * (2 - weight_adv)",
    crop_match="RandomResizedCrop(",
)

AIR_LINES = dict(
    epochs=21,
    batch=20,
    lr=26,
    pgd_iter=30,
    bn_names=185,
    head=200,
    crop=110,
    loader=134,
    fc1=188,
    lars=233,
    cosine=245,
    min_lr=248,
    warmup=249,
    sched_step=324,
    loss=337,
    step=352,
    pgd=384,
    pgd_call=333,
    nt_xent="AIR pretraining.py:337",
    nt_xent_match="temperature=0.5",
    loss_match="AIR_Loss(normalize=True, temperature=0.5",
    eps_match="eps=args.eps/255",
    step_match="alpha=(args.eps/4)/255",
    warmup_match="warmup_steps=10 * len(train_loader)",
)

RCS_LINES = dict(
    epochs=20,
    batch=19,
    lr=25,
    pgd_iter=29,
    bn_names=151,
    head=157,
    crop=165,
    loader=204,
    lars=223,
    fc1=188,
    cosine=284,
    min_lr=287,
    warmup=288,
    sched_step=319,
    loss=332,
    step=336,
    pgd=367,
    pgd_call=367,
    nt_xent="RCS utils.py:279",
    loss_match="(nt_xent(features) + nt_xent(features_adv))/2",
    warmup_match="warmup_steps=10 * len(train_loader)",
)

DYNACL_RCS_LINES = dict(
    RCS_LINES,
    bn_names=179,
    head=185,
    crop=133,
    loader=158,
    lars=250,
    min_lr=319,
    warmup=320,
    cosine=316,
    sched_step=351,
    loss=367,
    step=371,
    pgd=402,
    pgd_call=402,
    loss_match="((1 - weight) * nt_xent(features) + (1 + weight) * nt_xent(features_adv))/2",
)


def _off(prefix: str, cite: str, match: str, note: str) -> list[V]:
    """A component the recipe does not use: only its switch is a recipe value."""
    return [V(prefix, 0.0 if prefix.endswith("fraction") else False, cite, match, note)]


def _no_rcs(cite: str, match: str) -> list[V]:
    return _off("pretrain.rcs.fraction", cite, match, "no coreset: every epoch on the whole set")


def _no_lpaft(cite: str, match: str) -> list[V]:
    return _off(
        "pretrain.lpaft.enabled", cite, match, "no post-processing: the contrastive backbone is fine-tuned"
    )


def _dynacl_schedule(
    repo: str,
    script: str,
    period: tuple,
    strength: tuple,
    swap: tuple,
    momentum: float,
    momentum_cite: tuple,
    note: str = "",
) -> list[V]:
    s = f"{repo} {script}"
    return [
        V("pretrain.dynacl.strength_period_epochs", 50, f"{s}:{period[0]}", period[1]),
        V(
            "pretrain.dynacl.min_strength",
            0.0,
            f"{s}:{strength[0]}",
            strength[1],
            "1 → 1/20 over 1,000 epochs",
        ),
        V("pretrain.dynacl.weight_swap", 2 / 3, f"{s}:{swap[0]}", swap[1], note),
        V(
            "pretrain.dynacl.momentum",
            momentum,
            momentum_cite[0],
            momentum_cite[1],
            "momentum encoder for the second view" if momentum else "no momentum encoder: one network",
        ),
    ]


def _air(script_lines=(37, 38)) -> list[V]:
    return [
        V("pretrain.air.lambda1", 0.5, f"AIR pretraining.py:{script_lines[0]}", "default=0.5"),
        V("pretrain.air.lambda2", 0.5, f"AIR pretraining.py:{script_lines[1]}", "default=0.5"),
    ]


def _rcs(script: str, L: dict, *, train_on_validation: tuple[bool, int, str, str]) -> list[V]:
    """``train_on_validation``: (value, line, cited text, note) — whether the script trains on the 1% it draws."""
    s = f"RCS {script}"
    tov, tov_line, tov_match, tov_note = train_on_validation
    return [
        V(
            "pretrain.rcs.fraction",
            0.2,
            f"{s}:35",
            "default=0.2",
            "run.sh: --fraction 0.2 for the 20% coreset",
        ),
        V("pretrain.rcs.warmup_epochs", 100, f"{s}:34", "default=100"),
        V("pretrain.rcs.period", 20, f"{s}:33", "default=20"),
        V(
            "pretrain.rcs.val_fraction",
            0.01,
            f"{s}:{L['split']}",
            "* 0.99",
            "1% of the training images drawn as RCS's validation set",
        ),
        V("pretrain.rcs.train_on_validation", tov, f"{s}:{tov_line}", tov_match, tov_note),
        V("pretrain.rcs.val_attack_steps", 3, f"{s}:37", "default=3"),
        V(
            "pretrain.rcs.lr",
            0.01,
            f"{s}:{L['coreset_lr']}",
            "coreset_class.lr = args.Coreset_lr",
            "--Coreset_lr 0.01, set before every selection (RCS.py's own 0.001 is overwritten)",
        ),
        V(
            "pretrain.rcs.val_batch_size",
            512,
            f"{s}:{L['val_loader']}",
            "batch_size=args.batch_size",
            "the validation loader's batch: the first half of each batch, each image twice (RCS.py:235-236)",
        ),
    ]


def _lpaft(
    repo: str,
    script: str,
    L: dict,
    *,
    attack_start: str,
    start_cite: str,
    start_match: str,
    beta_cite: str,
    beta_match: str,
    target_branch: str,
    target_cite: str,
    target_match: str,
) -> list[V]:
    s = f"{repo} {script}"
    return [
        V(
            "pretrain.lpaft.enabled",
            True,
            f"{s}:{L['call']}",
            "trades_loss_dual(",
            "post-processing after pretraining",
        ),
        V("pretrain.lpaft.clusters", 10, L["clusters"], L["clusters_match"]),
        V("pretrain.lpaft.probe.epochs", 10, f"{s}:{L['epochs_head']}", "default=10"),
        V(
            "pretrain.lpaft.probe.batch_size",
            512,
            f"{s}:{L['batch']}",
            "default=512",
            "drop_last (the next lines); ours drops the short batch too",
        ),
        V("pretrain.lpaft.probe.samples_per_epoch", 0, f"{s}:{L['loader']}", "drop_last=True"),
        V("pretrain.lpaft.probe.drop_last", True, f"{s}:{L['loader']}", "drop_last=True"),
        V("pretrain.lpaft.probe.grad_accum_steps", 1, f"{s}:{L['head_sgd']}", "optimizer_head"),
        V("pretrain.lpaft.probe.optim.name", "sgd", f"{s}:{L['head_sgd']}", "torch.optim.SGD("),
        V("pretrain.lpaft.probe.optim.lr", 0.01, f"{s}:{L['lr_head']}", "default=0.01"),
        V("pretrain.lpaft.probe.optim.momentum", 0.9, f"{s}:{L['head_sgd'] + 1}", "momentum=0.9"),
        V("pretrain.lpaft.probe.optim.nesterov", False, f"{s}:{L['head_sgd'] + 1}", "momentum=0.9"),
        V("pretrain.lpaft.probe.optim.weight_decay", 1e-4, f"{s}:{L['head_sgd'] + 1}", "weight_decay=1e-4"),
        V(
            "pretrain.lpaft.probe.optim.decay_norm_and_bias",
            True,
            f"{s}:{L['head_sgd'] + 1}",
            "model.fc.parameters()",
        ),
        *_one_lr("pretrain.lpaft.probe.", f"{s}:{L['head_sgd'] + 1}", "model.fc.parameters()"),
        V(
            "pretrain.lpaft.probe.optim.schedule",
            "constant",
            f"{s}:{L['sched'] + 2}-{L['sched'] + 3}",
            "milestones=[]",
        ),
        V("pretrain.lpaft.probe.optim.schedule_unit", "epoch", f"{s}:{L['sched'] + 2}", "MultiStepLR("),
        V("pretrain.lpaft.probe.optim.warmup_epochs", 0.0, f"{s}:{L['sched'] + 2}", "MultiStepLR("),
        V("pretrain.lpaft.probe.optim.milestones", [], f"{s}:{L['sched'] + 3}", "milestones=[]"),
        V("pretrain.lpaft.probe.optim.gamma", 0.1, f"{s}:{L['sched'] + 3}", "gamma=0.1"),
        V(
            "pretrain.lpaft.probe.optim.min_lr",
            0.0,
            f"{s}:{L['sched'] + 2}",
            "MultiStepLR(",
            "unused (constant)",
        ),
        V(
            "pretrain.lpaft.probe.optim.cosine_sampled_at_end",
            False,
            f"{s}:{L['sched'] + 2}",
            "MultiStepLR(",
            "unused (constant)",
        ),
        V("pretrain.lpaft.trades.epochs", 25, f"{s}:{L['epochs']}", "default=25"),
        V("pretrain.lpaft.trades.batch_size", 512, f"{s}:{L['batch']}", "default=512"),
        V("pretrain.lpaft.trades.samples_per_epoch", 0, f"{s}:{L['loader']}", "drop_last=True"),
        V("pretrain.lpaft.trades.drop_last", True, f"{s}:{L['loader']}", "drop_last=True"),
        V("pretrain.lpaft.trades.grad_accum_steps", 1, f"{s}:{L['sgd']}", "torch.optim.SGD("),
        V("pretrain.lpaft.trades.optim.name", "sgd", f"{s}:{L['sgd']}", "torch.optim.SGD("),
        V("pretrain.lpaft.trades.optim.lr", 0.1, f"{s}:{L['lr']}", "default=0.1"),
        V("pretrain.lpaft.trades.optim.momentum", 0.9, f"{s}:{L['sgd'] + 1}", "momentum=0.9"),
        V("pretrain.lpaft.trades.optim.nesterov", False, f"{s}:{L['sgd'] + 1}", "momentum=0.9"),
        V("pretrain.lpaft.trades.optim.weight_decay", 1e-4, f"{s}:{L['sgd'] + 1}", "weight_decay=1e-4"),
        V(
            "pretrain.lpaft.trades.optim.decay_norm_and_bias",
            True,
            f"{s}:{L['sgd'] + 1}",
            "model.parameters()",
        ),
        *_one_lr("pretrain.lpaft.trades.", f"{s}:{L['sgd'] + 1}", "model.parameters()"),
        V("pretrain.lpaft.trades.optim.schedule", "piecewise", f"{s}:{L['sched']}", "MultiStepLR("),
        V("pretrain.lpaft.trades.optim.schedule_unit", "epoch", f"{s}:{L['sched']}", "MultiStepLR("),
        V("pretrain.lpaft.trades.optim.warmup_epochs", 0.0, f"{s}:{L['sched']}", "MultiStepLR("),
        V(
            "pretrain.lpaft.trades.optim.milestones",
            [10.0, 20.0],
            f"{s}:{L['sched'] + 1}",
            "milestones=[10,20]",
        ),
        V("pretrain.lpaft.trades.optim.gamma", 0.1, f"{s}:{L['sched'] + 1}", "gamma=0.1"),
        V(
            "pretrain.lpaft.trades.optim.min_lr",
            0.0,
            f"{s}:{L['sched']}",
            "MultiStepLR(",
            "unused (piecewise)",
        ),
        V(
            "pretrain.lpaft.trades.optim.cosine_sampled_at_end",
            False,
            f"{s}:{L['sched']}",
            "MultiStepLR(",
            "unused (piecewise)",
        ),
        V("pretrain.lpaft.beta", 6.0, beta_cite, beta_match),
        V("pretrain.lpaft.attack.norm", "Linf", L["trades_def"], "distance='l_inf'"),
        V("pretrain.lpaft.attack.eps", EPS, L["trades_def"], "epsilon=8/255"),
        V("pretrain.lpaft.attack.step_size", STEP, L["trades_def"], "step_size=2/255"),
        V("pretrain.lpaft.attack.steps", 10, f"{s}:{L['call'] + 4}", "perturb_steps=10"),
        V("pretrain.lpaft.attack.start", attack_start, start_cite, start_match),
        V(
            "pretrain.lpaft.attack_target_branch",
            target_branch,
            target_cite,
            target_match,
            "the BN branch of the clean prediction the attack maximises the KL against",
        ),
        V("pretrain.lpaft.attack.name", "pgd", L["trades_def"], "def trades_loss_dual"),
    ]


DYNACL_LPAFT_LINES = dict(
    call=295,
    clusters="DynACL assign_label.py:79",
    clusters_match="for num_clusters in [10]",
    epochs_head=40,
    batch=35,
    loader=133,
    head_sgd=159,
    lr_head=51,
    sched=165,
    epochs=38,
    sgd=157,
    lr=50,
    trades_def="DynACL utils.py:403",
)
AIR_LPAFT_LINES = dict(
    call=255,
    clusters="AIR LP-AFF.py:561",
    clusters_match="num_classes = 10",
    epochs_head=41,
    batch=36,
    loader=137,
    head_sgd=163,
    lr_head=52,
    sched=169,
    epochs=39,
    sgd=161,
    lr=51,
    trades_def="AIR finetuning_utils.py:533",
)


def _finetune(
    kind: str,
    repo: str,
    setup: dict,
    *,
    ft: str = "vanilla_finetuning.py",
    utils: str = "utils.py",
    lines: dict | None = None,
) -> list[V]:
    """SLF / ALF / AFF as ``setup_hyperparameter`` sets them for one pretraining name and ``--mode ALL``
    runs them. ``setup``: per protocol, {field: (value, line, match[, ran])} for batch, lr, milestones, epochs."""
    L = lines or ROBUSTSSL_FT
    u, f = f"{repo} {utils}", f"{repo} {ft}"
    out: list[V] = []
    for p in ("slf", "alf", "aff"):
        k = "finetune." if p == "aff" else f"{p}:finetune."
        got = setup[p]
        for fld, key in (
            ("batch", "batch_size"),
            ("lr", "optim.lr"),
            ("milestones", "optim.milestones"),
            ("epochs", "epochs"),
        ):
            value, line, match, *ran = got[fld]
            src = f if isinstance(line, str) and line.startswith("ft:") else u
            line = line[3:] if isinstance(line, str) and line.startswith("ft:") else line
            out.append(V(k + key, value, f"{src}:{line}", match, ran=ran[0] if ran else ""))
        out += [
            V(k + "optim.name", "sgd", f"{u}:{L['sgd']}", "optim.SGD(parameters"),
            V(k + "optim.momentum", 0.9, f"{f}:{L['momentum']}", "default=0.9"),
            V(k + "optim.nesterov", False, f"{u}:{L['sgd']}-{L['sgd'] + 1}", "momentum=args.momentum"),
            V(k + "optim.weight_decay", 2e-4, f"{f}:{L['wd']}", "default=2e-4"),
            V(
                k + "optim.decay_norm_and_bias",
                True,
                f"{u}:{L['sgd']}",
                "optim.SGD(parameters",
                "one group: every trainable parameter decayed",
            ),
            *_one_lr(k, f"{u}:{L['sgd']}", "optim.SGD(parameters"),
            V(k + "label_smoothing", 0.0, f"{u}:{L['criterion']}", "nn.CrossEntropyLoss()", "no smoothing"),
            V(k + "optim.schedule", "piecewise", f"{u}:{L['sgd'] + 3}", "MultiStepLR("),
            V(
                k + "optim.schedule_unit",
                "step",
                f"{u}:{L['sched_step']}",
                "scheduler.step()",
                "stepped per epoch there; a piecewise schedule read per step changes at the same epoch boundary",
            ),
            V(k + "optim.gamma", 0.1, f"{u}:{L['sgd'] + 4}", "gamma=0.1"),
            V(k + "optim.warmup_epochs", 0.0, f"{u}:{L['sgd'] + 3}", "MultiStepLR(", "no warm-up"),
            V(
                k + "optim.cosine_sampled_at_end",
                False,
                f"{u}:{L['sgd'] + 3}",
                "MultiStepLR(",
                "unused (piecewise)",
            ),
            V(k + "optim.min_lr", 0.0, f"{u}:{L['sgd'] + 3}", "MultiStepLR(", "unused (piecewise)"),
            V(
                k + "samples_per_epoch",
                0,
                f"{u}:{L['loader']}",
                "shuffle=True",
                "every training image once per epoch",
            ),
            V(
                k + "drop_last",
                False,
                f"{u}:{L['loader']}",
                "shuffle=True",
                "the short last batch is trained on",
            ),
            V(k + "grad_accum_steps", 1, f"{u}:{L['step']}", "optimizer.step()"),
            V(
                k + "init",
                "pretrain",
                f"{u}:{L['load']}",
                "torch.load(args.checkpoint",
                "the pretrained backbone of this recipe",
                **_dev(AIR_RCS_AFF_LOAD if (p == "aff" and repo in ("AIR", "RCS")) else None),
            ),
            V(
                k + "head_init",
                "zero",
                f"{u}:{L['fc_zero_aff' if p == 'aff' else 'fc_zero']}",
                "torch.zeros(num_classes, 512)",
                "fc.weight = fc.bias = 0",
            ),
            V(
                k + "bn_branch",
                "adv",
                f"{u}:{L['bn_cnt_aff' if p == 'aff' else 'bn_cnt']}",
                "args.bnNameCnt = 1",
                "the adversarial ('pgd', bn_list.1) branch: SLF/ALF's single-BN network; AFF's exported network",
            ),
            V(
                k + "objective",
                {"slf": "ce", "alf": "pgd_at", "aff": "trades"}[p],
                f"{u}:{L[p + '_loss']}",
                {"slf": "model.eval()(data)", "alf": "pgd_attack(", "aff": "trades_loss_dual("}[p],
            ),
        ]
        if p in ("alf", "aff"):
            out += [
                V(k + "attack.norm", "Linf", f"{u}:{L['trades_def']}", "distance='l_inf'"),
                V(
                    k + "attack.model_mode",
                    "eval",
                    f"{u}:{L['pgd'] if p == 'alf' else L['trades_def']}",
                    "def pgd_attack" if p == "alf" else "def trades_loss_dual",
                    "the attack runs after model.eval() (the function's first lines)",
                ),
                V(k + "attack.eps", EPS, f"{f}:{L['eps']}", "default=8. / 255."),
                V(k + "attack.step_size", STEP, f"{f}:{L['step_size']}", "default=2. / 255."),
                V(k + "attack.steps", 10, f"{f}:{L['steps']}", "default=10"),
                V(
                    k + "attack.name",
                    "pgd",
                    f"{u}:{L['pgd'] if p == 'alf' else L['trades_def']}",
                    "def pgd_attack" if p == "alf" else "def trades_loss_dual",
                ),
                V(
                    k + "attack.start",
                    "uniform" if p == "alf" else "normal",
                    f"{u}:{L['pgd_start'] if p == 'alf' else L['trades_start']}",
                    "torch.rand_like(images) * eps * 2 - eps" if p == "alf" else "0.001 * torch.randn",
                    "ours clamped to [0,1] (test_supervised_parity.py bounds it)",
                ),
            ]
        if p == "aff":
            out += [
                V(
                    "finetune.beta",
                    6.0,
                    f"{u}:{L['lambda2']}",
                    "LAMBDA2 = 6.0",
                    "hard-coded; --beta is unused",
                ),
                V(
                    "finetune.dual_bn",
                    True,
                    f"{f}:{L['dualbn']}",
                    "default=1",
                    "clean inputs through 'normal', adversarial ones through 'pgd' (trades_loss_dual)",
                ),
                V("finetune.protocol", "aff", f"{f}:{L['mode_aff']}", "if args.mode in ['ALL', 'AFF']:"),
            ]
    out.append(
        V(
            "protocols.names",
            ["slf", "alf", "aff"],
            f"{f}:{L['mode']}",
            "default='ALL'",
            "SLF, then ALF, then AFF from the same checkpoint (run_vanilla_tune.sh: --mode ALL)",
        )
    )
    return out


ROBUSTSSL_FT = dict(
    criterion=655,
    sgd=505,
    momentum=40,
    wd=36,
    sched_step=724,
    loader=457,
    step=696,
    load=512,
    fc_zero=532,
    fc_zero_aff=550,
    bn_cnt=530,
    bn_cnt_aff=773,
    slf_loss=667,
    alf_loss=670,
    aff_loss=678,
    trades_def=602,
    eps=45,
    step_size=47,
    steps=49,
    pgd=230,
    pgd_start=234,
    trades_start=609,
    lambda2=637,
    dualbn=19,
    mode_aff=227,
    mode=63,
    aa=391,
    pgd_eval=286,
    eval_aa=56,
)
# AIR's and RCS's finetuning.py / finetuning_utils.py: the same code, at other lines (identical in both)
AIR_RCS_FT = dict(
    criterion=586,
    sgd=446,
    momentum=42,
    wd=38,
    sched_step=655,
    loader=401,
    step=627,
    load=453,
    fc_zero=468,
    fc_zero_aff=481,
    bn_cnt=466,
    bn_cnt_aff=704,
    slf_loss=598,
    alf_loss=601,
    aff_loss=609,
    trades_def=533,
    eps=47,
    step_size=49,
    steps=51,
    pgd=174,
    pgd_start=178,
    trades_start=540,
    lambda2=568,
    dualbn=21,
    mode_aff=227,
    mode=63,
    aa=335,
    pgd_eval=230,
    eval_aa=58,
)

AIR_RCS_AFF_LOAD = (
    "AFF starts from every pretrained weight, as RobustSSL loads them; the repository's own "
    "finetuning_utils.py would leave AFF's BN layers and downsample convolutions untrained",
    "we load every pretrained weight into the dual-BN AFF network, as RobustSSL's get_model "
    "does (utils.py:542-552); AIR's and RCS's own finetuning_utils.py:478-483 convert the "
    "checkpoint to single-BN names first and load it non-strictly into the dual-BN network, so "
    "its BN layers and downsample convolutions would start untrained — a slip, not reproduced",
)


def _setup(slf, alf, aff):
    return {"slf": slf, "alf": alf, "aff": aff}


# RobustSSL utils.py setup_hyperparameter, per pretraining name (line numbers of the cifar10 branch)
_EPOCHS_DEFAULT = (25, "ft:34", "default=25")
FT_ACL = _setup(
    slf=dict(
        batch=(512, 808, "args.batch_size = 512"),
        lr=(0.01, 809, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 819, "'10,20'"),
        epochs=_EPOCHS_DEFAULT,
    ),
    alf=dict(
        batch=(512, 808, "args.batch_size = 512"),
        lr=(0.01, 809, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 819, "'10,20'"),
        epochs=_EPOCHS_DEFAULT,
    ),
    aff=dict(
        batch=(128, 822, "args.batch_size = 128"),
        lr=(0.1, 821, "args.lr = 0.1"),
        milestones=([40.0, 60.0], 824, "'40,60'"),
        epochs=(100, 823, "args.epochs = 100"),
    ),
)
FT_DYNACL = _setup(
    slf=dict(
        batch=(512, 831, "args.batch_size = 512"),
        lr=(0.01, 832, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 842, "'10,20'"),
        epochs=_EPOCHS_DEFAULT,
    ),
    alf=dict(
        batch=(512, 831, "args.batch_size = 512"),
        lr=(0.01, 832, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 842, "'10,20'"),
        epochs=_EPOCHS_DEFAULT,
    ),
    aff=dict(
        batch=(128, 848, "args.batch_size = 128"),
        lr=(0.1, 849, "args.lr = 0.1"),
        milestones=([15.0, 20.0], 847, "'15,20'"),
        epochs=_EPOCHS_DEFAULT,
    ),
)
_CARRY_5 = (
    "SLF's `args.epochs = 5` (utils.py:929) is never reset: --mode ALL passes one args object through "
    "SLF, ALF and AFF (vanilla_finetuning.py:161, 200, 237), so ALF and AFF ran 5 epochs, not the "
    "default 25 that --mode ALF / AFF alone would run; the lr never reaches a milestone"
)
FT_DYNACL_AIR = _setup(
    slf=dict(
        batch=(512, 927, "args.batch_size = 512"),
        lr=(0.01, 928, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 939, "'10,20'"),
        epochs=(5, 929, "args.epochs = 5"),
    ),
    alf=dict(
        batch=(512, 942, "args.batch_size = 512"),
        lr=(0.01, 943, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 953, "'10,20'"),
        epochs=(5, 929, "args.epochs = 5", _CARRY_5),
    ),
    aff=dict(
        batch=(128, 955, "args.batch_size = 128"),
        lr=(0.1, 957, "args.lr = 0.1"),
        milestones=([15.0, 20.0], 956, "'15,20'"),
        epochs=(5, 929, "args.epochs = 5", _CARRY_5),
    ),
)
_CARRY_4 = (
    "ALF's `args.epochs = 4` (utils.py:977) is never reset, so AFF ran 4 epochs under --mode ALL "
    "(its own `args.epoch = 19`, utils.py:990, sets an attribute nothing reads); the lr never reaches "
    "a milestone"
)
FT_DYNACL_AIR_PP = _setup(
    slf=dict(
        batch=(512, 964, "args.batch_size = 512"),
        lr=(0.01, 965, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 972, "'10,20'"),
        epochs=_EPOCHS_DEFAULT,
    ),
    alf=dict(
        batch=(512, 975, "args.batch_size = 512"),
        lr=(0.01, 976, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 984, "'10,20'"),
        epochs=(4, 977, "args.epochs = 4"),
    ),
    aff=dict(
        batch=(128, 987, "args.batch_size = 128"),
        lr=(0.1, 989, "args.lr = 0.1"),
        milestones=([15.0, 20.0], 988, "'15,20'"),
        epochs=(4, 977, "args.epochs = 4", _CARRY_4),
    ),
)
_DEFAULT_BRANCH = (
    "run_vanilla_tune.sh:10 passes --pretraining DynACL-RCS, but setup_hyperparameter tests "
    "'DynACL_RCS' (utils.py:828): the name falls through to the default branch (utils.py:997-1000) "
    "for every protocol; the RCS repository's own finetuning.py (DynACL_RCS branch) would give "
    "DynACL's values (SLF/ALF batch 512, lr 0.01, milestones 10, 20)"
)
FT_DYNACL_RCS = _setup(
    **{
        p: dict(
            batch=(128, 998, "args.batch_size = 128", _DEFAULT_BRANCH if p != "aff" else ""),
            lr=(0.1, 1000, "args.lr = 0.1", _DEFAULT_BRANCH if p != "aff" else ""),
            milestones=([15.0, 20.0], 999, "'15,20'", _DEFAULT_BRANCH if p != "aff" else ""),
            epochs=_EPOCHS_DEFAULT,
        )
        for p in ("slf", "alf", "aff")
    }
)
# AIR finetuning_utils.py 'ACL-AIR' (RobustSSL's copy, 'ACL_IR', is unreachable: its --pretraining choices lack it)
FT_ACL_AIR = _setup(
    slf=dict(
        batch=(512, 793, "args.batch_size = 512"),
        lr=(0.005, 794, "args.lr = 0.005"),
        milestones=([10.0, 20.0], 804, "'10,20'"),
        epochs=(25, "ft:36", "default=25"),
    ),
    alf=dict(
        batch=(512, 807, "args.batch_size = 512"),
        lr=(0.01, 808, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 818, "'10,20'"),
        epochs=(25, "ft:36", "default=25"),
    ),
    aff=dict(
        batch=(128, 821, "args.batch_size = 128"),
        lr=(0.1, 820, "args.lr = 0.1"),
        milestones=([40.0, 60.0], 823, "'40,60'"),
        epochs=(100, 822, "args.epochs = 100"),
    ),
)
# RCS finetuning_utils.py 'ACL_RCS' (ACL's values; RobustSSL has no ACL-RCS entry)
FT_ACL_RCS = _setup(
    slf=dict(
        batch=(512, 745, "args.batch_size = 512"),
        lr=(0.01, 746, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 756, "'10,20'"),
        epochs=(25, "ft:36", "default=25"),
    ),
    alf=dict(
        batch=(512, 745, "args.batch_size = 512"),
        lr=(0.01, 746, "args.lr = 0.01"),
        milestones=([10.0, 20.0], 756, "'10,20'"),
        epochs=(25, "ft:36", "default=25"),
    ),
    aff=dict(
        batch=(128, 759, "args.batch_size = 128"),
        lr=(0.1, 758, "args.lr = 0.1"),
        milestones=([40.0, 60.0], 761, "'40,60'"),
        epochs=(100, 760, "args.epochs = 100"),
    ),
)

TRADES_INIT = (
    "PyTorch's default initialisation; TRADES' WideResNet draws N(0, 2/n) convolutions and zero "
    "biases (an architecture choice, not a recipe value)",
    "TRADES draws its convolutions from N(0, 2/n) and zeroes the Linear bias (wideresnet.py:74-82); our "
    "wrn34_10_cifar keeps PyTorch's default initialisation (an architecture choice, not a recipe value)",
)


def _acl_air_weights_note():
    return "AIR.py:100: nat·(1 − weight) + adv·(1 + weight), no ½; weight = 0 without --DynAug"


# ---- the recipes ----------------------------------------------------------------------------------------

# ---- FARE (chs20/RobustVLM): train/adversarial_training_clip.py as its README's FARE⁴ command runs it -------


def _fare() -> list[V]:
    """FARE⁴ (README.md:282) on a ViT-B/16 CLIP tower. The run ends at the encoder: the reference evaluates
    zero-shot CLIP (CLIP_eval/), so fine-tuning, evaluation and export keys are not part of this recipe."""
    cmd, tr, pgd = (
        "RobustVLM README.md:282",
        "RobustVLM train/adversarial_training_clip.py",
        "RobustVLM train/pgd_train.py",
    )
    per_step = "ImageNet's 1,281,167 images make 10,009 full batches of 128 an epoch"
    return [
        V(
            "data.dataset",
            "images",
            f"{tr}:119-122",
            "dataset = ImageNetDataset(",
            "ImageNet train there, your unlabeled folder here: FARE's loss never reads a label (lines 356-360)",
        ),
        V(
            "data.image_size",
            224,
            f"{tr}:112-113",
            "Resize(size=224, interpolation=bicubic",
            "then CenterCrop",
        ),
        V("data.wrong_size", "crop", f"{tr}:112-113", "CenterCrop(size=(224, 224))", "shorter side, bicubic"),
        V(
            "data.val_size",
            256,
            f"{tr}:143-146",
            "dataset_eval = ImageNetDataset(",
            deviation="the reference trains on all of ImageNet train and evaluates on ImageNet val (zero-shot, "
            "with labels); ours holds 256 of your images out of training for the label-free embedding report",
            summary="256 images held out of training for the embedding report",
        ),
        V("data.sampling", "exact", f"{tr}:147", "shuffle=True", "each image once per epoch"),
        V(
            "model.name",
            "timm:vit_base_patch16_clip_224.openai",
            f"{tr}:32",
            "default='ViT-L-14'",
            deviation="the reference trains CLIP ViT-L/14 (the command's --clip_model_name ViT-L-14); this recipe "
            "the ViT-B/16 tower timm loads (4.6× fewer FLOPs; cost in README). Every other value is FARE⁴'s",
            summary="ViT-B/16 instead of ViT-L/14",
        ),
        V(
            "model.pretrained",
            "weights/vit_b16_clip_openai",
            f"{tr}:95-97",
            "pretrained='openai'",
            "OpenAI CLIP",
        ),
        V(
            "model.mean",
            [0.48145466, 0.4578275, 0.40821073],
            f"{tr}:116",
            "mean=(0.48145466, 0.4578275",
            "from the folder's config.json (timm's pretrained_cfg of the .openai tag)",
        ),
        V("model.std", [0.26862954, 0.26130258, 0.27577711], f"{tr}:116", "std=(0.26862954, 0.26130258"),
        V("model.kwargs", {}, f"{tr}:103", "load_clip_model(args.clip_model_name", "open_clip's own tower"),
        V("pretrain.method", "fare", cmd, "--loss l2", "‖f(x+δ) − f₀(x)‖² (lines 356-360, 509-521)"),
        V(
            "pretrain.epochs",
            2,
            cmd,
            "--steps 20000",
            f"{per_step}: 2 epochs = 20,018 steps; on your data choose epochs ≈ 20,000 × 128 / N",
            deviation="the reference stops after 20,000 steps, inside its second epoch; ours trains whole "
            "epochs (20,018 steps on ImageNet, 0.09% more) and its cosine ends at the last of them",
            summary="whole epochs: 20,018 steps on ImageNet instead of 20,000",
        ),
        V("pretrain.samples_per_epoch", 0, f"{tr}:147", "DataLoader(dataset", "the whole set each epoch"),
        V("pretrain.batch_size", 128, cmd, "--batch_size 128"),
        V("pretrain.drop_last", True, f"{tr}:147", "drop_last=True"),
        V("pretrain.grad_accum_steps", 1, f"{tr}:362-363", "optimizer.step()", "a step per batch"),
        V("pretrain.optim.name", "adamw", cmd, "--opt adamw"),
        V("pretrain.optim.lr", 1e-5, cmd, "--lr 1e-5"),
        V("pretrain.optim.betas", [0.9, 0.999], f"{tr}:197", "torch.optim.AdamW(params", "torch's default"),
        V("pretrain.optim.weight_decay", 1e-4, cmd, "--wd 1e-4"),
        V(
            "pretrain.optim.decay_norm_and_bias",
            True,
            f"{tr}:194",
            "params = unwrap_model(model).model.parameters()",
            "one group: every parameter decayed",
        ),
        V("pretrain.optim.layer_decay", 1.0, f"{tr}:194", "model.parameters()", "one lr"),
        V("pretrain.optim.schedule", "cosine", f"{tr}:211", "cosine_lr(optimizer, args.lr, args.warmup"),
        V("pretrain.optim.schedule_unit", "step", f"{tr}:366", "scheduler(step_total)"),
        V(
            "pretrain.optim.warmup_epochs",
            0.14,
            cmd,
            "--warmup 1400",
            f"{per_step}: 0.14 epoch = 1,401 steps; on your data ≈ 1,400 / (N / 128)",
            deviation="open_clip's cosine_lr is first called after step 1, so the reference's first step runs "
            "at the full lr 1e-5, ours at 1e-5 / 1,401 (test_fare_parity.py); from step 2 on the two agree",
            summary="first step at lr / warm-up steps, not the full lr",
        ),
        V(
            "pretrain.optim.warmup_from_zero",
            False,
            f"{tr}:211",
            "cosine_lr(",
            "open_clip's warm-up: lr · (step + 1) / warmup",
        ),
        V("pretrain.optim.min_lr", 0.0, f"{tr}:211", "cosine_lr(", "open_clip's cosine ends at 0"),
        V(
            "pretrain.optim.cosine_sampled_at_end",
            False,
            f"{tr}:366",
            "scheduler(step_total)",
            "the lr of step s is the schedule at s",
        ),
        V("pretrain.attack.name", "pgd", cmd, "--attack pgd"),
        V("pretrain.attack.norm", "Linf", cmd, "--norm linf"),
        V("pretrain.attack.eps", 4 / 255, cmd, "--eps 4", "/ 255 at line 537; FARE²: --eps 2"),
        V("pretrain.attack.step_size", 1 / 255, cmd, "--stepsize_adv 1", "/ 255 at line 538"),
        V("pretrain.attack.steps", 10, cmd, "--iterations_adv 10"),
        V("pretrain.attack.start", "uniform", f"{tr}:318", "uniform_(-args.eps, args.eps)"),
        *_off("pretrain.rcs.fraction", f"{tr}:147", "DataLoader(dataset", "no coreset"),
        *_off("pretrain.lpaft.enabled", f"{tr}:239", "final.pt", "no post-processing"),
        V("pretrain.fare.attack", "pgd", cmd, "--attack pgd", "PGD with momentum (pgd_train.py)"),
        V("pretrain.fare.momentum", 0.9, f"{pgd}:17", "momentum=0.9"),
        V("pretrain.fare.output_normalize", False, cmd, "--output_normalize False"),
        V("pretrain.fare.clean_weight", 0.0, f"{tr}:45", "'--clean_weight', type=float, default=0."),
        V(
            "pretrain.fare.update_bn_statistics",
            False,
            f"{tr}:338",
            "model.train()",
            "no effect on a ViT (no BatchNorm); for CNNs see pipeline/objectives/fare.py",
        ),
    ]


# ---- MIMIR (xiaoyunxxy/MIMIR): its pretrain.py / finetune.py as script/train_cifar10.sh runs them ----------

_MIMIR_SIZES = {
    # size: (our model, its MAE builder's lines in models/mae_vit.py, what they hold, anchor)
    "small": ("vit_small_patch4_32", "252-254", "embed_dim=384, depth=12, num_heads=6", "88.11 / 53.18"),
    "tiny": ("vit_tiny_patch4_32", "243-245", "embed_dim=192, depth=12, num_heads=3", "84.82 / 52.96"),
}


def _mimir(size: str) -> list[V]:
    """MIMIR on CIFAR-10 (script/train_cifar10.sh: mae_vit_small / vit_small; ViT-T is the same script with
    mae_vit_ti / vit_ti, which its README's ViT-T row reports), then its PGD-10 fine-tuning."""
    model, mae_lines, mae_match, anchor = _MIMIR_SIZES[size]
    sh, pre, ft = "MIMIR script/train_cifar10.sh", "MIMIR pretrain.py", "MIMIR finetune.py"
    mae, pgd, sched = "MIMIR models/mae_vit.py", "MIMIR pgd_mae/pgd_mae.py", "MIMIR util/lr_sched.py"
    lrd, aa, vit = "MIMIR util/lr_decay.py", "MIMIR util/aa_eval.py", "MIMIR models/models_vit.py"
    mlp_line = 249 if size == "tiny" else 258
    return [
        V(
            "data.dataset",
            "cifar10",
            f"{sh}:6",
            "dataset=cifar10",
            f"README row ViT-{size[0].upper()}{size[1:]} {anchor}",
            deviation="the script as shipped adds 5M EDM-generated images (--use_edm, lines 42 and 64, "
            "unsup_fraction 0.7); the README reports the row without them separately, which is the anchor here",
            summary="CIFAR-10 only: no 5M EDM images (the anchor row is the one without them)",
        ),
        V("data.num_classes", 10, f"{sh}:7", "nb_classes=10"),
        V("data.image_size", 32, f"{sh}:9", "input_size=32"),
        V("data.wrong_size", "resize", f"{sh}:9", "input_size=32", "CIFAR-10 is 32 px already"),
        V(
            "data.val_size",
            0,
            f"{ft}:216",
            "dataset_val = build_dataset(args, is_train=False)",
            "no split held out: the test set is its validation set; the last epoch is reported",
        ),
        V("data.sampling", "exact", f"{ft}:222", "DistributedSampler(", "each image once per epoch"),
        V("model.name", model, f"{mae}:{mae_lines}", mae_match, "patch size from model.kwargs"),
        V("model.kwargs.patch_size", 2, f"{sh}:8", "patch_size=2", "2×2 patches at 32 px: 256 tokens"),
        V(
            "model.kwargs.img_size",
            32,
            f"{sh}:9",
            "input_size=32",
            "data.image_size (a ViT follows the data)",
        ),
        V(
            "model.mean",
            [0.0, 0.0, 0.0],
            f"{pre}:85",
            "'--use_normalize', action='store_true'",
            "not set by the script: the network sees [0,1] pixels (upper_limit = 1.0, pretrain.py:228)",
        ),
        V("model.std", [1.0, 1.0, 1.0], f"{pre}:85", "'--use_normalize', action='store_true'"),
        V("model.pretrained", "", "MIMIR util/loader.py:35", "mae_vit.__dict__[args.model](", "from scratch"),
        V(
            "run.mixed_precision",
            "bf16",
            f"{pre}:311",
            "torch.cuda.amp.autocast()",
            deviation="fp16 autocast with a GradScaler there; bf16 here (no scaler needed), fp32 on CPU; the HSIC "
            "term is fp32 in both, but its distance matrix is computed under fp16 there",
            summary="bf16 instead of fp16 autocast",
        ),
        V("pretrain.method", "mimir", f"{pre}:314", "adv_images=adv_images"),
        V("pretrain.epochs", 800, f"{sh}:35", "--epochs 800"),
        V("pretrain.samples_per_epoch", 0, f"{pre}:178", "sampler=sampler_train", "the whole set each epoch"),
        V("pretrain.batch_size", 512, f"{sh}:12", "pre_batchsize=128", "128 per GPU × 4 GPUs (line 2)"),
        V("pretrain.drop_last", True, f"{pre}:182", "drop_last=True"),
        V("pretrain.grad_accum_steps", 1, f"{pre}:40", "'--accum_iter', default=1"),
        V("pretrain.optim.name", "adamw", f"{pre}:245", "torch.optim.AdamW("),
        V("pretrain.optim.lr", 3e-4, f"{sh}:15", "pre_blr=1.5e-4", "× 512 / 256 (pretrain.py:196)"),
        V("pretrain.optim.betas", [0.9, 0.95], f"{pre}:245", "betas=(0.9, 0.95)"),
        V("pretrain.optim.weight_decay", 0.05, f"{sh}:36", "--weight_decay 0.05"),
        V(
            "pretrain.optim.decay_norm_and_bias",
            False,
            f"{pre}:244",
            "param_groups_weight_decay",
            "timm: 1-D parameters and biases undecayed; the fixed position embeddings are not trained",
        ),
        V("pretrain.optim.layer_decay", 1.0, f"{pre}:244", "param_groups_weight_decay", "one lr"),
        V("pretrain.optim.schedule", "cosine", f"{sched}:14", "(args.lr - args.min_lr) * 0.5"),
        V(
            "pretrain.optim.schedule_unit",
            "step",
            f"{pre}:307",
            "data_iter_step / len(data_loader) + epoch",
            "read every iteration",
        ),
        V("pretrain.optim.warmup_epochs", 40.0, f"{sh}:35", "--warmup_epochs 40"),
        V(
            "pretrain.optim.warmup_from_zero",
            True,
            f"{sched}:12",
            "lr = args.lr * epoch / args.warmup_epochs",
        ),
        V("pretrain.optim.min_lr", 0.0, f"{pre}:67", "'--min_lr', type=float, default=0."),
        V(
            "pretrain.optim.cosine_sampled_at_end",
            False,
            f"{pre}:307",
            "adjust_learning_rate(optimizer",
            "read at the step's own position, before it",
        ),
        V("pretrain.attack.name", "pgd", f"{sh}:40", "--attack pgd_mae"),
        V("pretrain.attack.norm", "Linf", f"{pgd}:82", "torch.clamp(adv_images - images"),
        V("pretrain.attack.eps", EPS, f"{sh}:40", "--eps 8", "/ 255 at pretrain.py:205"),
        V("pretrain.attack.step_size", 10 / 255, f"{sh}:40", "--alpha 10"),
        V("pretrain.attack.steps", 1, f"{sh}:40", "--steps 1"),
        V("pretrain.attack.start", "uniform", f"{pgd}:64", "uniform_(-self.eps, self.eps)"),
        *_off("pretrain.rcs.fraction", f"{pre}:178", "sampler=sampler_train", "no coreset"),
        *_off("pretrain.lpaft.enabled", f"{pre}:178", "sampler=sampler_train", "no post-processing"),
        V("pretrain.mimir.mask_ratio", 0.75, f"{sh}:34", "--mask_ratio 0.75"),
        V(
            "pretrain.mimir.attack_mask_ratio",
            0.75,
            f"{mae}:217",
            "def forward(self, imgs, mask_ratio=0.75",
            "the attack calls self.model(adv_images) (pgd_mae.py:69): the default ratio, target = its input",
        ),
        V("pretrain.mimir.norm_pix_loss", True, f"{sh}:34", "--norm_pix_loss"),
        V("pretrain.mimir.decoder_dim", 128, f"{mae}:238", "'decoder_embed_dim': 128"),
        V("pretrain.mimir.decoder_depth", 2, f"{mae}:239", "'decoder_depth': 2"),
        V("pretrain.mimir.decoder_heads", 16, f"{mae}:240", "'decoder_num_heads': 16"),
        V("pretrain.mimir.decoder_mlp_ratio", 4.0, f"{mae}:{mlp_line}", "mlp_ratio=4", "encoder and decoder"),
        V("pretrain.mimir.hsic_weight", 1e-5, f"{sh}:43", "--mi_xpl 0.00001"),
        V("pretrain.mimir.hsic_sigma", 5.0, f"{pre}:323", "sigma=5"),
        V(
            "finetune.init",
            "pretrain",
            f"{sh}:50",
            '--finetune "$finetune_checkpoint"',
            deviation="the reference's classifier averages the tokens through a fresh fc_norm "
            "(models_vit.py global_pool=True, finetune.py:125-126) and drops paths at 0.1 (line 58); ours pools "
            "the class token through the pretrained norm and has no drop path (model.kwargs are shared with "
            "pretraining, whose MAE has none)",
            summary="class-token pooling, no drop path in fine-tuning",
        ),
        V("finetune.protocol", "aff", f"{ft}:492", "model.train(True)", "the whole network trains"),
        V("finetune.objective", "pgd_at", f"{sh}:63", "--attack_train pgd", "CE on PGD examples (line 521)"),
        V("finetune.label_smoothing", 0.1, f"{ft}:91", "'--smoothing', type=float, default=0.1"),
        V("finetune.bn_branch", "adv", f"{vit}:21", "class VisionTransformer(", "no effect (no BatchNorm)"),
        V("finetune.dual_bn", True, f"{vit}:21", "class VisionTransformer(", "no effect (no BatchNorm)"),
        V(
            "finetune.head_init",
            "default",
            f"{ft}:315",
            "trunc_normal_(model.head.weight, std=2e-2)",
            "timm's ViT head initialisation is the same truncated normal, std 0.02 (bias 0)",
        ),
        V("finetune.epochs", 50, f"{sh}:55", "--epochs 50"),
        V("finetune.samples_per_epoch", 0, f"{ft}:222", "DistributedSampler(", "the whole set each epoch"),
        V("finetune.batch_size", 128, f"{sh}:13", "ft_batchsize=32", "32 per GPU × 4 GPUs (line 2)"),
        V("finetune.drop_last", True, f"{ft}:261", "drop_last=True"),
        V("finetune.grad_accum_steps", 1, f"{ft}:50", "'--accum_iter', default=1"),
        V("finetune.optim.name", "adamw", f"{ft}:377", "torch.optim.AdamW(param_groups, lr=args.lr)"),
        V("finetune.optim.lr", 0.025, f"{sh}:16", "ft_blr=0.05", "× 128 / 256 (finetune.py:360)"),
        V(
            "finetune.optim.betas",
            [0.9, 0.999],
            f"{ft}:377",
            "torch.optim.AdamW(param_groups, lr=args.lr)",
            "torch's default betas",
        ),
        V("finetune.optim.weight_decay", 0.05, f"{sh}:58", "--weight_decay 0.05"),
        V(
            "finetune.optim.decay_norm_and_bias",
            False,
            f"{lrd}:32",
            "p.ndim == 1 or n in no_weight_decay_list",
            "and not pos_embed / cls_token (the ViT's no_weight_decay())",
        ),
        V(
            "finetune.optim.layer_decay",
            0.65,
            f"{sh}:57",
            "--layer_decay 0.65",
            "util/lr_decay.py's layer map",
        ),
        V("finetune.optim.schedule", "cosine", f"{sched}:14", "(args.lr - args.min_lr) * 0.5"),
        V("finetune.optim.schedule_unit", "step", f"{ft}:510", "data_iter_step / len(data_loader) + epoch"),
        V("finetune.optim.warmup_epochs", 5.0, f"{sh}:55", "--warmup_epochs 5"),
        V(
            "finetune.optim.warmup_from_zero",
            True,
            f"{sched}:12",
            "lr = args.lr * epoch / args.warmup_epochs",
        ),
        V("finetune.optim.min_lr", 1e-6, f"{ft}:78", "default=1e-6"),
        V("finetune.optim.cosine_sampled_at_end", False, f"{ft}:510", "adjust_learning_rate(optimizer"),
        V("finetune.attack.name", "pgd", f"{ft}:348", "torchattacks.PGD(model"),
        V("finetune.attack.norm", "Linf", f"{ft}:348", "torchattacks.PGD(model"),
        V("finetune.attack.eps", EPS, f"{sh}:63", "--eps 8"),
        V("finetune.attack.step_size", STEP, f"{sh}:63", "--alpha 2"),
        V("finetune.attack.steps", 10, f"{sh}:63", "--steps 10"),
        V("finetune.attack.start", "uniform", f"{ft}:349", "random_start=True"),
        V(
            "finetune.attack.model_mode",
            "eval",
            f"{ft}:348",
            "torchattacks.PGD(model",
            "torchattacks attacks with the model in eval() (its default training mode: off)",
        ),
        V("protocols.names", ["aff"], f"{sh}:49", "finetune.py", "one fine-tune"),
        V("evaluate.norm", "Linf", f"{aa}:107", "norm='Linf'"),
        V("evaluate.eps", EPS, f"{aa}:107", "eps=args.eps", "--eps 8, / 255 at finetune.py:320"),
        V("evaluate.n_examples", 10000, "MIMIR util/aa_eval.py:29", "train=False", "the whole test set"),
        V("evaluate.autoattack.enabled", True, f"{ft}:431", "evaluate_aa(args"),
        V("evaluate.autoattack.version", "standard", f"{aa}:107", "version='standard'"),
        V("evaluate.autoattack.attacks", [], f"{aa}:107", "version='standard'"),
        V("evaluate.autoattack.n_examples", 0, f"{aa}:108", "run_standard_evaluation(x_test, y_test"),
        V("evaluate.pgd.steps", 20, f"{ft}:421", "eval_steps=20"),
        V("evaluate.pgd.step_size", STEP, f"{aa}:137", "alpha=args.alpha", "--alpha 2 (finetune.py:172)"),
        V("evaluate.pgd.restarts", 1, f"{aa}:137", "random_start=True"),
        V("evaluate.precision", "fp32", f"{aa}:108", "run_standard_evaluation(", "no autocast there"),
        V("evaluate.model", "finetune", f"{ft}:431", "evaluate_aa(args, model"),
        V("evaluate.checkpoint", "final", f"{ft}:456", "epoch + 1 == args.epochs", "the last epoch's model"),
        V("export.checkpoint", "final", f"{ft}:456", "epoch + 1 == args.epochs"),
    ]


TABLE: dict[str, list[V]] = {
    "cifar10_acl_gpu.yaml": [
        *_common("ACL"),
        *_acl_pretrain("ACL", "train_simCLR.py", ACL_LINES, "acl"),
        *_no_rcs("ACL train_simCLR.py:102-106", "DataLoader("),
        *_no_lpaft("ACL train_simCLR.py:102-106", "DataLoader("),
        *_finetune("ACL", "RobustSSL", FT_ACL),
        *_evaluate(),
    ],
    "cifar10_dynacl_gpu.yaml": [
        *_common("DynACL", mean_line=251, conv_line=267, init_line=283),
        *_acl_pretrain(
            "DynACL",
            "train_DynACL.py",
            DYNACL_LINES,
            "dynacl",
            interpolation="bilinear",
            schedule_unit="epoch",
            sampled_at_end=False,
        ),
        *_dynacl_schedule(
            "DynACL",
            "train_DynACL.py",
            (57, "default=50"),
            (219, "strength = 1 - (epoch - 1) / args.epochs"),
            (48, "default=2/3"),
            0.99,
            ("DynACL models/resnet_multi_bn.py:488", "m=0.99"),
        ),
        *_no_rcs("DynACL train_DynACL.py:477", "DataLoader("),
        *_no_lpaft("DynACL train_DynACL.py:477", "DataLoader("),
        *_finetune("DynACL", "RobustSSL", FT_DYNACL),
        *_evaluate(),
    ],
    "cifar10_dynacl_pp_gpu.yaml": [
        *_common("DynACL", mean_line=251, conv_line=267, init_line=283),
        *_acl_pretrain(
            "DynACL",
            "train_DynACL.py",
            DYNACL_LINES,
            "dynacl",
            interpolation="bilinear",
            schedule_unit="epoch",
            sampled_at_end=False,
        ),
        *_dynacl_schedule(
            "DynACL",
            "train_DynACL.py",
            (57, "default=50"),
            (219, "strength = 1 - (epoch - 1) / args.epochs"),
            (48, "default=2/3"),
            0.99,
            ("DynACL models/resnet_multi_bn.py:488", "m=0.99"),
        ),
        *_no_rcs("DynACL train_DynACL.py:477", "DataLoader("),
        *_lpaft(
            "DynACL",
            "LPAFT_AFF.py",
            DYNACL_LPAFT_LINES,
            attack_start="zero",
            start_cite="DynACL utils.py:410",
            start_match="x_adv = x_natural.detach()",
            beta_cite="DynACL utils.py:437",
            beta_match="loss += beta * loss_robust",
            target_branch="adv",
            target_cite="DynACL utils.py:417",
            target_match="model(x_natural,natural_mode)",
        ),
        *_finetune("DynACL++", "RobustSSL", FT_DYNACL),
        *_evaluate(),
    ],
    "cifar10_acl_air_gpu.yaml": [
        *_common("AIR", mean_line=233, conv_line=249, init_line=265),
        *_acl_pretrain(
            "AIR",
            "pretraining.py",
            AIR_LINES,
            "acl_air",
            weights=(1.0, 1.0),
            weights_note=_acl_air_weights_note(),
        ),
        *_air(),
        *_no_rcs("AIR pretraining.py:288", "get_trainset("),
        *_no_lpaft("AIR pretraining.py:288", "get_trainset("),
        *_finetune(
            "ACL-AIR", "AIR", FT_ACL_AIR, ft="finetuning.py", utils="finetuning_utils.py", lines=AIR_RCS_FT
        ),
        *_evaluate("AIR", "finetuning.py", "finetuning_utils.py", AIR_RCS_FT),
    ],
    "cifar10_dynacl_air_gpu.yaml": [
        *_common("AIR", mean_line=233, conv_line=249, init_line=265),
        *_acl_pretrain(
            "AIR",
            "pretraining.py",
            AIR_LINES,
            "dynacl_air",
            weights=(1.0, 1.0),
            weights_note=_acl_air_weights_note().replace("without --DynAug", "; 2/3·(1 − strength) with it"),
        ),
        *_dynacl_schedule(
            "AIR",
            "pretraining.py",
            (284, "K = 50"),
            (285, "strength = 1 - int((epoch-1)/K) * K/args.epochs"),
            (292, "LAMBDA=2/3"),
            0.0,
            ("AIR pretraining.py:193", "model = resnet18(pretrained=False"),
            "weight = 2/3·(1 − strength) (pretraining.py:344)",
        ),
        *_air(),
        *_no_rcs("AIR pretraining.py:288", "get_trainset("),
        *_no_lpaft("AIR pretraining.py:288", "get_trainset("),
        *_finetune("DynACL-AIR", "RobustSSL", FT_DYNACL_AIR),
        *_evaluate(),
    ],
    "cifar10_dynacl_air_pp_gpu.yaml": [
        *_common("AIR", mean_line=233, conv_line=249, init_line=265),
        *_acl_pretrain(
            "AIR",
            "pretraining.py",
            AIR_LINES,
            "dynacl_air",
            weights=(1.0, 1.0),
            weights_note=_acl_air_weights_note().replace("without --DynAug", "; 2/3·(1 − strength) with it"),
        ),
        *_dynacl_schedule(
            "AIR",
            "pretraining.py",
            (284, "K = 50"),
            (285, "strength = 1 - int((epoch-1)/K) * K/args.epochs"),
            (292, "LAMBDA=2/3"),
            0.0,
            ("AIR pretraining.py:193", "model = resnet18(pretrained=False"),
            "weight = 2/3·(1 − strength) (pretraining.py:344)",
        ),
        *_air(),
        *_no_rcs("AIR pretraining.py:288", "get_trainset("),
        *_lpaft(
            "AIR",
            "LP-AFF.py",
            AIR_LPAFT_LINES,
            attack_start="normal",
            start_cite="AIR finetuning_utils.py:540",
            start_match="x_natural.detach() + 0.001 * torch.randn",
            beta_cite="AIR finetuning_utils.py:568",
            beta_match="LAMBDA2 = 6.0",
            target_branch="clean",
            target_cite="AIR finetuning_utils.py:547",
            target_match="model(x_natural,'normal')",
        ),
        *_finetune("DynACL-AIR++", "RobustSSL", FT_DYNACL_AIR_PP),
        *_evaluate(),
    ],
    "cifar10_acl_rcs_gpu.yaml": [
        *_common("RCS", mean_line=233, conv_line=249, init_line=265),
        *_acl_pretrain("RCS", "ACL_RCS.py", RCS_LINES, "acl"),
        *_rcs(
            "ACL_RCS.py",
            dict(split=194, coreset_lr=270, val_loader=217),
            train_on_validation=(
                False,
                261,
                "coreset_class = RCS(train_datasets",
                "full epochs and the selection see only the 99% (train_datasets = Subset(…, train_indices), :197)",
            ),
        ),
        *_no_lpaft("RCS ACL_RCS.py:293", "train(train_loader"),
        *_finetune(
            "ACL_RCS", "RCS", FT_ACL_RCS, ft="finetuning.py", utils="finetuning_utils.py", lines=AIR_RCS_FT
        ),
        *_evaluate("RCS", "finetuning.py", "finetuning_utils.py", AIR_RCS_FT),
    ],
    "cifar10_dynacl_rcs_gpu.yaml": [
        *_common("RCS", mean_line=233, conv_line=249, init_line=265),
        *_acl_pretrain("RCS", "DynACL_RCS.py", DYNACL_RCS_LINES, "dynacl"),
        *_dynacl_schedule(
            "RCS",
            "DynACL_RCS.py",
            (294, "K = 50"),
            (295, "strength = 1 - int((epoch-1)/K) * K/args.epochs"),
            (364, "LAMBDA = 2/3"),
            0.0,
            ("RCS DynACL_RCS.py:182", "model = resnet18(pretrained=False"),
            "((1 − w)·clean + (1 + w)·adv)/2, w = 2/3·(1 − strength): DynACL's weights, one epoch "
            "index for strength and weight",
        ),
        *_rcs(
            "DynACL_RCS.py",
            dict(split=221, coreset_lr=302, val_loader=244),
            train_on_validation=(
                True,
                298,
                "coreset_class.dataset = train_loader.dataset",
                "every epoch rebuilds its loader over all 50,000 images (get_trainset, :297) and hands that set "
                "to the selection: the 1% drawn as validation (:221-223) is trained on and among the candidates; "
                "the budget stays int(0.99·50,000·0.2) (RCS.py:169)",
            ),
        ),
        *_no_lpaft("RCS DynACL_RCS.py:325", "train(train_loader"),
        *_finetune("DynACL-RCS", "RobustSSL", FT_DYNACL_RCS),
        *_evaluate(),
    ],
    "cifar10_trades_scratch_gpu.yaml": [
        V(
            "model.name",
            "wrn34_10_cifar",
            "TRADES models/wideresnet.py:51",
            "depth=34, num_classes=10, widen_factor=10",
        ),
        V(
            "model.mean",
            [0.0, 0.0, 0.0],
            "TRADES train_trades_cifar10.py:59-63",
            "transforms.ToTensor()",
            "no normalisation anywhere: the network sees [0,1] pixels",
        ),
        V("model.std", [1.0, 1.0, 1.0], "TRADES train_trades_cifar10.py:59-63", "transforms.ToTensor()"),
        V("model.kwargs", {}, "TRADES train_trades_cifar10.py:152", "WideResNet()", "dropRate 0"),
        V(
            "model.pretrained",
            "",
            "TRADES models/wideresnet.py:74-82",
            "m.weight.data.normal_(0, math.sqrt(2. / n))",
            "random initialisation",
            **_dev(TRADES_INIT),
        ),
        V("data.dataset", "cifar10", "TRADES train_trades_cifar10.py:67", "CIFAR10("),
        V("data.num_classes", 10, "TRADES models/wideresnet.py:51", "num_classes=10"),
        V("data.image_size", 32, "TRADES train_trades_cifar10.py:60", "RandomCrop(32, padding=4)"),
        V(
            "data.val_size",
            0,
            "TRADES train_trades_cifar10.py:67-68",
            "train=True",
            "all 50,000 training images; the last epoch's model",
        ),
        V("data.wrong_size", "resize", "TRADES train_trades_cifar10.py:60", "RandomCrop(32"),
        V("run.mixed_precision", "no", "TRADES train_trades_cifar10.py:81", "trades_loss(", "float32"),
        V("finetune.init", "scratch", "TRADES train_trades_cifar10.py:152", "WideResNet()"),
        V(
            "finetune.protocol",
            "aff",
            "TRADES train_trades_cifar10.py:153",
            "model.parameters()",
            "the whole network",
        ),
        V("finetune.objective", "trades", "TRADES train_trades_cifar10.py:81", "trades_loss("),
        V("finetune.beta", 6.0, "TRADES train_trades_cifar10.py:36", "default=6.0"),
        V("finetune.epochs", 76, "TRADES train_trades_cifar10.py:20", "default=76"),
        V("finetune.batch_size", 128, "TRADES train_trades_cifar10.py:16", "default=128"),
        V("finetune.samples_per_epoch", 0, "TRADES train_trades_cifar10.py:68", "shuffle=True"),
        V(
            "finetune.drop_last",
            False,
            "TRADES train_trades_cifar10.py:68",
            "shuffle=True",
            "the short last batch kept",
        ),
        V(
            "data.sampling",
            "exact",
            "TRADES train_trades_cifar10.py:68",
            "shuffle=True",
            "each image once per epoch",
        ),
        V("finetune.attack.model_mode", "eval", "TRADES trades.py:28", "model.eval()"),
        V("finetune.grad_accum_steps", 1, "TRADES train_trades_cifar10.py:153", "optim.SGD("),
        V(
            "finetune.head_init",
            "default",
            "TRADES models/wideresnet.py:71",
            "nn.Linear",
            "the layer's own init",
        ),
        V(
            "finetune.dual_bn",
            True,
            "TRADES models/wideresnet.py:50",
            "class WideResNet",
            "has no effect: a network trained from scratch has one BN per layer",
        ),
        V(
            "finetune.bn_branch",
            "adv",
            "TRADES models/wideresnet.py:50",
            "class WideResNet",
            "no effect (single BN)",
        ),
        V("finetune.optim.name", "sgd", "TRADES train_trades_cifar10.py:153", "optim.SGD("),
        V("finetune.optim.lr", 0.1, "TRADES train_trades_cifar10.py:24", "default=0.1"),
        V("finetune.optim.momentum", 0.9, "TRADES train_trades_cifar10.py:26", "default=0.9"),
        V("finetune.optim.nesterov", False, "TRADES train_trades_cifar10.py:153", "momentum=args.momentum"),
        V("finetune.optim.weight_decay", 2e-4, "TRADES train_trades_cifar10.py:22", "default=2e-4"),
        V(
            "finetune.optim.decay_norm_and_bias",
            True,
            "TRADES train_trades_cifar10.py:153",
            "model.parameters()",
        ),
        *_one_lr("finetune.", "TRADES train_trades_cifar10.py:153", "model.parameters()"),
        V(
            "finetune.label_smoothing",
            0.0,
            "TRADES trades.py:80",
            "F.cross_entropy(logits, y)",
            "no smoothing",
        ),
        V(
            "finetune.optim.schedule",
            "piecewise",
            "TRADES train_trades_cifar10.py:137-145",
            "def adjust_learning_rate",
        ),
        V(
            "finetune.optim.schedule_unit",
            "step",
            "TRADES train_trades_cifar10.py:157",
            "adjust_learning_rate(",
            "set per epoch there; piecewise per step changes at the same boundary",
        ),
        V(
            "finetune.optim.milestones",
            [74.0],
            "TRADES train_trades_cifar10.py:140",
            "if epoch >= 75:",
            "1-based epoch 75 = our 0-based 74; the ×0.01 at 90 and ×0.001 at 100 lie past epoch 76",
        ),
        V("finetune.optim.gamma", 0.1, "TRADES train_trades_cifar10.py:141", "args.lr * 0.1"),
        V(
            "finetune.optim.warmup_epochs",
            0.0,
            "TRADES train_trades_cifar10.py:137-145",
            "def adjust_learning_rate",
        ),
        V(
            "finetune.optim.cosine_sampled_at_end",
            False,
            "TRADES train_trades_cifar10.py:137",
            "def adjust_learning_rate",
            "unused (piecewise)",
        ),
        V(
            "finetune.optim.min_lr",
            0.0,
            "TRADES train_trades_cifar10.py:137",
            "def adjust_learning_rate",
            "unused",
        ),
        V("finetune.attack.norm", "Linf", "TRADES trades.py:25", "distance='l_inf'"),
        V("finetune.attack.eps", 0.031, "TRADES train_trades_cifar10.py:30", "default=0.031"),
        V("finetune.attack.step_size", 0.007, "TRADES train_trades_cifar10.py:34", "default=0.007"),
        V("finetune.attack.steps", 10, "TRADES train_trades_cifar10.py:32", "default=10"),
        V("finetune.attack.start", "normal", "TRADES trades.py:31", "0.001 * torch.randn"),
        V("finetune.attack.name", "pgd", "TRADES trades.py:17", "def trades_loss"),
        V("evaluate.norm", "Linf", "TRADES trades.py:25", "distance='l_inf'", "AutoAttack leaderboard: Linf"),
        V(
            "evaluate.eps",
            EPS,
            "TRADES train_trades_cifar10.py:30",
            "default=0.031",
            "the AutoAttack leaderboard evaluates at 8/255 (0.0314), not the training ε 0.031",
        ),
        V(
            "evaluate.n_examples",
            10000,
            "TRADES train_trades_cifar10.py:69",
            "train=False",
            "the whole test set",
        ),
        V(
            "evaluate.autoattack.enabled",
            True,
            "TRADES train_trades_cifar10.py:69",
            "train=False",
            "AutoAttack leaderboard",
        ),
        V(
            "evaluate.autoattack.version",
            "standard",
            "TRADES train_trades_cifar10.py:69",
            "train=False",
            "AutoAttack leaderboard: standard",
        ),
        V("evaluate.autoattack.attacks", [], "TRADES train_trades_cifar10.py:69", "train=False"),
        V("evaluate.autoattack.n_examples", 0, "TRADES train_trades_cifar10.py:69", "train=False"),
        V(
            "evaluate.pgd.steps",
            20,
            "TRADES pgd_attack_cifar10.py:22",
            "default=20",
            "TRADES' own PGD-20 check",
        ),
        V(
            "evaluate.pgd.step_size",
            0.003,
            "TRADES pgd_attack_cifar10.py:24",
            "default=0.003",
            "at our evaluate.eps 8/255 (theirs: 0.031, pgd_attack_cifar10.py:20)",
        ),
        V(
            "evaluate.pgd.restarts",
            1,
            "TRADES pgd_attack_cifar10.py:26-27",
            "default=True",
            "one random start",
        ),
        V("evaluate.precision", "fp32", "TRADES train_trades_cifar10.py:81", "trades_loss("),
        V("evaluate.model", "finetune", "TRADES train_trades_cifar10.py:165", "eval_test(model"),
        V(
            "evaluate.checkpoint",
            "final",
            "TRADES train_trades_cifar10.py:168-170",
            "torch.save(model.state_dict()",
            "the last epoch's model",
        ),
        V(
            "export.checkpoint",
            "final",
            "TRADES train_trades_cifar10.py:168-170",
            "torch.save(model.state_dict()",
        ),
    ],
    "cifar10_mimir_vit_small_gpu.yaml": _mimir("small"),
    "cifar10_mimir_vit_tiny_gpu.yaml": _mimir("tiny"),
    "fare_vit_b16_224_gpu.yaml": _fare(),
}

# configs/*_gpu.yaml that are not parity recipes (no reference code to hold them to)
NOT_PARITY = {
    "cifar10_vit_small_gpu.yaml": "ViT-Small through ACL and TRADES: no reference recipe exists",
}

# resolved keys that are not recipe values, by prefix, with the reason (tests/test_recipes.py: every other
# resolved key of a parity recipe must be in TABLE)
NOT_RECIPE_VALUES = {
    "run.": "where and how this run executes (name, folders, device, seed of our RNG streams, speed switches, "
    "trackers): no effect on the algorithm",
    "data.train_source": "where the data comes from",
    "data.test_source": "where the data comes from",
    "data.download_root": "where the data comes from",
    "data.out_dir": "where the data comes from",
    "data.train_urls": "where the data comes from",
    "data.val_urls": "where the data comes from",
    "data.test_urls": "where the data comes from",
    "data.train_size": "a count, read from the shards",
    "data.shard_size": "storage layout",
    "data.num_workers": "loader processes",
    "data.shuffle_buffer": "the streaming shuffle's buffer: the reference shuffles the whole set each epoch "
    "(DataLoader(shuffle=True)), which a stream cannot; not a reference value",
    "data.on_bad_sample": "error handling",
    "pretrain.checkpoint_every_steps": "checkpointing",
    "pretrain.keep_checkpoints": "checkpointing",
    "pretrain.log_every_steps": "logging",
    "pretrain.tensorboard": "logging",
    "pretrain.lpaft.feature_batch_size": "memory only (features are per-image in eval())",
    "pretrain.lpaft.probe.checkpoint_every_steps": "checkpointing",
    "pretrain.lpaft.probe.keep_checkpoints": "checkpointing",
    "pretrain.lpaft.probe.log_every_steps": "logging",
    "pretrain.lpaft.probe.tensorboard": "logging",
    "pretrain.lpaft.trades.checkpoint_every_steps": "checkpointing",
    "pretrain.lpaft.trades.keep_checkpoints": "checkpointing",
    "pretrain.lpaft.trades.log_every_steps": "logging",
    "pretrain.lpaft.trades.tensorboard": "logging",
    "finetune.checkpoint_every_steps": "checkpointing",
    "finetune.keep_checkpoints": "checkpointing",
    "finetune.log_every_steps": "logging",
    "finetune.tensorboard": "logging",
    "finetune.name": "the fine-tune's folder",
    "finetune.val_attack_steps": "model selection on a validation "
    "split, which these recipes do not hold (data.val_size 0)",
    "finetune.collapse_ratio": "only when a catastrophic-overfitting warning is printed",
    "evaluate.batch_size": "memory only",
    "evaluate.chunk_size": "resumable chunks",
    "evaluate.seed": "our RNG streams",
    "evaluate.autoattack.batch_size": "memory only",
    "evaluate.autoattack.fast_targets": "version 'fast' only",
    "evaluate.autoattack.cross_check": "version 'fast' only",
    "evaluate.sweep.": "extra ε sweep, beyond the references' evaluation",
    "evaluate.calibration.": "extra calibration report, beyond the references' evaluation",
    "evaluate.smoothing.": "extra randomized-smoothing certificate, beyond the references' evaluation",
    "evaluate.threats": "further threat models (their first entry is evaluate.norm/eps), beyond the references' "
    "single Linf evaluation",
    "evaluate.corruptions.": "extra common-corruption accuracy, beyond the references' evaluation",
    "evaluate.transfer.": "extra transfer-attack masking check, beyond the references' evaluation",
    "evaluate.masking_checks": "extra gradient-masking checks, beyond the references' evaluation",
    "pretrain.fare.report_": "FARE's embedding report (embedding_report.json), beyond the reference's loop (its "
    "evaluation is zero-shot CLIP on ImageNet val, with labels)",
    "protocols.slf": "the overrides themselves: their effect is tabled as slf:/alf:/aff: keys",
    "protocols.alf": "the overrides themselves: their effect is tabled as slf:/alf:/aff: keys",
    "protocols.aff": "the overrides themselves: their effect is tabled as slf:/alf:/aff: keys",
}

# the contrastive objective's settings (views, head, loss weights): inert for the methods that have none
_CONTRASTIVE = (
    "pretrain.temperature",
    "pretrain.head",
    "pretrain.proj_hidden_dim",
    "pretrain.proj_dim",
    "pretrain.clean_weight",
    "pretrain.adv_weight",
    "pretrain.dual_bn",
    "pretrain.min_crop_scale",
    "pretrain.crop_interpolation",
)
# components a recipe does not use: every key below the prefix is inert for it (their switch is tabled)
INACTIVE = {
    "acl": ("pretrain.dynacl.", "pretrain.air.", "pretrain.mimir.", "pretrain.fare."),
    "dynacl": ("pretrain.air.", "pretrain.mimir.", "pretrain.fare."),
    "acl_air": ("pretrain.dynacl.", "pretrain.mimir.", "pretrain.fare."),
    "dynacl_air": ("pretrain.mimir.", "pretrain.fare."),
    # MIMIR is no contrastive method: the contrastive objective's settings (views, head, loss weights) are inert
    "mimir": (
        "pretrain.dynacl.",
        "pretrain.air.",
        "pretrain.fare.",
        *_CONTRASTIVE,
    ),
    # FARE: no contrastive objective, and the reference's run ends at the encoder (zero-shot evaluation): no
    # classifier to fine-tune, evaluate or export, and no class count (unlabeled images)
    "fare": (
        "pretrain.dynacl.",
        "pretrain.air.",
        "pretrain.mimir.",
        *_CONTRASTIVE,
        "data.num_classes",
        "finetune.",
        "evaluate.",
        "export.",
        "protocols.",
    ),
    "no_rcs": ("pretrain.rcs.",),  # all but pretrain.rcs.fraction (0)
    "no_lpaft": ("pretrain.lpaft.",),  # all but pretrain.lpaft.enabled (false)
    "scratch": ("pretrain.",),  # TRADES from scratch: no pretraining stage
    "scratch_protocols": ("protocols.",),  # one fine-tune (make finetune), no SLF/ALF
}


def inert_keys(cfg) -> tuple[str, ...]:
    """Keys of a resolved config that its chosen components never read, beyond :data:`INACTIVE`'s: an
    optimiser's ``betas`` unless it is AdamW, AdamW's momentum, a non-piecewise schedule's milestones, TRADES'
    β for another objective."""
    p = cfg.pretrain
    optims = {
        "pretrain.": p.optim,
        "pretrain.lpaft.probe.": p.lpaft.probe.optim,
        "pretrain.lpaft.trades.": p.lpaft.trades.optim,
        "finetune.": cfg.finetune.optim,
    }
    out = [f"{k}optim.betas" for k, o in optims.items() if o.name != "adamw"]
    # AdamW reads no momentum; only a piecewise schedule reads milestones and gamma
    out += [f"{k}optim.{f}" for k, o in optims.items() if o.name == "adamw" for f in ("momentum", "nesterov")]
    out += [
        f"{k}optim.{f}"
        for k, o in optims.items()
        if o.schedule != "piecewise"
        for f in ("milestones", "gamma")
    ]
    if cfg.finetune.objective_name() != "trades":
        out.append("finetune.beta")  # TRADES' weight
    return tuple(out)


def cited_repos() -> list[str]:
    return sorted({v.repo for entries in TABLE.values() for v in entries})


# ---- rendering (docs/recipes.md and the README summary) -------------------------------------------------


def _fmt(value: object) -> str:
    if isinstance(value, float):
        for num in (2, 8):
            if abs(value * 255 - num) < 1e-12:
                return f"{num}/255"
        if abs(value - 2 / 3) < 1e-12:
            return "2/3"
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    if isinstance(value, str):
        return f"'{value}'" if value == "" else value
    return str(value).lower() if isinstance(value, bool) else str(value)


def _link(v: V) -> str:
    repo, commit, root = REPOS[v.repo]
    a, b = v.lines
    anchor = f"#L{a}" + (f"-L{b}" if b != a else "")
    return f"[{v.repo} `{v.path}:{a if a == b else f'{a}-{b}'}`](https://github.com/{repo}/blob/{commit}/{root}{v.path}{anchor})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_docs() -> str:
    """docs/recipes.md: every value of every parity recipe with its file:line."""
    out = [
        "# Parity recipes: every value and where it comes from",
        "",
        "Generated from `pipeline/recipes.py` by `python -m pipeline.recipes --write`; "
        "`tests/test_recipes.py` fails when a recipe (`configs/*_gpu.yaml`, fully resolved) holds another value "
        "or this file is stale. Keys with `slf:` / `alf:` are what `make protocols` runs for that protocol "
        "(`finetune.*` is AFF, for `make finetune` and the protocols alike). **as ran**: the value the "
        "reference's script executed where its code seems to intend another; **deviation**: where we differ "
        "on purpose, and why. Line numbers are at the commits linked.",
        "",
    ]
    for name, entries in TABLE.items():
        out += [f"## `configs/{name}`", "", "| key | value | reference | note |", "|---|---|---|---|"]
        for v in entries:
            note = v.note
            if v.ran:
                note = (note + "; " if note else "") + f"**as ran:** {v.ran}"
            if v.deviation:
                note = (note + "; " if note else "") + f"**deviation:** {v.deviation}"
            out.append(f"| `{v.key}` | {_fmt(v.value)} | {_link(v)} | {_cell(note)} |")
        out.append("")
    out += ["## Not parity recipes", ""] + [f"- `configs/{k}`: {r}" for k, r in NOT_PARITY.items()] + [""]
    return "\n".join(out)


README_BEGIN, README_END = (
    "<!-- recipe-summary:begin (python -m pipeline.recipes --write) -->",
    "<!-- recipe-summary:end -->",
)


def render_readme_summary() -> str:
    """The README's recipe table: per recipe, its references and every as-ran value and deviation."""
    rows = [
        "| recipe | reference code | values as the reference ran them, not as its code reads | "
        "deliberate deviations |",
        "|---|---|---|---|",
    ]
    for name, entries in TABLE.items():
        repos = sorted({v.repo for v in entries}, key=list(REPOS).index)
        ran = sorted({f"`{v.key}` = {_fmt(v.value)}" for v in entries if v.ran})
        dev = sorted({f"`{v.key}`: {v.summary}" for v in entries if v.deviation})
        rows.append(
            f"| `configs/{name}` | {', '.join(repos)} | {_cell('; '.join(ran)) or '—'} | "
            f"{_cell('; '.join(dev)) or '—'} |"
        )
    return "\n".join([README_BEGIN, *rows, README_END])


ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "recipes.md"
README = ROOT / "README.md"


def readme_with_summary(text: str) -> str:
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    return text[:start] + render_readme_summary() + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help="rewrite docs/recipes.md and the README's summary"
    )
    args = parser.parse_args(argv)
    if args.write:
        DOCS.write_text(render_docs())
        README.write_text(readme_with_summary(README.read_text()))
        print(f"wrote {DOCS.relative_to(ROOT)} and the summary in {README.relative_to(ROOT)}")
    else:
        sys.stdout.write(render_docs())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
