"""run.channels_last and run.compile change how the network runs, not what a training step computes.

Tolerance (fp32, CPU): the step's loss within 1e-5 relative, the weights after its SGD update within
1e-4 absolute — the size of floating-point reordering (fused kernels, NHWC convolutions); a wrong graph (a
missed BN branch switch, a stale train/eval guard) moves them by 1e-2 or more. One step, because PGD's
sign() turns 1e-7 differences in near-zero input gradients into different perturbations: from the second
step on, two runs that differ only in summation order drift apart (measured: 5e-5 relative at step 2,
3e-3 at step 3 — as fp32 vs fp64 eager runs do from the first step). The compile tests use a
four-layer network: inductor's compile time grows with the graph, and what is checked (the objectives'
forwards, attacks and BN routing through a compiled ``__call__``) does not.
"""

import copy

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from pipeline.attacks.pgd import AttackConfig
from pipeline.config import checkpoint_fingerprint, load_config
from pipeline.errors import UsageError
from pipeline.models import ModelConfig, convert_to_dual_bn
from pipeline.models.speed import channels_last_for, speed_up
from pipeline.objectives import ContrastiveModel, ContrastiveObjective, SupervisedObjective
from pipeline.objectives.heads import build_head

CPU = torch.device("cpu")


class TinyBackbone(nn.Sequential):
    num_features = 8

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )


def tiny_classifier():
    return nn.Sequential(TinyBackbone(), nn.Linear(8, 10))


def acl_model():
    backbone = convert_to_dual_bn(TinyBackbone())
    return ContrastiveModel(backbone, build_head("acl", 8, 16, 8, dual_bn=True))


def run_steps(model, make_objective, batch, steps=1):
    """Losses of ``steps`` SGD steps (seeded attacks) and the weights after them."""
    objective = make_objective(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for i in range(steps):
        model.train()
        torch.manual_seed(100 + i)
        loss, _ = objective.step(batch, None)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_steps(a, b):
    (la, wa), (lb, wb) = a, b
    assert la == pytest.approx(lb, rel=1e-5)
    assert wa.keys() == wb.keys()  # compile / channels_last leave the state-dict keys as they were
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-4), k


def trades(model):
    atk = AttackConfig(eps=8 / 255, step_size=2 / 255, steps=3)
    return SupervisedObjective("trades", model, model, atk, 6.0, 10)


def acl(model):
    cfg = load_config(None, ["pretrain.method=acl", "pretrain.attack.steps=3"]).pretrain
    return ContrastiveObjective("acl", model, model, cfg, gather=False)


def labeled_batch(size=16):
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 3, size, size, generator=g), torch.randint(0, 10, (8,), generator=g)


def views_batch(size=16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 3, size, size, generator=g), torch.rand(6, 3, size, size, generator=g)


@pytest.mark.parametrize(
    "make, objective, batch",
    [(tiny_classifier, trades, labeled_batch), (acl_model, acl, views_batch)],
    ids=["trades", "acl"],
)
def test_compiled_step_matches_eager(make, objective, batch):
    torch.manual_seed(0)
    eager = make()
    compiled = speed_up(copy.deepcopy(eager), CPU, compile=True)
    graphs = counters["stats"]["unique_graphs"]
    assert_same_steps(run_steps(eager, objective, batch()), run_steps(compiled, objective, batch()))
    assert counters["stats"]["unique_graphs"] > graphs  # it did compile (not an eager fallback everywhere)


@pytest.mark.parametrize(
    "objective, batch", [(trades, labeled_batch), (acl, views_batch)], ids=["trades", "acl"]
)
def test_channels_last_step_matches(objective, batch):
    torch.manual_seed(0)
    eager = ModelConfig(name="resnet10_cifar_tiny").build(10 if objective is trades else 0)
    if objective is acl:
        eager = ContrastiveModel(
            convert_to_dual_bn(eager), build_head("acl", eager.num_features, 16, 8, dual_bn=True)
        )
    nhwc = speed_up(copy.deepcopy(eager), CPU, channels_last=True)
    conv = next(m for m in nhwc.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_steps(run_steps(eager, objective, batch(32)), run_steps(nhwc, objective, batch(32)))


def test_compile_without_a_compiler_is_a_usage_error(monkeypatch):
    monkeypatch.setattr("pipeline.models.speed.shutil.which", lambda _name: None)
    with pytest.raises(UsageError, match="run.compile=true but inductor needs a C\\+\\+ compiler"):
        speed_up(tiny_classifier(), CPU, compile=True)


def test_speed_options_are_not_in_the_resume_fingerprint():
    base = load_config(None, [])
    fast = load_config(None, ["run.compile=true", "run.channels_last=true"])
    for section in ("pretrain", "finetune"):
        assert checkpoint_fingerprint(base, section)[0] == checkpoint_fingerprint(fast, section)[0]


def test_channels_last_model_saves_as_an_ordinary_timm_folder(tmp_path):
    from pipeline.export import load_timm_folder, save_timm_folder

    model = speed_up(ModelConfig(name="resnet10_cifar_tiny").build(10), CPU, channels_last=True)
    save_timm_folder(model, tmp_path / "m")
    assert next(model.parameters()).dim() == 4 and next(model.parameters()).is_contiguous(
        memory_format=torch.channels_last
    )
    loaded, x = load_timm_folder(tmp_path / "m").eval(), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-5)


def test_channels_last_auto_is_on_for_cpu_only():
    cuda = torch.device("cuda")
    assert channels_last_for("auto", CPU) and not channels_last_for("auto", cuda)
    assert channels_last_for("True", cuda) and not channels_last_for("false", CPU)  # YAML booleans, as str
