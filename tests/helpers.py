"""Shared test helpers."""

import torch
from torch import nn


def randomize_bn(model: nn.Module, seed: int, scale: float = 0.2) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics (seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * scale)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * scale)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model
