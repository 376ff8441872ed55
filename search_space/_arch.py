"""Architecture description: ``Block``, ``Stage`` and ``Arch`` as frozen data.

An :class:`Arch` describes one ShuffleNet-family network with torchvision's
macro layout (conv1 -> maxpool -> stage2 -> stage3 -> stage4 -> conv5 -> fc).
Every block is either a ShuffleNet V1 unit (Zhang et al., 2017) with a group
count, or a ShuffleNet V2 unit (Ma et al., 2018) with a channel-split ratio.

Canonical string (the cache / dedup key), e.g. torchvision's x1_0 network::

    stem24|116:v2s0.5x4|232:v2s0.5x8|464:v2s0.5x4|conv1024|cls1000

* ``stem<C>`` or ``stem<C>:small`` (small-input stem: stride-1 conv1, no maxpool,
  for 32x32 images);
* one ``<out_channels>:<blocks>`` segment per stage; blocks are comma separated,
  ``v1g<groups>`` or ``v2s<split>``, with ``x<n>`` for n consecutive copies
  (the canonical form always merges runs);
* ``conv<C>`` the last 1x1 conv (``conv0`` = none, as in ShuffleNet V1);
* ``cls<N>`` the number of classes.

``Arch.parse(str(a)) == a`` and ``Arch.from_dict(a.to_dict()) == a`` hold
exactly. Constructing an ``Arch`` checks that it is buildable (group counts
divide the channels they act on, split ratios give whole channel counts, ...)
and raises ``ValueError`` naming the offending field otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Block", "Stage", "Arch", "Site", "NUM_STAGES", "block_channels", "conv_out", "spatial_sizes"]

NUM_STAGES = 3
UNIT_TYPES = ("v1", "v2")
STAGE_NAMES = ("stage2", "stage3", "stage4")


def _fmt_split(split: float) -> str:
    return repr(float(split))  # shortest string that round-trips exactly


@dataclass(frozen=True)
class Block:
    """One unit: ``Block("v1", groups=g)`` or ``Block("v2", split=r)``.

    ``split`` is the fraction of the unit's output channels produced by the
    convolutional branch (0.5 in the ShuffleNet V2 paper and torchvision); the
    rest is the identity (stride 1) or the downsampling branch1 (stride 2).
    """

    unit: str
    groups: int | None = None
    split: float | None = None

    def __post_init__(self) -> None:
        if self.unit == "v1":
            if self.split is not None:
                raise ValueError(f"unit: a v1 block takes 'groups', not 'split' (got split={self.split!r})")
            if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
                raise ValueError(f"groups: must be a positive integer, got {self.groups!r}")
        elif self.unit == "v2":
            if self.groups is not None:
                raise ValueError(f"unit: a v2 block takes 'split', not 'groups' (got groups={self.groups!r})")
            if isinstance(self.split, bool) or not isinstance(self.split, (int, float)):
                raise ValueError(f"split: must be a number in (0, 1), got {self.split!r}")
            if not (0.0 < float(self.split) < 1.0) or math.isnan(float(self.split)):
                raise ValueError(f"split: must lie strictly between 0 and 1, got {self.split!r}")
            object.__setattr__(self, "split", float(self.split))
        else:
            raise ValueError(f"unit: unknown unit type {self.unit!r}; expected one of {list(UNIT_TYPES)}")

    @classmethod
    def v1(cls, groups: int) -> "Block":
        return cls("v1", groups=groups)

    @classmethod
    def v2(cls, split: float = 0.5) -> "Block":
        return cls("v2", split=split)

    def __str__(self) -> str:
        if self.unit == "v1":
            return f"v1g{self.groups}"
        return f"v2s{_fmt_split(self.split)}"

    @classmethod
    def parse(cls, token: str, *, where: str = "block") -> "Block":
        m = re.fullmatch(r"v1g(\d+)", token)
        if m:
            return cls("v1", groups=int(m.group(1)))
        m = re.fullmatch(r"v2s(0?\.\d+|\d+(?:\.\d*)?(?:e-?\d+)?)", token)
        if m:
            try:
                return cls("v2", split=float(m.group(1)))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        if re.fullmatch(r"v[12].*", token):
            raise ValueError(f"{where}: malformed block {token!r}; expected 'v1g<groups>' or 'v2s<split>'")
        raise ValueError(f"{where}: unknown unit type in {token!r}; expected one of {list(UNIT_TYPES)}")

    def to_dict(self) -> dict[str, Any]:
        if self.unit == "v1":
            return {"unit": "v1", "groups": self.groups}
        return {"unit": "v2", "split": self.split}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "block") -> "Block":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
        unit = d.get("unit")
        allowed = {"v1": {"unit", "groups"}, "v2": {"unit", "split"}}.get(unit)
        if allowed is None:
            raise ValueError(f"{where}.unit: unknown unit type {unit!r}; expected one of {list(UNIT_TYPES)}")
        extra = sorted(set(d) - allowed)
        if extra:
            raise ValueError(f"{where}: unknown key(s) {extra} for a {unit} block; allowed {sorted(allowed)}")
        try:
            return cls(unit, groups=d.get("groups"), split=d.get("split"))
        except ValueError as e:
            raise ValueError(f"{where}.{e}") from None


@dataclass(frozen=True)
class Stage:
    """A stage: output channels and its blocks (the first one has stride 2)."""

    channels: int
    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))

    @property
    def depth(self) -> int:
        return len(self.blocks)


def block_channels(in_channels: int, out_channels: int, block: Block, stride: int) -> dict[str, int]:
    """Channel bookkeeping of one unit (shared by the cost model, models and supernet).

    Returns for a v2 unit ``branch`` (channels of the conv branch) and ``left``
    (identity / branch1 channels); for a v1 unit ``mid`` (bottleneck width,
    ``out_channels // 4`` as in the paper) and ``out`` (channels the main branch
    produces: ``out - in`` for stride 2 since the pooled shortcut is concatenated).
    """
    if block.unit == "v2":
        branch = round(out_channels * block.split)
        return {"branch": branch, "left": out_channels - branch}
    mid = out_channels // 4
    return {"mid": mid, "out": out_channels - in_channels if stride == 2 else out_channels}


def conv_out(size: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Output side of a conv or pool (torch's rule: ``(size + 2p - k) // s + 1``)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class Site:
    """One block position of a network, with the geometry it sees: the one place the
    position rules live (cost model, models, supernet, latency table and space use it).

    * ``stride``: 2 for the first block of a stage, else 1 (ShuffleNet V1 Sec. 3.3, V2 Fig. 3);
    * ``first_grouped``: the first 1x1 conv of a V1 unit is grouped everywhere but in the very
      first block of stage 2, whose input is the narrow stem (ShuffleNet V1 Sec. 3.3);
    * ``in_channels``: the previous stage's width for a stage's first block, else its own.

    ``block`` and ``in_size`` (feature-map side read, pixels) are None where not yet known
    (a space-level site); :attr:`key` needs both.
    """

    stage: int
    index: int
    in_channels: int
    out_channels: int
    block: "Block | None" = None
    in_size: int | None = None

    @property
    def stride(self) -> int:
        return 2 if self.index == 0 else 1

    @property
    def first_grouped(self) -> bool:
        return not (self.stage == 0 and self.index == 0)

    @property
    def out_size(self) -> int | None:
        return None if self.in_size is None else conv_out(self.in_size, 3, self.stride, 1)

    @property
    def channels(self) -> dict[str, int]:
        """:func:`block_channels` of this site's block."""
        return block_channels(self.in_channels, self.out_channels, self.block, self.stride)

    @property
    def key(self) -> str:
        """The latency lookup-table key: unit, channels in/out, stride, input side, grouped first conv."""
        if self.block is None or self.in_size is None:
            raise ValueError(f"site key: stage {self.stage} block {self.index} needs a block and an input size")
        return f"{self.block}|{self.in_channels}|{self.out_channels}|{self.stride}|{self.in_size}|{int(self.first_grouped)}"

    def with_block(self, block: "Block") -> "Site":
        from dataclasses import replace

        return replace(self, block=block)


def _check_block(where: str, site: Site) -> None:
    block, cin, cout = site.block, site.in_channels, site.out_channels
    if block.unit == "v2":
        exact = cout * block.split
        if abs(exact - round(exact)) > 1e-9:
            raise ValueError(
                f"{where}.split={block.split:g}: {cout} channels x {block.split:g} is not a whole number of channels"
            )
        ch = site.channels
        if ch["branch"] < 1 or ch["left"] < 1:
            raise ValueError(f"{where}.split={block.split:g}: leaves an empty branch at {cout} channels")
        if cout % 2:
            raise ValueError(f"{where}: a v2 unit needs an even channel count for its 2-group shuffle, got {cout}")
        return
    g = block.groups
    if cout % 4:
        raise ValueError(f"{where}: a v1 unit needs channels divisible by 4 (bottleneck = out/4), got {cout}")
    ch = site.channels
    if site.stride == 2 and ch["out"] < 1:
        raise ValueError(
            f"{where}: a stride-2 v1 unit concatenates its {cin} input channels, so it needs more than "
            f"{cin} output channels, got {cout}"
        )
    for name, c in (("input", cin if site.first_grouped else None), ("bottleneck", ch["mid"]), ("output", ch["out"])):
        if c is not None and c % g:
            raise ValueError(f"{where}.groups={g}: does not divide the {c} {name} channels")


@dataclass(frozen=True)
class Arch:
    """One network of the ShuffleNet family (see module docstring for the string form)."""

    stem: int
    stages: tuple[Stage, ...]
    last_conv: int = 1024
    num_classes: int = 1000
    small_input: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        for name in ("stem", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if isinstance(self.last_conv, bool) or not isinstance(self.last_conv, int) or self.last_conv < 0:
            raise ValueError(f"last_conv: must be a non-negative integer (0 = none), got {self.last_conv!r}")
        if not isinstance(self.small_input, bool):
            raise ValueError(f"small_input: must be a boolean, got {self.small_input!r}")
        if len(self.stages) != NUM_STAGES:
            raise ValueError(f"stages: expected {NUM_STAGES} stages, got {len(self.stages)}")
        cin = self.stem
        for i, st in enumerate(self.stages):
            where = f"stages[{i}]"
            if not isinstance(st, Stage):
                raise ValueError(f"{where}: expected a Stage, got {type(st).__name__}")
            if isinstance(st.channels, bool) or not isinstance(st.channels, int) or st.channels < 1:
                raise ValueError(f"{where}.channels: must be a positive integer, got {st.channels!r}")
            if st.depth < 1:
                raise ValueError(f"{where}.depth: a stage needs at least one block, got 0")
            for j, b in enumerate(st.blocks):
                if not isinstance(b, Block):
                    raise ValueError(f"{where}.blocks[{j}]: expected a Block, got {type(b).__name__}")
                _check_block(f"{where}.blocks[{j}]", Site(i, j, cin if j == 0 else st.channels, st.channels, b))
            cin = st.channels

    # ------------------------------------------------------------------ geometry
    def spatial_sizes(self, input_size: int = 224) -> list[int]:
        """Feature-map side after the stem and after each stage, for ``input_size`` x ``input_size``
        inputs (the ImageNet stem: stride-2 conv1 and max pool; the small-input stem keeps the size).

        Raises:
            ValueError: ``input_size`` is not a positive integer.
        """
        if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
            raise ValueError(f"input_size: must be a positive integer, got {input_size!r}")
        h = input_size if self.small_input else conv_out(conv_out(input_size))
        sizes = [h]
        for _ in self.stages:
            h = conv_out(h)
            sizes.append(h)
        return sizes

    def sites(self, input_size: int | None = None) -> list[Site]:
        """Every block as a :class:`Site`, in forward order; with ``input_size``, each carries the
        feature-map side it reads (so :attr:`Site.key` is defined)."""
        sizes = self.spatial_sizes(input_size) if input_size is not None else None
        out, cin = [], self.stem
        for i, st in enumerate(self.stages):
            for j, b in enumerate(st.blocks):
                h = None if sizes is None else sizes[i] if j == 0 else sizes[i + 1]
                out.append(Site(i, j, cin if j == 0 else st.channels, st.channels, b, h))
            cin = st.channels
        return out

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(st.depth for st in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(st.channels for st in self.stages)

    @property
    def feature_channels(self) -> int:
        """Channels entering the classifier."""
        return self.last_conv or self.stages[-1].channels

    def replace(self, **changes: Any) -> "Arch":
        from dataclasses import replace

        return replace(self, **changes)

    # ------------------------------------------------------------------ string
    def __str__(self) -> str:
        parts = [f"stem{self.stem}" + (":small" if self.small_input else "")]
        for st in self.stages:
            runs: list[list[Any]] = []
            for b in st.blocks:
                if runs and runs[-1][0] == b:
                    runs[-1][1] += 1
                else:
                    runs.append([b, 1])
            parts.append(f"{st.channels}:" + ",".join(str(b) + (f"x{n}" if n > 1 else "") for b, n in runs))
        parts.append(f"conv{self.last_conv}")
        parts.append(f"cls{self.num_classes}")
        return "|".join(parts)

    @classmethod
    def parse(cls, s: str) -> "Arch":
        """Parse the canonical string form; ``ValueError`` names the bad field."""
        if not isinstance(s, str):
            raise ValueError(f"arch string: expected str, got {type(s).__name__}")
        parts = s.strip().split("|")
        if len(parts) != NUM_STAGES + 3:
            raise ValueError(
                f"arch string: expected {NUM_STAGES + 3} '|'-separated fields "
                f"(stem|stage2|stage3|stage4|conv|cls), got {len(parts)} in {s!r}"
            )
        m = re.fullmatch(r"stem(\d+)(:small)?", parts[0])
        if not m:
            raise ValueError(f"stem: malformed field {parts[0]!r}; expected 'stem<C>' or 'stem<C>:small'")
        stem, small = int(m.group(1)), m.group(2) is not None
        stages = []
        for i, seg in enumerate(parts[1 : 1 + NUM_STAGES]):
            where = f"stages[{i}]"
            m = re.fullmatch(r"(\d+):(.*)", seg)
            if not m:
                raise ValueError(f"{where}: malformed field {seg!r}; expected '<channels>:<blocks>'")
            blocks: list[Block] = []
            for tok in m.group(2).split(","):
                rm = re.fullmatch(r"(.+?)(?:x(\d+))?", tok)
                if not tok or rm is None:
                    raise ValueError(f"{where}.blocks: empty block in {seg!r}")
                n = int(rm.group(2)) if rm.group(2) else 1
                if n < 1:
                    raise ValueError(f"{where}.blocks: repeat count must be >= 1 in {tok!r}")
                blocks.extend([Block.parse(rm.group(1), where=f"{where}.blocks[{len(blocks)}]")] * n)
            stages.append(Stage(int(m.group(1)), tuple(blocks)))
        m = re.fullmatch(r"conv(\d+)", parts[-2])
        if not m:
            raise ValueError(f"last_conv: malformed field {parts[-2]!r}; expected 'conv<C>' (conv0 = none)")
        last = int(m.group(1))
        m = re.fullmatch(r"cls(\d+)", parts[-1])
        if not m:
            raise ValueError(f"num_classes: malformed field {parts[-1]!r}; expected 'cls<N>'")
        return cls(stem=stem, stages=tuple(stages), last_conv=last, num_classes=int(m.group(1)), small_input=small)

    # ------------------------------------------------------------------ dict
    def to_dict(self) -> dict[str, Any]:
        return {
            "stem": {"channels": self.stem, "small_input": self.small_input},
            "stages": [{"channels": st.channels, "blocks": [b.to_dict() for b in st.blocks]} for st in self.stages],
            "last_conv": self.last_conv,
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Arch":
        """Inverse of :meth:`to_dict` (also accepts ``{"arch": "<string>"}``)."""
        if not isinstance(d, dict):
            raise ValueError(f"arch: expected a mapping, got {type(d).__name__}")
        if set(d) == {"arch"}:
            return cls.parse(d["arch"])
        _no_unknown(d, {"stem", "stages", "last_conv", "num_classes"}, "arch")
        for key in ("stem", "stages"):
            if key not in d:
                raise ValueError(f"{key}: missing required key")
        stem = d["stem"]
        if not isinstance(stem, dict):
            raise ValueError(f"stem: expected a mapping with 'channels' and 'small_input', got {stem!r}")
        _no_unknown(stem, {"channels", "small_input"}, "stem")
        if not isinstance(d["stages"], list):
            raise ValueError(f"stages: expected a list, got {type(d['stages']).__name__}")
        stages = []
        for i, st in enumerate(d["stages"]):
            where = f"stages[{i}]"
            if not isinstance(st, dict):
                raise ValueError(f"{where}: expected a mapping, got {type(st).__name__}")
            _no_unknown(st, {"channels", "blocks"}, where)
            if not isinstance(st.get("blocks"), list):
                raise ValueError(f"{where}.blocks: expected a list of blocks")
            blocks = tuple(Block.from_dict(b, where=f"{where}.blocks[{j}]") for j, b in enumerate(st["blocks"]))
            stages.append(Stage(st.get("channels"), blocks))
        return cls(
            stem=stem.get("channels"),
            small_input=stem.get("small_input", False),
            stages=tuple(stages),
            last_conv=d.get("last_conv", 0),
            num_classes=d.get("num_classes", 1000),
        )

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump({"arch": str(self), **self.to_dict()}, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "Arch":
        """Load the YAML written by :meth:`to_yaml` (or a plain dict form). A top-level ``deploy``
        section (written by ``search.export`` into ``arch.yaml``) is ignored."""
        import yaml

        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"arch YAML: not valid YAML ({e})") from None
        if isinstance(d, dict):  # search.export adds a `deploy` section (preprocessing, classes); not the arch's
            d.pop("deploy", None)
        if isinstance(d, dict) and "arch" in d and len(d) > 1:
            s = d.pop("arch")
            arch = cls.from_dict(d)
            if str(arch) != s:
                raise ValueError(f"arch: the 'arch' string {s!r} disagrees with the structured fields ({arch})")
            return arch
        return cls.from_dict(d)


def _no_unknown(d: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {extra}; allowed {sorted(allowed)}")


def spatial_sizes(arch: Arch, input_size: int = 224) -> list[int]:
    """Feature-map side after the stem and after each stage (:meth:`Arch.spatial_sizes`)."""
    return arch.spatial_sizes(input_size)
