"""Data-parallel training that computes exactly what one worker computes with the whole batch.

A :class:`Replica` is one of ``world_size`` workers of a ``torch.distributed`` process
group (gloo on CPU, nccl on GPU; Ray Train sets it up, see ``nas_training.cluster``). With
``world_size`` workers, every training step of ``supernet.train`` is, to float rounding,
the step of one worker with the global batch (``Recipe.batch_size``):

* **Same path.** Every worker draws the step's path from the same generator, seeded by
  ``(seed, epoch)`` and the step (``supernet.sampling``), so no path is broadcast.
* **Same inputs, sharded.** Every worker shuffles and augments the whole global batch
  with the same generator, then keeps its contiguous shard (:meth:`Replica.shard`,
  ``numpy.array_split`` sizes: B/N each).
* **Synchronised BatchNorm.** In training mode a BatchNorm normalises with the mean and
  variance of the *global* batch: per-channel sums and sums of squares (float64) are
  all-reduced, with autograd through the all-reduce, as ``torch.nn.SyncBatchNorm`` does
  on GPUs (it refuses CPU tensors; this works with gloo too). The running statistics are
  therefore identical on every worker, and a subnet's BN statistics do not depend on how
  many workers trained it. Evaluation mode is untouched. (Plain DDP keeps per-worker
  statistics instead: B/N samples each, a different training.)
* **Averaged gradients.** Each worker's loss is weighted by its shard's share of the
  batch; the gradients are summed over workers (one flattened all-reduce) before the
  gradient clipping and the optimizer step, so every worker applies the same update
  and the replicas never drift apart.

Rank 0 writes the checkpoint, in the single-worker format: a checkpoint written by N
workers resumes on 1 and vice versa.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["Replica", "LOCAL", "sync_batch_norm"]

# torch 2.14 deprecates the autograd all-reduce of torch.distributed.nn and points to
# _functional_collectives.all_reduce, which does not differentiate; keep the working one quiet
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated",
                        category=FutureWarning)


@dataclass(frozen=True)
class Replica:
    """Worker ``rank`` of ``world_size`` (``LOCAL``: the single worker, every method a no-op)."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.world_size, int) and self.world_size >= 1 and 0 <= self.rank < self.world_size):
            raise ValueError(f"replica: rank {self.rank!r} of world_size {self.world_size!r} is not a worker")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the worker that writes checkpoints and logs progress."""
        return self.rank == 0

    def shard(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, float]:
        """This worker's contiguous part of a global batch ``x (B, ...)``, ``y (B,)``, and its
        loss weight ``b * N / B`` (``b`` its size; the sizes are ``numpy.array_split``'s). A last
        batch smaller than N leaves some shards empty (weight 0): the step count and the paths
        never depend on N."""
        if not self.distributed:
            return x, y, 1.0
        n = y.shape[0]
        sizes = [len(s) for s in np.array_split(np.arange(n), self.world_size)]
        i = sum(sizes[: self.rank])
        j = i + sizes[self.rank]
        return x[i:j], y[i:j], sizes[self.rank] * self.world_size / n

    def all_reduce_grads(self, model: nn.Module | Iterable[torch.Tensor]) -> None:
        """Sum every existing gradient of ``model``'s parameters (or of the given tensors) over
        the workers, then divide by ``world_size`` (one flattened all-reduce; with loss weights
        ``b / B * N`` this is the global batch's gradient). Every worker must hold gradients
        for the same parameters (the same path)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        params = model.parameters() if isinstance(model, nn.Module) else model
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        k = 0
        for g in grads:
            g.copy_(flat[k: k + g.numel()].view_as(g))
            k += g.numel()

    def all_reduce_sums(self, *values: float) -> list[float]:
        """Sum plain numbers over the workers (epoch loss and accuracy counters)."""
        if not self.distributed:
            return list(values)
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(values, dtype=torch.float64, device=device)  # nccl reduces GPU tensors only
        dist.all_reduce(t)
        return t.tolist()

    @contextlib.contextmanager
    def synced_batch_norm(self) -> Iterator[None]:
        """Inside this context every training-mode BatchNorm uses the global batch's statistics."""
        if not self.distributed:
            yield
            return
        with _SyncBatchNormMode():
            yield


LOCAL = Replica()


def sync_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None,
                    bias: Tensor | None, momentum: float, eps: float) -> Tensor:
    """Training-mode ``F.batch_norm`` over the batch of all workers of the default process
    group: ``x (b, C, ...)`` is this worker's part (``b`` may be 0). The per-channel sums are
    accumulated in float64 and all-reduced once (``[sum, sum of squares, count]``,
    differentiable); normalisation and the affine step run in float32 and return float32, as
    native BatchNorm does under CUDA autocast. The running statistics are updated with the
    unbiased variance, as ``F.batch_norm`` does (Ioffe and Szegedy, 2015)."""
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    dims = [0, *range(2, x.dim())]
    xf = x.double() if x.dtype == torch.float64 else x.float()
    count = xf.new_full((1,), x.numel() // c if c else 0, dtype=torch.float64)
    stats = all_reduce(torch.cat([xf.sum(dims, dtype=torch.float64), (xf * xf).sum(dims, dtype=torch.float64),
                                  count]))
    n = stats[-1]
    mean = stats[:c] / n
    var = (stats[c: 2 * c] / n - mean * mean).clamp_min(0)
    shape = [1, c] + [1] * (x.dim() - 2)
    y = (xf - mean.to(xf.dtype).view(shape)) * torch.rsqrt(var + eps).to(xf.dtype).view(shape)
    if weight is not None:
        y = y * weight.to(xf.dtype).view(shape)
    if bias is not None:
        y = y + bias.to(xf.dtype).view(shape)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            unbiased = var * n / (n - 1).clamp_min(1)
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
    return y


class _SyncBatchNormMode(TorchFunctionMode):
    """Routes training-mode ``F.batch_norm`` calls (those of every ``nn.BatchNorm2d``, also
    inside ``functional_call``) to :func:`sync_batch_norm`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
            a = {**dict(zip(names, args)), **kwargs}
            if a.get("training", False):
                return sync_batch_norm(a["input"], a.get("running_mean"), a.get("running_var"), a.get("weight"),
                                       a.get("bias"), a.get("momentum", 0.1), a.get("eps", 1e-5))
        return func(*args, **kwargs)
