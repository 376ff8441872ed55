"""Weight-sharing supernet: every architecture of a space in one set of weights.

``SuperNet(space, num_classes=...)`` holds shared tensors at the largest size
each choice needs; ``supernet(x, arch)`` runs exactly ``arch`` and
``extract(supernet, arch)`` returns the static :class:`~supernet.ShuffleNet`
with the inherited weights. There is no mutable "active" state: the forward
pass is a pure function of ``(weights, x, arch)``, so a supernet can be
pickled to Ray workers and used from several threads.

One code path, by construction. ``supernet.subnet_state(arch)`` maps the
shared tensors to the ``state_dict`` of ``ShuffleNet(arch)`` (names and shapes
exactly those of the static model); ``supernet(x, arch)`` is
``torch.func.functional_call(ShuffleNet(arch) on the meta device, that state,
x)`` and ``extract`` loads a copy of the same state into a real
``ShuffleNet(arch)``. The unit code therefore lives only in ``units.py``.

Sharing scheme (as in once-for-all's ``get_active_filter`` / SPOS):

* **Depth**: a stage of depth d uses the shared units at positions 0..d-1.
* **Width**: every weight is stored at the largest size any architecture needs
  at that position; a narrower choice takes the prefix slice
  ``weight[:out, :in]`` (``width_sharing="separate"`` gives each stage width
  its own units instead). BatchNorm affine parameters *and* running statistics
  are sliced the same way (``[:c]``); slices are views, so BN statistics
  updated during training land in the shared buffers.
* **V1 group counts** share one dense 1x1 weight per pointwise conv: the
  grouped conv with g groups uses the g diagonal blocks of ``weight[:out, :in]``
  (g = 1 uses it whole). The depthwise conv and BNs are shared across g.
* **V2 split ratios** share by slicing: the conv branch has b = c*split hidden
  channels (prefix ``[:b]``); branch1 of a stride-2 unit has c-b outputs.
* **Channel labels** (see the note above ``_SharedV2``): input and output
  channels of every weight are indexed by a channel *label* that follows the
  channel through the shuffles, so a unit choice at one position does not
  scramble what later weights see. The gathers are differentiable
  (``index_select``); gathered BN statistics are written back after a training
  forward.
* **V1 and V2 units at one position have their own weights**.
* The stem conv, conv5 and the classifier are sliced by width; the classifier
  of networks without conv5 (``last_conv=0``) is separate from the one after
  conv5, since their inputs mean different things.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.func import functional_call

from search_space import STAGE_NAMES, Arch, Block, SearchSpace, Site

from .model import ShuffleNet
from .units import make_unit

__all__ = ["SuperNet", "extract", "get_active_filter", "block_diagonal"]


# --------------------------------------------------------------------- slicing helpers
def get_active_filter(weight: Tensor, out_channels: int, in_channels: int | None = None) -> Tensor:
    """Prefix slice ``weight[:out, :in]`` (once-for-all)."""
    w = weight[:out_channels]
    return w if in_channels is None else w[:, :in_channels]


def block_diagonal(weight: Tensor, groups: int) -> Tensor:
    """Grouped-conv weight from a dense one: the ``groups`` diagonal blocks.

    ``weight`` has shape ``(out, in, k, k)``; the result ``(out, in // groups, k, k)``
    is the weight of ``Conv2d(in, out, groups=groups)`` whose group i maps input
    channels ``[i*in/g, (i+1)*in/g)`` to output channels ``[i*out/g, (i+1)*out/g)``.
    """
    if groups == 1:
        return weight
    o, i = weight.shape[:2]
    og, ig = o // groups, i // groups
    w = weight.reshape(groups, og, groups, ig, *weight.shape[2:])
    d = torch.diagonal(w, dim1=0, dim2=2)  # (og, ig, k, k, groups)
    return d.permute(d.dim() - 1, *range(d.dim() - 1)).reshape(o, ig, *weight.shape[2:])


def _take(t: Tensor, idx) -> Tensor:
    """``t[idx]`` along dim 0: a view for a slice, a differentiable gather for label indices."""
    return t[idx] if isinstance(idx, slice) else t.index_select(0, idx)


def _cols(t: Tensor, idx) -> Tensor:
    return t[:, idx] if isinstance(idx, slice) else t.index_select(1, idx)


class _State(dict):
    """A subnet ``state_dict`` plus the BN statistics gathered by label (written back after training)."""

    def __init__(self) -> None:
        super().__init__()
        self.writeback: list[tuple[Tensor, Tensor, Tensor]] = []

    def bn(self, bn: nn.BatchNorm2d, idx, prefix: str) -> None:
        self[prefix + "weight"] = _take(bn.weight, idx)
        self[prefix + "bias"] = _take(bn.bias, idx)
        for name in ("running_mean", "running_var"):
            buf = getattr(bn, name)
            t = _take(buf, idx)
            if not isinstance(idx, slice):
                t = t.clone()
                self.writeback.append((buf, idx, t))
            self[prefix + name] = t
        self[prefix + "num_batches_tracked"] = bn.num_batches_tracked

    def write_back(self) -> None:
        with torch.no_grad():
            for buf, idx, t in self.writeback:
                buf.index_copy_(0, idx, t)


def shuffle_src(c: int, groups: int, device=None) -> Tensor:
    """Source channel of every output position of a channel shuffle:
    ``channel_shuffle(x, groups)[:, p] == x[:, src[p]]`` (``c`` channels, ``c % groups == 0``)."""
    return torch.arange(c, device=device).view(groups, c // groups).t().reshape(-1)


def _conv(out: int, inp: int, k: int = 1) -> nn.Parameter:
    w = torch.empty(out, inp, k, k)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    return nn.Parameter(w)


# --------------------------------------------------------------------- shared units
# Channel labels. A tensor between units has ``c`` channels; ``layout[p]`` is the
# *label* of the channel at position p, and every shared weight is indexed by
# label, not by position. Labels make the sharing consistent across choices:
# a v2 unit's channel shuffle moves identity channels to other positions, and
# how far depends on nothing but the width, whereas a v1 unit keeps positions.
# Without labels, the unit choice at one position would scramble the channel
# order every later weight sees. Units are label preserving: a stride-1 v2
# branch writes its outputs under the labels of the channels it consumed, a v1
# unit adds onto the same labels; a stride-2 unit keeps the labels 0..cin-1 for
# its shortcut (the v1 average pool; the v2 branch1, initialised as a strided
# identity) and gives its new channels the labels cin..c-1. Measured on digits
# (8 epochs, uniform sampling of split ratios only): 15% train accuracy with
# positional sharing, 83% with labels and identity initialisation.
class _SharedV2(nn.Module):
    """Shared tensors of the v2 unit at one position (max sizes; see the label note).

    Stride 1: the branch's hidden channels are indexed by the labels it consumes
    too (hidden channel k of a subnet <-> consumed label k), and the shared
    weights start as a per-label identity (1x1 convs = I, depthwise = dirac), so
    at initialisation every v2 unit, like every zero-initialised v1 unit, keeps
    what each label means whatever the split. Stride 2 opens new labels and uses
    prefix-sliced hidden channels.
    """

    def __init__(self, cin: int, cout: int, branch: int, left: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        if stride == 2:
            # branch1 starts as a strided per-label identity: output label k < cin carries input
            # label k, like the average-pooled shortcut of a v1 downsampling unit
            dw = torch.zeros(cin, 1, 3, 3)
            dw[:, 0, 1, 1] = 1.0
            self.b1_dw = nn.Parameter(dw + 0.01 * torch.randn_like(dw))  # rows: input labels
            self.b1_bn1 = nn.BatchNorm2d(cin)
            pw = _conv(left, cin).data  # rows: output labels 0..left-1, cols: input labels
            k = min(left, cin)
            pw[:k] = _near_identity(cin)[:k]
            self.b1_pw = nn.Parameter(pw)
            self.b1_bn2 = nn.BatchNorm2d(left)
            self.pw1 = _conv(branch, cin)  # rows: hidden (prefix), cols: input labels
            self.bn1 = nn.BatchNorm2d(branch)
            self.dw = _conv(branch, 1, 3)
            self.bn2 = nn.BatchNorm2d(branch)
            self.pw2 = _conv(cout, branch)  # rows: output labels, cols: hidden (prefix)
        else:
            hidden = cout  # hidden channels indexed by label
            self.pw1 = nn.Parameter(_near_identity(hidden))
            self.bn1 = nn.BatchNorm2d(hidden)
            dw = torch.zeros(hidden, 1, 3, 3)
            dw[:, 0, 1, 1] = 1.0
            self.dw = nn.Parameter(dw + 0.01 * torch.randn_like(dw))
            self.bn2 = nn.BatchNorm2d(hidden)
            self.pw2 = nn.Parameter(_near_identity(hidden))
        self.bn3 = nn.BatchNorm2d(cout)

    def state(self, s: _State, layout: Tensor, cin: int, cout: int, split: float, prefix: str) -> Tensor:
        b = round(cout * split)
        left = cout - b
        src = shuffle_src(cout, 2, layout.device)
        if self.stride == 2:
            s[prefix + "branch1.0.weight"] = _take(self.b1_dw, layout)
            s.bn(self.b1_bn1, layout, prefix + "branch1.1.")
            s[prefix + "branch1.2.weight"] = _cols(self.b1_pw[:left], layout)
            s.bn(self.b1_bn2, slice(0, left), prefix + "branch1.3.")
            s[prefix + "branch2.0.weight"] = _cols(self.pw1[:b], layout)
            hidden: slice | Tensor = slice(0, b)
            out_labels: slice | Tensor = slice(left, cout)
            new_layout = src
        else:
            hidden = out_labels = layout[left:cout]  # the labels this branch consumes and rewrites
            s[prefix + "branch2.0.weight"] = _cols(_take(self.pw1, hidden), hidden)
            new_layout = layout[src]
        s.bn(self.bn1, hidden, prefix + "branch2.1.")
        s[prefix + "branch2.3.weight"] = _take(self.dw, hidden)
        s.bn(self.bn2, hidden, prefix + "branch2.4.")
        s[prefix + "branch2.5.weight"] = _cols(_take(self.pw2, out_labels), hidden)
        s.bn(self.bn3, out_labels, prefix + "branch2.6.")
        return new_layout


def _near_identity(n: int) -> Tensor:
    return (torch.eye(n) + 0.01 * torch.randn(n, n)).view(n, n, 1, 1)


class _SharedV1(nn.Module):
    """Shared tensors of the v1 unit at one position: dense pointwise weights for every g.

    ``hidden_labels=False`` (the original scheme): the depthwise conv, its BN and
    the columns of the second pointwise conv are indexed by position after the
    unit's channel shuffle, so each group count g reads them in another channel
    order (g = 1 has no shuffle). ``hidden_labels=True`` indexes them by the
    hidden channel's label instead (its position before the shuffle), as the
    channel labels do between units: hidden channel k keeps its depthwise filter,
    BN and outgoing weights whatever g shuffled it to.
    """

    def __init__(self, cin: int, mid: int, out: int, *, hidden_labels: bool = False) -> None:
        super().__init__()
        self.hidden_labels = hidden_labels
        self.pw1 = _conv(mid, cin)  # rows: hidden (prefix), cols: input labels
        self.bn1 = nn.BatchNorm2d(mid)
        self.dw = _conv(mid, 1, 3)
        self.bn2 = nn.BatchNorm2d(mid)
        self.pw2 = _conv(out, mid)  # rows: output labels
        self.bn3 = nn.BatchNorm2d(out)

    def state(self, s: _State, layout: Tensor, cin: int, cout: int, groups: int, stride: int,
              first_grouped: bool, prefix: str) -> Tensor:
        mid = cout // 4
        out_labels = slice(cin, cout) if stride == 2 else layout
        # hidden channel at each position after the unit's channel shuffle
        hidden: slice | Tensor = (shuffle_src(mid, groups, layout.device) if self.hidden_labels and groups > 1
                                  else slice(0, mid))
        s[prefix + "branch_main_1.0.weight"] = block_diagonal(_cols(self.pw1[:mid], layout), groups if first_grouped else 1)
        s.bn(self.bn1, slice(0, mid), prefix + "branch_main_1.1.")
        s[prefix + "branch_main_2.0.weight"] = _take(self.dw, hidden)
        s.bn(self.bn2, hidden, prefix + "branch_main_2.1.")
        s[prefix + "branch_main_2.2.weight"] = block_diagonal(_cols(_take(self.pw2, out_labels), hidden), groups)
        s.bn(self.bn3, out_labels, prefix + "branch_main_2.3.")
        if stride == 2:  # the pooled shortcut keeps its labels, the branch opens cin..cout-1
            return torch.cat((layout, torch.arange(cin, cout, device=layout.device)))
        return layout


_TEMPLATES = threading.local()
_TEMPLATE_CACHE_SIZE = 128
_UNIT_CACHE_SIZE = 4096


def _template(arch: Arch, training: bool) -> ShuffleNet:
    """``ShuffleNet(arch)`` on the meta device: structure only, no memory.

    One cache per thread: ``functional_call`` swaps the subnet's tensors into the
    template for the duration of a call, so two threads sharing one template
    would run each other's weights (wrong outputs, NaNs, or "tensor on device
    meta" errors). Units are cached too (per thread, per mode) and shared between
    the templates that hold the same unit at the same geometry: building a
    network's modules costs about 25 ms, mostly parameter initialisation that a
    template never uses, and every supernet step meets a new architecture."""
    cache = getattr(_TEMPLATES, "cache", None)
    if cache is None:
        cache = _TEMPLATES.cache = OrderedDict()
        _TEMPLATES.units = OrderedDict()
    key = (arch, training)
    model = cache.get(key)
    if model is None:
        units, calls = _TEMPLATES.units, iter(range(sum(arch.depths)))

        def unit(block: Block, inp: int, oup: int, stride: int, *, first_grouped: bool = True) -> nn.Module:
            # keyed by the unit's ordinal too: one module object twice in one network would share its weights
            k = (next(calls), block, inp, oup, stride, first_grouped, training)
            m = units.get(k)
            if m is None:
                m = units[k] = make_unit(block, inp, oup, stride, first_grouped=first_grouped).train(training)
                if len(units) > _UNIT_CACHE_SIZE:
                    units.popitem(last=False)
            else:
                units.move_to_end(k)
            return m

        with torch.device("meta"):
            model = cache[key] = ShuffleNet(arch, unit_factory=unit).train(training)
        if len(cache) > _TEMPLATE_CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return model


class _Head(nn.Module):
    """conv5 (rows prefix-shared across last_conv choices) and one classifier per last_conv choice.

    The classifier is not shared across last_conv choices: the mean-pooled ReLU
    features have a large common component whose contribution to the logits
    would scale with the number of features (1024 vs 2048), and sharing it made
    supernet training diverge.
    """

    def __init__(self, c4: int, last_conv: tuple[int, ...], num_classes: int,
                 conv0_widths: tuple[int, ...] = ()) -> None:
        super().__init__()
        last = max(last_conv)
        if last:
            self.conv5 = _conv(last, c4)  # cols: stage-4 labels
            self.conv5_bn = nn.BatchNorm2d(last)
        keys = [f"l{c}" for c in last_conv if c or not conv0_widths]
        if 0 in last_conv:
            keys += [f"l0_c{w}" for w in conv0_widths]
        self.fc = nn.ModuleDict({k: nn.Linear(c4 if k.startswith("l0") else int(k[1:]), num_classes) for k in keys})
        self.conv0_widths = tuple(conv0_widths)

    def state(self, s: _State, layout: Tensor, last_conv: int) -> None:
        per_width = last_conv == 0 and self.conv0_widths
        fc = self.fc[f"l0_c{len(layout)}" if per_width else f"l{last_conv}"]
        if last_conv:
            s["conv5.0.weight"] = _cols(self.conv5[:last_conv], layout)
            s.bn(self.conv5_bn, slice(0, last_conv), "conv5.1.")
            s["fc.weight"] = fc.weight
        else:
            s["fc.weight"] = _cols(fc.weight, layout)
        s["fc.bias"] = fc.bias


WIDTH_SHARING = ("prefix", "separate")
V1_SHARING = ("dense", "labels", "per_group")


class SuperNet(nn.Module):
    """One set of weights for every architecture of ``space`` (see module docstring).

    Args:
        space: the search space (``SearchSpace`` or a name/path for ``SearchSpace.load``).
        num_classes: classifier outputs (fixed for the supernet).
        width_sharing: ``"prefix"`` (default): all widths of a stage share one set of
            units by prefix slicing (once-for-all style); ``"separate"``: each
            stage-width choice has its own units (more memory; an ablation knob).
        conv0_head: classifier of the networks without a last 1x1 conv (``conv0``):
            ``"shared"`` (default) one label-indexed classifier for every stage-4 width;
            ``"per_width"`` one per stage-4 width. An ablation knob: conv0 networks
            score ~10 points low with inherited weights on CIFAR-10, but per-width
            classifiers did not change that (Kendall tau 0.24 vs 0.28, benchmarks/supernet_ranking.py).
        v1_sharing: how V1 units of different group counts share weights at a position:
            ``"labels"`` (default) one dense weight per pointwise conv, g groups read its g
            diagonal blocks, and the tensors after the unit's channel shuffle are indexed
            by hidden-channel label (see ``_SharedV1``); ``"dense"`` (before issue 10; a
            checkpoint without the setting is one) the same indexed by position, so each g
            sees them in another order; ``"per_group"`` separate V1 weights per group
            count. Kendall tau against the committed ground truth (20 epochs, uniform
            sampling, ``benchmarks/supernet_ranking.py``): labels -0.03, dense -0.19.

    Raises:
        ValueError: an unknown ``width_sharing``, ``conv0_head`` or ``v1_sharing``; ``num_classes`` < 1.
    """

    def __init__(self, space: SearchSpace | str, *, num_classes: int, width_sharing: str = "prefix",
                 conv0_head: str = "shared", v1_sharing: str = "labels") -> None:
        super().__init__()
        if not isinstance(space, SearchSpace):
            space = SearchSpace.load(space)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")
        if width_sharing not in WIDTH_SHARING:
            raise ValueError(f"width_sharing: expected one of {list(WIDTH_SHARING)}, got {width_sharing!r}")
        self.space = space
        self.num_classes = num_classes
        self.width_sharing = width_sharing
        if conv0_head not in ("shared", "per_width"):
            raise ValueError(f"conv0_head: expected 'shared' or 'per_width', got {conv0_head!r}")
        self.conv0_head = conv0_head
        if v1_sharing not in V1_SHARING:
            raise ValueError(f"v1_sharing: expected one of {list(V1_SHARING)}, got {v1_sharing!r}")
        self.v1_sharing = v1_sharing
        stem = max(space.stem_channels)
        self.stem_conv = _conv(stem, 3, 3)
        self.stem_bn = nn.BatchNorm2d(stem)
        self.units = nn.ModuleDict()
        identity_init: list[nn.Module] = []
        self.heads = nn.ModuleDict()
        prev = space.stem_channels
        for i, ss in enumerate(space.stages):
            for widths in self._width_groups(ss.channels):
                tag = self._tag(widths[0])
                cout_max = max(widths)
                for j in range(ss.max_depth):
                    sites = [Site(i, j, ci, co) for co in widths for ci in (prev if j == 0 else (co,))]
                    cin_max, stride = max(st.in_channels for st in sites), sites[0].stride
                    key = self._unit_key(i, j, widths[0])
                    v2 = [round(st.out_channels * r) for st in sites for r in space.splits
                          if Block.v2(r) in space.valid_blocks(st)]
                    if v2:
                        self.units[key + "_v2"] = _SharedV2(cin_max, cout_max, max(v2), cout_max, stride)
                    v1 = [(st.out_channels // 4, b.groups) for st in sites for b in space.valid_blocks(st) if b.unit == "v1"]
                    for g in sorted({g for _, g in v1}) if v1_sharing == "per_group" else ([None] if v1 else []):
                        mid = max(m for m, gg in v1 if g is None or gg == g)
                        self.units[key + self._v1_tag(g)] = _SharedV1(cin_max, mid, cout_max,
                                                                      hidden_labels=v1_sharing == "labels")
                        if stride == 1:
                            identity_init.append(self.units[key + self._v1_tag(g)])
                if i == len(space.stages) - 1:
                    self.heads["head" + tag] = _Head(cout_max, space.last_conv, num_classes,
                                                     widths if conv0_head == "per_width" else ())
            prev = ss.channels
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        for unit in identity_init:
            nn.init.zeros_(unit.bn3.weight)  # stride-1 V1 units start as the identity (as in ShuffleNet)

    def _width_groups(self, channels: tuple[int, ...]) -> list[tuple[int, ...]]:
        return [tuple(channels)] if self.width_sharing == "prefix" else [(c,) for c in channels]

    def _unit_key(self, stage: int, index: int, width: int) -> str:
        """The ``units`` key of block ``index`` of ``stage`` at ``width`` (before the unit-kind suffix)."""
        return f"{STAGE_NAMES[stage]}_{index}{self._tag(width)}"

    def _v1_tag(self, groups: int | None) -> str:
        return f"_v1g{groups}" if self.v1_sharing == "per_group" else "_v1"

    def _tag(self, width: int) -> str:
        return "" if self.width_sharing == "prefix" else f"_c{width}"

    def check(self, arch: Arch) -> Arch:
        """Validate that ``arch`` belongs to the space and matches the supernet's classes."""
        self.space.validate(arch)
        if arch.num_classes != self.num_classes:
            raise ValueError(f"num_classes: arch has {arch.num_classes}, the supernet {self.num_classes}")
        return arch

    def _state(self, arch: Arch) -> _State:
        self.check(arch)
        s = _State()
        s["conv1.0.weight"] = self.stem_conv[: arch.stem]
        s.bn(self.stem_bn, slice(0, arch.stem), "conv1.1.")
        layout = torch.arange(arch.stem, device=self.stem_conv.device)
        for site in arch.sites():
            b, cin, cout = site.block, site.in_channels, site.out_channels
            unit = self.units[self._unit_key(site.stage, site.index, cout)
                              + ("_v2" if b.unit == "v2" else self._v1_tag(b.groups))]
            prefix = f"{STAGE_NAMES[site.stage]}.{site.index}."
            if b.unit == "v2":
                layout = unit.state(s, layout, cin, cout, b.split, prefix)
            else:
                layout = unit.state(s, layout, cin, cout, b.groups, site.stride, site.first_grouped, prefix)
        self.heads["head" + self._tag(arch.stages[-1].channels)].state(s, layout, arch.last_conv)
        return s

    def subnet_state(self, arch: Arch) -> dict[str, Tensor]:
        """``state_dict`` of ``ShuffleNet(arch)`` as views / differentiable gathers of the shared tensors."""
        return dict(self._state(arch))

    def path_masks(self, arch: Arch) -> dict[str, Tensor]:
        """Which elements of each shared parameter ``arch`` reads: ``{name: bool mask}``.

        Parameters the path does not touch at all are absent. A mask has the
        parameter's shape and is exact: it is the support of the gradient of the
        sum of every subnet tensor (views, label gathers, block diagonals) with
        respect to the shared tensors, so an element is True iff some weight of
        ``ShuffleNet(arch)`` is that element. Used by the path-only optimizer
        update of :func:`supernet.train.train_supernet`.
        """
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        with torch.enable_grad():
            state = self._state(arch)
            used = [v for v in state.values() if v.requires_grad]
            total = torch.stack([v.sum() for v in used]).sum()
            grads = torch.autograd.grad(total, [p for _, p in named], allow_unused=True)
        # every subnet element enters the sum with weight 1: its gradient counts its uses (>= 1)
        return {n: g != 0 for (n, _), g in zip(named, grads) if g is not None}

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        """Run exactly ``arch`` with the shared weights (train or eval mode as set on the supernet)."""
        return self._run(x, arch, self._state(arch))

    def _run(self, x: Tensor, arch: Arch, s: _State, params: dict[str, Tensor] | None = None) -> Tensor:
        """Run ``arch`` on the subnet state ``s`` (:meth:`_state`), its parameters replaced by
        ``params`` where given (the leaves of :class:`supernet.path_update.PathOnlyUpdate`)."""
        out = functional_call(_template(arch, self.training), {**s, **params} if params else dict(s), (x,))
        if self.training:
            s.write_back()  # BN statistics gathered by label go back to the shared buffers
        return out

    def extra_repr(self) -> str:
        return f"space={self.space.name!r}, num_classes={self.num_classes}"


def extract(supernet: SuperNet, arch: Arch) -> ShuffleNet:
    """A standalone ``ShuffleNet(arch)`` holding a copy of the inherited weights and BN statistics."""
    state = {k: v.detach().clone().contiguous() for k, v in supernet.subnet_state(arch).items()}
    ref = next(supernet.parameters())
    model = ShuffleNet(arch).to(device=ref.device, dtype=ref.dtype)
    model.load_state_dict(state, strict=True)
    return model.train(supernet.training)
