"""The per-block lookup table: its entries (cut from the real model), their keys, and a
robust measurement of all of them.

An entry is the stem, one block at one :class:`~search_space.Site`, or the head. Blocks
are the project's only unit code (``supernet.units.make_unit``); the stem and head are
``ShuffleNet``'s own ``forward_stem`` / ``forward_head`` on a network built for that
stem or head, so a table entry times exactly what runs inside the model. A block's key
is :attr:`search_space.Site.key`; the stem's and head's are built here, in one place.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

from nas_common import progress_bar
from search_space import Arch, Block, SearchSpace, Site, Stage, Task
from supernet import ShuffleNet
from supernet.units import make_unit

from ._conditions import Conditions
from ._measure import measure

log = logging.getLogger(__name__)

Spec = tuple  # ("stem", stem, small) | ("head", c, last_conv, num_classes) | ("block", block, cin, cout, stride, fg)
Entry = tuple[str, Spec, tuple[int, ...]]  # (key, spec, input shape)

OUTLIER_FACTOR = 3.0  # a table entry this many times above its cost-model fit is re-measured
OUTLIER_MIN_MS = 0.02  # ... unless the difference is below this (timer resolution and call overhead)


def stem_key(stem: int, small: bool, size: int) -> str:
    """Lookup-table key of the stem: channels, variant, input side."""
    return f"stem|{stem}|{int(small)}|{size}"


def head_key(c: int, last_conv: int, num_classes: int, h: int) -> str:
    """Lookup-table key of the head: stage-4 channels, last conv, classes, map side."""
    return f"head|{c}|{last_conv}|{num_classes}|{h}"


def entries(arch: Arch, input_size: int) -> list[Entry]:
    """(key, spec, input shape) of every lookup-table entry of ``arch``, stem to head."""
    out = [(stem_key(arch.stem, arch.small_input, input_size), ("stem", arch.stem, arch.small_input),
            (1, 3, input_size, input_size))]
    out += [block_entry(s) for s in arch.sites(input_size)]
    c, h = arch.stages[-1].channels, arch.spatial_sizes(input_size)[-1]
    out.append((head_key(c, arch.last_conv, arch.num_classes, h), ("head", c, arch.last_conv, arch.num_classes),
                (1, c, h, h)))
    return out


def block_entry(site: Site) -> Entry:
    """(key, spec, input shape) of a block's table entry."""
    h = site.in_size
    return (site.key, ("block", str(site.block), site.in_channels, site.out_channels, site.stride, site.first_grouped),
            (1, site.in_channels, h, h))


class _Part(nn.Module):
    """The stem or the head of a real :class:`ShuffleNet`, timed alone (its stages dropped)."""

    def __init__(self, net: ShuffleNet, part: str) -> None:
        super().__init__()
        net.stage2 = net.stage3 = net.stage4 = nn.Sequential()
        self.net, self.part = net, part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_stem(x) if self.part == "stem" else self.net.forward_head(x)


def _carrier(stem: int, small: bool, c: int, last_conv: int, num_classes: int) -> ShuffleNet:
    """A ShuffleNet with this stem and head; its stages only carry the channel counts."""
    for block in (Block.v2(0.5), Block.v1(1)):
        try:
            stages = tuple(Stage(c, (block,)) for _ in range(3))
            return ShuffleNet(Arch(stem=stem, stages=stages, last_conv=last_conv, num_classes=num_classes,
                                   small_input=small))
        except ValueError:
            continue
    raise ValueError(f"latency table: no carrier network for stem {stem}, stage-4 channels {c}")


def build_entry(spec: Spec) -> nn.Module:
    """The module a table entry times (see the module docstring)."""
    if spec[0] == "stem":
        return _Part(_carrier(spec[1], spec[2], 2 * spec[1], 0, 10), "stem")
    if spec[0] == "head":
        return _Part(_carrier(24, False, spec[1], spec[2], spec[3]), "head")
    _, b, cin, cout, stride, fg = spec
    return make_unit(Block.parse(b), cin, cout, stride, first_grouped=fg)


def probe_arch(space: SearchSpace, task: Task, small: bool) -> Arch:
    """Any arch of ``space`` for ``task`` with stem variant ``small`` (its stage sizes are the variant's)."""
    return space.sample(np.random.default_rng(0), num_classes=task.num_classes, small_input=small)


def table_specs(space: SearchSpace, task: Task) -> dict[str, tuple[Spec, tuple[int, ...]]]:
    """Every lookup-table entry ``space`` can need for ``task``: ``{key: (spec, input shape)}``."""
    size = task.image_size
    specs: dict[str, tuple[Spec, tuple[int, ...]]] = {}
    for small in task.stem_variants(space.small_input):
        stage_sizes = probe_arch(space, task, small).spatial_sizes(size)
        for stem in space.stem_channels:
            specs[stem_key(stem, small, size)] = (("stem", stem, small), (1, 3, size, size))
        prev = space.stem_channels
        for i, ss in enumerate(space.stages):
            h_in, h_out = stage_sizes[i], stage_sizes[i + 1]
            for cout in ss.channels:
                sites = [Site(i, 0, cin, cout, in_size=h_in) for cin in prev]
                sites += [Site(i, 1, cout, cout, in_size=h_out)] if ss.max_depth > 1 else []
                for at in sites:
                    for b in space.valid_blocks(at):
                        key, spec, shape = block_entry(at.with_block(b))
                        specs[key] = (spec, shape)
            prev = ss.channels
        h = stage_sizes[-1]
        for c in space.stages[-1].channels:
            for last in space.last_conv:
                specs[head_key(c, last, task.num_classes, h)] = (("head", c, last, task.num_classes), (1, c, h, h))
    return specs


def measure_table(specs: dict[str, tuple[Spec, tuple[int, ...]]], cond: Conditions,
                  progress: bool) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every entry measured under ``cond`` (its input shape replaced by the entry's), then checked
    against its cost-model fit (:func:`check_table`: outliers re-measured, a table that still looks
    wrong raises). Returns (key -> median ms, the re-measured entries' readings)."""
    lut: dict[str, float] = {}
    costs: dict[str, tuple[float, float]] = {}
    bar = progress_bar(len(specs), "latency table", "entry", progress)

    def entry_ms(k: str) -> float:
        spec, ishape = specs[k]
        module = build_entry(spec)
        if k not in costs:
            costs[k] = entry_cost(module, ishape)
        # on a CPU 5 warm-up runs and no minimum warm-up time: on 200 entries (2-core Xeon, 1 thread,
        # session 21, benchmarks/table_warmup.py) a 20-ms minimum moved the medians 1.1% (the calibration
        # fits the scale) and repeated no better, at 2.6x the time per entry; on a GPU (clocks, lazy
        # kernel loads; not measured) the 20 ms stay
        warmup_s = 0.0 if cond.torch_device.type == "cpu" else 0.02
        return measure(module, cond.replace(input_shape=ishape), samples=25, warmup_runs=5, warmup_s=warmup_s,
                       retries=1, max_rel_iqr=0.2).median_ms

    for k in specs:
        lut[k] = entry_ms(k)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    remeasured = check_table(lut, costs, {k: _kind(spec) for k, (spec, _) in specs.items()}, entry_ms)
    return lut, remeasured


def entry_cost(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[float, float]:
    """(multiply-adds, memory access in elements) of one forward of a table entry, read from its
    layers' shapes on a CPU forward: convolutions and linear layers count multiply-adds
    (``count_flops``' convention); every leaf layer counts its input, output and parameter
    elements (the memory access cost of ShuffleNet V2, Ma et al. 2018, section 2)."""
    flops = mem = 0.0

    def hook(m: nn.Module, inp, out) -> None:
        nonlocal flops, mem
        x = inp[0]
        mem += x.numel() + out.numel() + sum(p.numel() for p in m.parameters(recurse=False))
        if isinstance(m, nn.Conv2d):
            flops += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            flops += out.numel() * m.in_features

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return flops, mem


def _kind(spec: Spec) -> str:
    """The entry kind a cost fit is made per: ``stem``, ``head0`` (no conv5), ``head``, ``v1`` or ``v2``."""
    if spec[0] == "head":
        return "head0" if spec[2] == 0 else "head"
    return "stem" if spec[0] == "stem" else str(spec[1])[:2]


def _cost_fit(lut: dict[str, float], costs: dict[str, tuple[float, float]], kinds: dict[str, str]) -> dict[str, float]:
    """Each entry's latency as predicted from its FLOPs and memory access by a least-squares fit of
    relative error over the entries of its kind (:func:`_kind`), refitted once without the worst
    tenth (so that a few stalled entries do not pull the fit). Kinds with fewer than 6 entries
    keep their measurement as the fit (not checked). Returns ``{key: fitted ms}``."""
    out = dict(lut)
    groups: dict[str, list[str]] = {}
    for k in lut:
        groups.setdefault(kinds[k], []).append(k)
    for keys in groups.values():
        if len(keys) < 6:
            continue
        X = np.array([[1.0, *costs[k]] for k in keys])
        y = np.array([lut[k] for k in keys])
        scale = np.abs(X).max(0)
        scale[scale == 0] = 1.0
        Xs = X / scale
        keep = np.ones(len(keys), dtype=bool)
        for _ in range(2):
            w = 1.0 / np.maximum(y[keep], 1e-6)
            coef, *_ = np.linalg.lstsq(Xs[keep] * w[:, None], y[keep] * w, rcond=None)
            fit = np.maximum(Xs @ coef, 1e-6)
            ratio = y / fit
            keep = ratio <= np.quantile(ratio, 0.9)
        out.update({k: float(f) for k, f in zip(keys, fit)})
    return out


def _outliers(lut: dict[str, float], fit: dict[str, float]) -> list[str]:
    """Entries slower than ``OUTLIER_FACTOR`` x their cost fit (a stall only adds time)."""
    return [k for k, v in lut.items() if v - fit[k] > OUTLIER_MIN_MS and v > OUTLIER_FACTOR * fit[k]]


def check_table(lut: dict[str, float], costs: dict[str, tuple[float, float]], kinds: dict[str, str],
                remeasure: Callable[[str], float], attempts: int = 2) -> dict[str, list[float]]:
    """Find entries far off their FLOPs/memory-access fit, re-measure them (``attempts`` times)
    and keep the lowest reading (a stall only adds time); in place on ``lut``.

    An entry that stays far off its fit is kept when its readings agree with each other (within
    25%: a real cost the model does not see, such as a slow grouped-conv kernel). One whose
    readings still disagree means the machine was not quiet: the table is refused.

    Returns:
        ``{key: [first reading, re-measurements...]}`` of the entries re-measured.

    Raises:
        ValueError: entries whose readings stay inconsistent (named, with their readings).
    """
    if len(lut) < 8:
        return {}
    fit = _cost_fit(lut, costs, kinds)
    readings: dict[str, list[float]] = {}
    for k in _outliers(lut, fit):
        readings[k] = [lut[k]] + [remeasure(k) for _ in range(attempts)]
        lut[k] = min(readings[k])
    fit = _cost_fit(lut, costs, kinds)
    bad = [k for k in _outliers(lut, fit) if k in readings
           and (max(readings[k][1:]) / min(readings[k][1:]) > 1.25)]
    if bad:
        shown = "; ".join(f"{k}: {', '.join(f'{v:.3f}' for v in readings[k])} ms (cost fit {fit[k]:.3f} ms)"
                          for k in bad[:5])
        raise ValueError(f"latency table: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} measured inconsistently "
                         f"and far from their FLOPs/memory-access cost ({shown}); the machine was busy. Nothing was "
                         f"cached: rebuild on a quiet machine (python -m search.latency build)")
    if readings:
        log.info("latency table: re-measured %d outlier entr%s", len(readings), "y" if len(readings) == 1 else "ies")
    return readings
