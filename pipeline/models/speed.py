"""Faster passes through the same network: channels-last memory layout and ``torch.compile``.

Both change how a network runs, never what it computes (up to floating-point reordering), so neither is
part of a checkpoint's fingerprint: a run may resume with them switched. ``run.channels_last`` and
``run.compile`` turn them on; what each was measured to buy is in BENCHMARKS.md ("Faster passes").

``compile`` uses ``nn.Module.compile`` (in place): the module keeps its parameters, its state-dict keys
(no ``_orig_mod.`` prefix, so checkpoints and exports are the same files) and every caller — the training
step, the attacks inside it, validation, RCS — goes through the compiled ``__call__``. Dual-BN routing
and train/eval switches are guarded attributes: each combination compiles once.
"""

from __future__ import annotations

import importlib.util
import shutil

import torch
from torch import nn

from ..errors import UsageError


def _to_channels_last(_module: nn.Module, args: tuple) -> tuple:
    # a forward pre-hook: images arrive NCHW from the loaders; convolutions with channels-last weights
    # would convert them anyway, doing it once at the entry saves the per-layer layout checks
    return tuple(
        a.contiguous(memory_format=torch.channels_last) if torch.is_tensor(a) and a.dim() == 4 else a
        for a in args
    )


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile``'s default backend (inductor) cannot build kernels here, or None."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "inductor needs triton on a GPU (pip install triton)"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "inductor needs a C++ compiler on CPU (install g++)"
    return None


def channels_last_for(setting: str, device: torch.device) -> bool:
    """``run.channels_last`` for training on ``device``: ``auto`` is on for CPU only — measured faster there
    for every model and step we benchmarked (1.00–1.35×), never measured on a GPU."""
    setting = str(setting).lower()  # YAML's true/false reach a str field as "True"/"False"
    return setting == "true" or (setting == "auto" and device.type == "cpu")


def speed_up(
    model: nn.Module, device: torch.device, *, channels_last: bool = False, compile: bool = False
) -> nn.Module:
    """Apply the switched-on options to ``model`` in place (before ``accelerate.prepare``); returns it."""
    if channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D parameters (conv weights) only
        model.register_forward_pre_hook(_to_channels_last)
    if compile:
        if problem := compile_problem(device):
            raise UsageError(f"run.compile=true but {problem}; or set run.compile=false")
        # a graph that dynamo or inductor cannot handle runs eager (torch logs a warning naming it) instead
        # of stopping a training run: compilation is a speed option, never a correctness one
        torch._dynamo.config.suppress_errors = True
        # every module's compiled __call__ shares one code object (nn.Module._call_impl), and each train/eval
        # mode, BN branch and grad mode is a cache entry: torch's default of 8 entries falls back to eager
        # once several compiled networks live in one process (measured in bench/bench_speed.py)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        model.compile()
    return model
