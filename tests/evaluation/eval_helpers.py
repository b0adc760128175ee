"""Tiny seeded models and data shared by the evaluation tests and their subprocess workers."""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10


def make_data(n: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0,1]: a per-class smooth template around grey plus pixel noise (fixed templates)."""
    g = torch.Generator().manual_seed(1234)  # the templates are the same for every call
    templates = torch.nn.functional.interpolate(
        torch.randn(NUM_CLASSES, 3, 4, 4, generator=g), size=size, mode="bilinear", align_corners=False
    )
    templates = templates / templates.flatten(1).abs().amax(dim=1).view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    y = y[torch.randperm(n, generator=g)]
    x = 0.5 + 0.3 * templates[y] + 0.15 * torch.randn(n, 3, size, size, generator=g)
    return x.clamp(0, 1), y


class TinyNet(nn.Module):
    """Two convolutions and a linear head; ~3k parameters."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(8 * (size // 2) ** 2, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_tiny(size: int = 8, steps: int = 150, seed: int = 0) -> TinyNet:
    """A quickly trained, deterministic TinyNet (clean accuracy well above chance, not robust)."""
    torch.manual_seed(seed)
    model = TinyNet(size)
    x, y = make_data(512, size, seed=seed + 100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        idx = torch.arange(step * 64, step * 64 + 64) % x.shape[0]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class _ZeroGrad(torch.autograd.Function):
    """Identity forward, zero backward: the classic shattered-gradient defence."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return torch.round(x * 8) / 8  # input quantisation: piecewise constant

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return torch.zeros_like(grad)


class MaskedNet(nn.Module):
    """A TinyNet behind non-differentiable input quantisation whose gradient is exactly zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(_ZeroGrad.apply(x))


class NoisyNet(nn.Module):
    """A randomized model (Gaussian input noise at every call): two passes over the same input disagree,
    so the sweep's eps=0 run cannot reproduce the clean predictions."""

    def __init__(self, inner: nn.Module, sigma: float = 0.3) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + self.sigma * torch.randn_like(x))


def roughness(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean |x - 3×3 box blur of x|: high-frequency energy, which a large perturbation raises."""
    blur = nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (x - blur).abs().flatten(1).mean(dim=1)


class FarMaskedNet(nn.Module):
    """Honest near the data, masked far from it: an image rougher than any clean one (a large perturbation)
    is blurred and classified behind a zero-gradient quantiser, so attacks succeed at small radii and stall
    at large ones (robust accuracy rises with eps). Clean roughness of make_data images is below 0.13;
    random starts at Linf 0.5 or L2 >= 4 (8×8 images) lie above 0.19."""

    def __init__(self, inner: nn.Module, threshold: float = 0.19) -> None:
        super().__init__()
        self.inner, self.threshold = inner, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blur = nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        far = (roughness(x) > self.threshold).view(-1, 1)
        return torch.where(far, self.inner(_ZeroGrad.apply(blur)), self.inner(x))
