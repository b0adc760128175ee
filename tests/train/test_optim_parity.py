"""Step-for-step parity of our optimisers and schedules with the reference code, re-typed here in the
references' own structure (the scheduler/optimiser call order matters: it shifts the lr by one step):

- ACL (VITA-Group/Adversarial-Contrastive-Learning@399eabd): ``optimizer/lars.py`` LARS; ``train_simCLR.py``
  LambdaLR(cosine_annealing, warm-up 10 epochs, floor 1e-6 / lr), ``scheduler.step()`` before every
  ``optimizer.step()``.
- DynACL (PKU-ML/DYNACL@7d143db): the same lars.py; ``utils.py`` cosine_annealing with warm-up
  ``(step + 1) / W``; ``train_DynACL.py`` steps the LambdaLR once after each epoch.
- RobustSSL (GodXuxilie/RobustSSL_Benchmark@19dc714, ``Finetuning_Methods/Vanilla_Finetuning/utils.py``):
  ``optim.SGD(params, lr, momentum, weight_decay)`` (no Nesterov, decay on all) + MultiStepLR(gamma 0.1)
  stepped after each epoch.

Ours is driven as pipeline/train/loop.py drives it: ``optimizer.step()`` then ``scheduler.step()``.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.optim.optimizer import Optimizer

from pipeline.train.optim import OptimConfig, build_optimizer, build_scheduler

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class RefLARS(Optimizer):
    """optimizer/lars.py (ACL = DynACL), gradMulti = 1 and the unused epoch counter left out."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0005, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    def step(self, closure=None):
        for group in self.param_groups:
            weight_decay, momentum = group["weight_decay"], group["momentum"]
            eta, global_lr = group["eta"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                param_state = self.state[p]
                d_p = p.grad.data
                weight_norm = torch.norm(p.data)
                grad_norm = torch.norm(d_p)
                local_lr = eta * weight_norm / (grad_norm + weight_decay * weight_norm)
                local_lr[(weight_norm < 1e-15) | (grad_norm < 1e-15)] = 1.0
                actual_lr = local_lr * global_lr
                if "momentum_buffer" not in param_state:
                    buf = param_state["momentum_buffer"] = torch.zeros_like(p.data)
                else:
                    buf = param_state["momentum_buffer"]
                # buf.mul_(momentum).add_(actual_lr, d_p + weight_decay * p.data) in the 2020 torch API
                buf.mul_(momentum).add_(actual_lr * (d_p + weight_decay * p.data))
                p.data.add_(-buf)


def acl_cosine_annealing(step, total_steps, lr_max, lr_min, warmup_steps=0):  # ACL train_simCLR.py
    if step < warmup_steps:
        return lr_max * step / warmup_steps
    return lr_min + (lr_max - lr_min) * 0.5 * (
        1 + np.cos((step - warmup_steps) / (total_steps - warmup_steps) * np.pi)
    )


def dynacl_cosine_annealing(step, total_steps, lr_max, lr_min, warmup_steps=0):  # DynACL utils.py
    if step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    return lr_min + (lr_max - lr_min) * 0.5 * (
        1 + np.cos((step - warmup_steps) / (total_steps - warmup_steps) * np.pi)
    )


def _models():
    torch.manual_seed(0)

    def make():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))

    model, twin = make(), make()
    twin.load_state_dict(model.state_dict())
    return model, twin


_X, _Y = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 3


def _loss(model):  # a fixed loss on a fixed batch: identical weights give identical gradients
    return nn.functional.cross_entropy(model(_X), _Y)


def _ours(model, cfg, steps, steps_per_epoch, epochs):
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, steps_per_epoch * epochs, steps_per_epoch, cfg)
    lrs = []
    for _ in range(steps):  # pipeline/train/loop.py order
        loss = _loss(model)
        opt.zero_grad()
        loss.backward()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _reference_lars(model, method, steps, steps_per_epoch, epochs, warmup_epochs):
    optimizer = RefLARS(model.parameters(), lr=5.0, weight_decay=1e-6)  # both train_*.py, argparse defaults
    if method == "acl":  # train_simCLR.py: per step, warm-up 10 * len(train_loader)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lr_lambda=lambda step: acl_cosine_annealing(
                step, epochs * steps_per_epoch, 1, 1e-6 / 5.0, warmup_steps=warmup_epochs * steps_per_epoch
            ),
        )
    else:  # train_DynACL.py: per epoch, warm-up 10 epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lr_lambda=lambda step: dynacl_cosine_annealing(
                step, epochs, 1, 1e-6 / 5.0, warmup_steps=warmup_epochs
            ),
        )
    lrs = []
    for _epoch in range(epochs):
        for _i in range(steps_per_epoch):
            if len(lrs) == steps:
                return lrs
            if method == "acl":
                scheduler.step()
            loss = _loss(model)
            optimizer.zero_grad()
            loss.backward()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
        if method == "dynacl":
            scheduler.step()
    return lrs


def _yaml_optim(name):
    return OptimConfig(**OmegaConf.to_container(OmegaConf.load(CONFIGS / name).pretrain.optim))


def _assert_same_weights(model, twin):
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=0, msg=name)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
@pytest.mark.parametrize(
    "method, config, steps_per_epoch, epochs, warmup, steps",
    [
        ("acl", "cifar10_acl_gpu.yaml", 2, 3, 1, 3),  # lrs 1/2, 1, first cosine step
        # two steps an epoch, so holding the lr for a whole epoch is checked too: 1/2, 1/2, 1, 1, 1, 1, ~1/2
        ("dynacl", "cifar10_dynacl_gpu.yaml", 2, 4, 2, 7),
    ],
)
def test_lars_parity_over_warmup_boundary(method, config, steps_per_epoch, epochs, warmup, steps):
    # the recipe's own optim block, its 10 warm-up epochs shortened on both sides
    cfg = replace(_yaml_optim(config), warmup_epochs=warmup)
    assert (cfg.name, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.min_lr) == ("lars", 5.0, 0.9, 1e-6, 1e-6)
    model, twin = _models()
    ours = _ours(model, cfg, steps, steps_per_epoch, epochs)
    ref = _reference_lars(twin, method, steps, steps_per_epoch, epochs, warmup)
    assert ours == pytest.approx(ref, abs=1e-9, rel=0)
    # the warm-up boundary is inside the run, and the first lr is not 0
    assert ref[0] > 0 and ref[warmup * steps_per_epoch - 1] == pytest.approx(5.0)
    assert ref[-1] < 5.0
    _assert_same_weights(model, twin)


def test_sgd_parity():
    cfg = OptimConfig(
        name="sgd", lr=0.1, momentum=0.9, weight_decay=2e-4, schedule="piecewise", milestones=[1, 2]
    )  # nesterov and decay_norm_and_bias: the defaults
    model, twin = _models()
    ours = _ours(model, cfg, steps=3, steps_per_epoch=1, epochs=3)
    # get_model(): AFF passes every parameter, SLF/ALF fc.weight and fc.bias
    optimizer = torch.optim.SGD(list(twin.parameters()), lr=0.1, momentum=0.9, weight_decay=2e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 2], gamma=0.1)
    ref = []
    for _epoch in range(1, 4):  # train(): one batch per epoch here, scheduler.step() after the epoch
        optimizer.zero_grad()
        loss = _loss(twin)
        optimizer.zero_grad()
        loss.backward()
        ref.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert ours == pytest.approx(ref, abs=1e-9, rel=0) and ref == pytest.approx([0.1, 0.01, 0.001])
    _assert_same_weights(model, twin)
