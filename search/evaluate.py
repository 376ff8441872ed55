"""Candidate evaluation: extract with inherited weights, recalibrate BN, validate.

This is how the search scores an architecture (SPOS, once-for-all): the
static model is extracted from the supernet, its BatchNorm statistics are
re-estimated on a fixed set of training batches (no augmentation, the same
batches for every candidate), and its top-1 accuracy is measured on the
held-out validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nas_common import resolve_device
from nas_data import Data
from nas_training.engine import accuracy
from search_space import Arch
from supernet import ShuffleNet, SuperNet, extract, recalibrate_bn

from .records import TrialRecord

if TYPE_CHECKING:
    from .latency import Conditions

__all__ = ["EvalConfig", "evaluate_arch", "calibration_batches", "BudgetFilter", "Scorer"]


@dataclass(frozen=True)
class EvalConfig:
    calib_batches: int = 8
    batch_size: int = 256
    seed: int = 0


def calibration_batches(data: Data, cfg: EvalConfig, device: torch.device, channels_last: bool) -> list[torch.Tensor]:
    """The fixed training batches used to recalibrate BN (same for every candidate)."""
    g = torch.Generator().manual_seed(cfg.seed)
    return [x for x, _ in data.batches("train", batch_size=cfg.batch_size, shuffle=True, generator=g,
                                       device=device, channels_last=channels_last, max_batches=cfg.calib_batches,
                                       min_last=2)]  # BN in train mode cannot take a batch of one


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
    dev = resolve_device(device)
    channels_last = dev.type == "cpu"
    model = extract(supernet, arch).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if calib is None:
        calib = calibration_batches(data, cfg, dev, channels_last)
    recalibrate_bn(model, calib)  # leaves the (own, extracted) model in eval mode
    acc = accuracy(model, data.batches("val", batch_size=cfg.batch_size, device=dev, channels_last=channels_last))
    return acc, model


@dataclass(frozen=True)
class BudgetFilter:
    """The search's pre-filter by predicted latency: ``filter(arch)`` is the record of an
    architecture the predictor puts above ``budget_ms`` by more than ``margin`` (a fraction),
    which the supernet does not score (top-1 0, ``evaluated=False``, infeasible), or ``None``
    for one that must be scored. Light and picklable (no supernet), so the Ray backend's
    searcher can reject such suggestions before they become Tune trials."""

    predictor: object
    budget_ms: float
    margin: float = 0.05
    min_latency_ms: float = 0.0
    input_size: int = 32

    def __call__(self, arch: Arch) -> TrialRecord | None:
        return self.judge(arch)[1]

    def judge(self, arch: Arch) -> tuple[float, TrialRecord | None]:
        """(predicted latency in ms, the rejected record or ``None``)."""
        pred = float(self.predictor.predict(arch))
        if pred <= self.budget_ms * (1 + self.margin):
            return pred, None
        return pred, self.record(arch, pred, acc=0.0, measured=None, evaluated=False)

    def record(self, arch: Arch, pred: float, *, acc: float, measured: float | None, evaluated: bool) -> TrialRecord:
        """The trial record of ``arch`` (``number`` -1) from its predicted (and measured) latency, ms."""
        from search_space import count_flops, count_params

        latency = measured if measured is not None else pred
        constraint = max(latency - self.budget_ms, self.min_latency_ms - latency)
        return TrialRecord(number=-1, arch=str(arch), acc=acc, pred_ms=pred, measured_ms=measured, evaluated=evaluated,
                           feasible=constraint <= 0, params=count_params(arch),
                           mflops=count_flops(arch, self.input_size) / 1e6, constraint=constraint)


class Scorer:
    """The search objective, shared by every backend: one architecture -> its record.

    The latency predictor pre-filters: an architecture predicted above the
    budget by more than ``margin`` is not evaluated (its accuracy is recorded
    as 0 and it is infeasible). Candidates predicted within ``margin`` of the
    budget are measured end to end, and the measurement decides feasibility.
    Results are cached by the canonical arch string.

    ``min_latency_ms`` (optional) makes architectures predicted faster than it
    infeasible too (they are still evaluated, so presets keep their accuracy):
    a weight-sharing supernet tends to rate small networks above their trained
    accuracy, and the most accurate network under a budget nearly always uses
    most of it. SPOS trains and searches inside a FLOPs window for the same reason.

    ``reject``: the pre-filter alone (:class:`BudgetFilter`); the backends draw a suggestion it
    rejects again instead of counting it as a trial (``max_rejections``, :mod:`search.backends`).
    """

    def __init__(self, supernet: SuperNet, data: Data, predictor, conditions: Conditions, *, budget_ms: float,
                 cfg: EvalConfig = EvalConfig(), margin: float = 0.05, min_latency_ms: float = 0.0) -> None:
        self.supernet = supernet  # evaluation extracts copies; the caller's supernet keeps its mode
        self.data = data
        self.predictor = predictor
        self.budget_ms = float(budget_ms)
        self.conditions = conditions  # end-to-end measurements near the budget (batch 1)
        self.input_size = conditions.input_shape[-1]
        self.device = conditions.torch_device
        self.cfg = cfg
        self.margin = margin
        self.min_latency_ms = float(min_latency_ms)
        if not 0 <= self.min_latency_ms < self.budget_ms:
            raise ValueError(f"min_latency_ms: must lie in [0, budget {self.budget_ms:g}), got {min_latency_ms}")
        self._calib: list[torch.Tensor] | None = None
        self.cache: dict[str, TrialRecord] = {}
        self.reject = BudgetFilter(predictor, self.budget_ms, margin, self.min_latency_ms, self.input_size)

    def __call__(self, arch: Arch) -> TrialRecord:
        """The trial record of ``arch`` (``number`` -1: the backend numbers it); cached by arch string."""
        key = str(arch)
        if key in self.cache:
            return self.cache[key]
        from .latency import measure

        pred, rec = self.reject.judge(arch)
        if rec is None:
            if self._calib is None:
                self._calib = calibration_batches(self.data, self.cfg, self.device, self.device.type == "cpu")
            acc, _ = evaluate_arch(self.supernet, arch, self.data, self.cfg, device=self.device, calib=self._calib)
            measured = None
            if abs(pred - self.budget_ms) <= self.margin * self.budget_ms:
                measured = measure(ShuffleNet(arch), self.conditions, samples=100, warmup_s=0.2).median_ms
            rec = self.reject.record(arch, pred, acc=acc, measured=measured, evaluated=True)
        self.cache[key] = rec
        return rec
