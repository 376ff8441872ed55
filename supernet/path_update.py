"""The path-only optimizer update of supernet training (issue 10).

With plain SGD on a supernet, every step moves every element of the shared tensors: weight
decay shrinks the slices the sampled path did not read and stale momentum pushes them. The
path-only update applies SGD (weight decay, momentum, Nesterov: ``torch.optim.SGD``'s rule
with dampening 0) to the elements the step's path reads and leaves every other element,
and its momentum, bit for bit as it was. Two implementations of the one rule:

* :class:`PathOnlyUpdate` (one path per step, no AMP; the default when ``update="path"``):
  the step differentiates with respect to the subnet's own tensors (leaves of the path's
  size) instead of the shared ones, so no gradient of the supernet's size is built, zeroed
  or accumulated, and the update gathers and scatters the path's elements only. The map
  from a subnet tensor to the shared elements it reads comes from
  :meth:`SuperNet._state` itself, run on an *index twin* of the supernet whose parameters
  hold their own element numbers: one code path for the weights and their addresses.
* :class:`MaskedPathUpdate` (the sandwich rule's several paths per step, and AMP): a full
  ``torch.optim.SGD`` step, then the elements no path of the step reads are restored with
  their momentum (:meth:`SuperNet.path_masks`). About 3x the step time of plain SGD.

Both leave the optimizer's state in ``torch.optim.SGD``'s format (``momentum_buffer`` per
shared parameter), so checkpoints resume with either.
"""

from __future__ import annotations

import bisect
import copy

import torch
from torch import Tensor, nn

from search_space import Arch

from .supernet import SuperNet, _template

__all__ = ["PathOnlyUpdate", "MaskedPathUpdate"]


def _storage_view(t: Tensor) -> Tensor:
    """``t``'s elements in storage order as a 1-D view (``t`` dense: contiguous or channels_last).

    Raises:
        ValueError: ``t`` is not dense in one of those layouts.
    """
    if not (t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))):
        raise ValueError(f"path-only update: a shared tensor of shape {tuple(t.shape)} and strides {t.stride()} is "
                         "neither contiguous nor channels_last; move the supernet with .to(memory_format=...) first")
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


class PathOnlyUpdate:
    """Path-only SGD without supernet-sized gradients (see the module docstring).

    Use per step: ``logits = upd.forward(x, arch)`` (training mode: BN statistics land in the
    shared buffers as with ``supernet(x, arch)``), backward of a loss of ``logits``, then
    ``upd.params()`` hold the step's gradients (clip or all-reduce them there) and
    ``upd.step()`` applies them with the learning rate, weight decay and momentum of the
    shared parameter's group in ``opt``.

    Args:
        supernet: the supernet; its layout (device, dtype, memory format) must not change
            after the first :meth:`forward` (the index twin is built there).
        opt: a ``torch.optim.SGD`` over the supernet's parameters (``make_optimizer``); its
            ``momentum_buffer`` states are used and kept in its format.

    Raises:
        ValueError: ``opt`` is not SGD, or has dampening, or does not hold a parameter; a
            parameter of the supernet is frozen (``requires_grad=False``).
    """

    def __init__(self, supernet: SuperNet, opt: torch.optim.Optimizer) -> None:
        if not isinstance(opt, torch.optim.SGD):
            raise ValueError(f"path-only update: expects torch.optim.SGD, got {type(opt).__name__}")
        self.supernet, self.opt = supernet, opt
        self._group = {}
        for group in opt.param_groups:
            if group.get("dampening", 0) or group.get("maximize", False):
                raise ValueError("path-only update: SGD with dampening or maximize is not supported")
            for p in group["params"]:
                self._group[p] = group
        frozen = [n for n, p in supernet.named_parameters() if not p.requires_grad]
        if frozen:  # the index twin addresses every parameter; a frozen one would be read as a weight
            raise ValueError(f"path-only update: frozen parameters are not supported ({frozen[:3]}); "
                             f"use update='full' or unfreeze them")
        self._params = list(supernet.parameters())
        missing = [n for n, p in supernet.named_parameters() if p.requires_grad and p not in self._group]
        if missing:
            raise ValueError(f"path-only update: the optimizer does not hold {missing[:3]}")
        self._twin: SuperNet | None = None
        self._offsets: list[int] = []
        self._items: list[tuple[Tensor, Tensor, Tensor]] = []  # (leaf, shared parameter, element numbers)

    def _index_twin(self) -> SuperNet:
        """A copy of the supernet whose parameter ``k`` holds ``offset_k + its storage position``
        (int64, same shape and strides), so ``twin._state(arch)`` maps every subnet tensor to
        the shared elements it reads. Buffers are copied (small); parameters are not."""
        memo, off = {}, 0
        self._offsets = []
        for p in self._params:
            idx = torch.empty_like(p, dtype=torch.int64)
            _storage_view(idx).copy_(torch.arange(off, off + p.numel(), device=p.device))
            _storage_view(p.detach())  # raises now for a layout the update cannot address
            memo[id(p)] = nn.Parameter(idx, requires_grad=False)
            self._offsets.append(off)
            off += p.numel()
        return copy.deepcopy(self.supernet, memo)

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        """Logits of ``arch`` on ``x``, differentiable with respect to this step's leaves only."""
        sup = self.supernet
        if self._twin is None:
            self._twin = self._index_twin()
            self._by_storage = {p.untyped_storage().data_ptr(): p for p in self._params}
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        with torch.no_grad():
            s = sup._state(arch)
        names = [n for n, _ in _template(arch, sup.training).named_parameters()]
        leaves, self._items, gathered = {}, [], []
        for n in names:
            v = s[n].detach()
            # an own dense copy in the layout of the static model's weights: the convs run as fast
            leaf = v.clone(memory_format=torch.channels_last if v.dim() == 4 and channels_last else
                           torch.contiguous_format).requires_grad_(True)
            leaves[n] = leaf
            p = self._by_storage.get(v.untyped_storage().data_ptr())
            if p is not None:  # p itself or a view of it (prefix slice): updated in place through it
                self._items.append((leaf, p, v))
            else:  # a gather (labels, block diagonal): updated through its element numbers
                gathered.append((n, len(self._items)))
                self._items.append((leaf, None, None))
        if gathered:
            with torch.no_grad():
                index = self._twin._state(arch)
            for n, i in gathered:
                flat = index[n].reshape(-1)
                k = bisect.bisect_right(self._offsets, int(flat[0])) - 1
                self._items[i] = (self._items[i][0], self._params[k], flat - self._offsets[k] if self._offsets[k] else flat)
        return sup._run(x, arch, s, leaves)

    def params(self) -> list[Tensor]:
        """This step's leaves (the subnet's parameters), holding the gradients after backward."""
        return [leaf for leaf, _, _ in self._items]

    @torch.no_grad()
    def step(self) -> None:
        """SGD on the path's elements: ``d = g + wd * p``; ``buf = momentum * buf + d``;
        ``p -= lr * (d + momentum * buf if nesterov else buf)`` (``torch.optim.SGD``, dampening 0;
        a buffer starts at zero, which equals SGD's first-step ``buf = d``). The tensors of one
        parameter group go through ``torch._foreach_*`` ops together."""
        work: dict[int, tuple[dict, list]] = {}
        for leaf, p, where in self._items:
            if leaf.grad is not None:
                group = self._group[p]
                work.setdefault(id(group), (group, []))[1].append((leaf, p, where))
        for group, items in work.values():
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            ws, gs, targets, bufs, scatter = [], [], [], [], []
            for leaf, p, where in items:
                view = where.dtype == p.dtype  # a view of p, else the element numbers it reads
                buf = None
                if mu:
                    state = self.opt.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None or buf.stride() != p.stride():
                        buf = state["momentum_buffer"] = (torch.zeros_like(p) if buf is None
                                                          else torch.empty_like(p).copy_(buf))
                if view:  # p's elements in place (their values equal the leaf's: read this step)
                    ws.append(leaf.detach())
                    gs.append(leaf.grad)
                    targets.append(where)
                    if buf is not None:
                        bufs.append(buf.as_strided(where.shape, where.stride(),
                                                   where.storage_offset() - p.storage_offset() + buf.storage_offset()))
                else:  # gathered elements: computed on copies, scattered back below
                    w = leaf.detach().reshape(-1).clone()
                    ws.append(w)
                    gs.append(leaf.grad.reshape(-1))
                    targets.append(w)
                    if buf is not None:
                        bufs.append(_storage_view(buf).index_select(0, where))
                    scatter.append((len(targets) - 1, p, where, buf))
            ds = torch._foreach_add(gs, ws, alpha=wd) if wd else gs
            if mu:
                torch._foreach_mul_(bufs, mu)
                torch._foreach_add_(bufs, ds)
                ds = torch._foreach_add(ds, bufs, alpha=mu) if group["nesterov"] else bufs
            torch._foreach_add_(targets, ds, alpha=-lr)
            for k, p, where, buf in scatter:
                _storage_view(p.detach()).index_copy_(0, where, targets[k])
                if buf is not None:
                    _storage_view(buf).index_copy_(0, where, bufs[k])
        self._items = []


class MaskedPathUpdate:
    """Path-only update by masks, for steps of several paths (the sandwich rule) or AMP:
    :meth:`freeze` before the optimizer step saves what none of the step's paths reads,
    :meth:`restore` after it puts that back with its momentum (a buffer SGD created in this
    step restarts at zero there)."""

    def __init__(self, supernet: SuperNet, opt: torch.optim.Optimizer) -> None:
        self.supernet, self.opt = supernet, opt
        self.params = dict(supernet.named_parameters())

    def freeze(self, archs: list[Arch]) -> list[tuple[Tensor, Tensor, Tensor, Tensor | None]]:
        """Save what none of ``archs`` (the paths of one step) reads."""
        masks: dict[str, Tensor] = {}
        for arch in archs:
            for name, mask in self.supernet.path_masks(arch).items():
                masks[name] = mask | masks[name] if name in masks else mask
        saved = []
        for name, mask in masks.items():
            if bool(mask.all()):
                continue
            p = self.params[name]
            keep = ~mask
            buf = self.opt.state.get(p, {}).get("momentum_buffer")
            saved.append((p, keep, p.detach()[keep].clone(), None if buf is None else buf[keep].clone()))
        return saved

    def restore(self, saved) -> None:
        with torch.no_grad():
            for p, keep, value, buf in saved:
                p[keep] = value
                mb = self.opt.state.get(p, {}).get("momentum_buffer")
                if mb is not None:
                    mb[keep] = 0.0 if buf is None else buf
