"""BatchNorm recalibration before evaluating a subnet (SPOS, once-for-all)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["recalibrate_bn"]


def recalibrate_bn(model: nn.Module, batches: Iterable[Tensor], *, max_batches: int | None = None) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them.

    The statistics are the cumulative (equal-weight) average over the given
    training batches (``momentum=None``), as SPOS and once-for-all do before
    evaluating a subnet whose shared BN statistics belong to other paths.
    The model is left in eval mode with each BN's momentum restored. Returns
    the number of batches used; raises ``ValueError`` if none was given.

    Args:
        model: a static model (e.g. from ``extract``).
        batches: input tensors (or ``(input, target)`` pairs) on the model's device.
        max_batches: stop after this many batches.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and n >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x)
                n += 1
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    if n == 0:
        raise ValueError("batches: BN recalibration needs at least one batch")
    return n
