"""Run by test_distributed_pretrain.py under 1 process or torchrun with 2: computes the first training
loss of ACL on a fixed global batch split over the processes and prints it as JSON (rank 0)."""

import json
import sys

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from lightly.models.modules import SimCLRProjectionHead

from pipeline.config import load_config
from pipeline.models import build_model
from pipeline.objectives import ContrastiveModel, ContrastiveObjective


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_config(None, ["pretrain.method=simclr", "pretrain.proj_hidden_dim=32", "pretrain.proj_dim=16"])
    acc = Accelerator(cpu=True)
    set_seed(0)
    backbone = build_model("vit_micro_patch4_32", 0, (0.5,) * 3, (0.5,) * 3)
    # BatchNorm statistics are per process (projection heads have BN1d): a head without it isolates what is
    # under test, the cross-process negatives
    model = ContrastiveModel(backbone, SimCLRProjectionHead(backbone.num_features, 32, 16, batch_norm=False))
    model = acc.prepare(model)
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.rand(8, 3, 32, 32, generator=g), torch.rand(8, 3, 32, 32, generator=g)  # global batch of 8
    per = 8 // acc.num_processes
    sl = slice(acc.process_index * per, (acc.process_index + 1) * per)
    objective = ContrastiveObjective(
        "simclr", model, acc.unwrap_model(model), cfg.pretrain, gather=acc.num_processes > 1
    )
    loss, _ = objective.step((v1[sl], v2[sl]), None)
    acc.backward(loss)
    grad = acc.unwrap_model(model).head.layers[0].weight.grad.norm()  # DDP-averaged gradient
    # each rank's loss averages its own anchors (against all gathered negatives): the global loss is their mean
    mean_loss = acc.reduce(loss.detach(), "mean")
    if acc.is_main_process:
        print(json.dumps({"loss": float(mean_loss), "grad_norm": float(grad), "world": acc.num_processes}))
    sys.stdout.flush()
    # tear the process group down on every rank before exit: a gloo group left to the interpreter's exit
    # sometimes aborted one rank ("terminate called without an active exception")
    acc.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
