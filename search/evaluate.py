"""Candidate evaluation: extract with inherited weights, recalibrate BN, validate.

This is how the search scores an architecture (SPOS, once-for-all): the
static model is extracted from the supernet, its BatchNorm statistics are
re-estimated on a fixed set of training batches (no augmentation, the same
batches for every candidate), and its top-1 accuracy is measured on the
held-out validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from search_space import Arch
from supernet import ShuffleNet, SuperNet, extract, recalibrate_bn
from supernet.data import Data
from supernet.train import accuracy, check_device

__all__ = ["EvalConfig", "evaluate_arch", "calibration_batches"]


@dataclass(frozen=True)
class EvalConfig:
    calib_batches: int = 8
    batch_size: int = 256
    seed: int = 0


def calibration_batches(data: Data, cfg: EvalConfig, device: torch.device, channels_last: bool) -> list[torch.Tensor]:
    """The fixed training batches used to recalibrate BN (same for every candidate)."""
    g = torch.Generator().manual_seed(cfg.seed)
    return [x for x, _ in data.batches("train", batch_size=cfg.batch_size, shuffle=True, generator=g,
                                       device=device, channels_last=channels_last, max_batches=cfg.calib_batches)]


@torch.no_grad()
def evaluate_arch(
    supernet: SuperNet,
    arch: Arch,
    data: Data,
    cfg: EvalConfig = EvalConfig(),
    *,
    device: str | torch.device | None = None,
    calib: list[torch.Tensor] | None = None,
) -> tuple[float, ShuffleNet]:
    """Top-1 (%) on ``data``'s validation split of ``arch`` with inherited weights and recalibrated BN."""
    dev = check_device(device)
    channels_last = dev.type == "cpu"
    model = extract(supernet, arch).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if calib is None:
        calib = calibration_batches(data, cfg, dev, channels_last)
    recalibrate_bn(model, calib)
    acc = accuracy(model, data.batches("val", batch_size=cfg.batch_size, device=dev, channels_last=channels_last))
    return acc, model
