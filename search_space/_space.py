"""Declarative search space: ``SearchSpace`` loaded from YAML.

A space declares, per stage, a depth range and output-width choices, the
unit choices (ShuffleNet V1 group counts, ShuffleNet V2 split ratios), the
stem and the last-conv choices. ``num_classes`` and the small-input stem are
properties of the task, not searched: they are passed to ``sample`` and
``suggest`` and checked against the space's allowed values by ``validate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._arch import NUM_STAGES, STAGE_NAMES, Arch, Block, Site, Stage, _check_block

__all__ = ["SearchSpace", "StageSpace"]


@dataclass(frozen=True)
class StageSpace:
    min_depth: int
    max_depth: int
    channels: tuple[int, ...]


def _int_list(v: Any, where: str, *, allow_zero: bool = False) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise ValueError(f"{where}: expected a non-empty list of integers, got {v!r}")
    lo = 0 if allow_zero else 1
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int) or x < lo:
            raise ValueError(f"{where}: {x!r} is not an integer >= {lo}")
    if len(set(v)) != len(v):
        raise ValueError(f"{where}: duplicate values in {v}")
    return tuple(v)


def _keys(d: Any, allowed: set[str], where: str, required: set[str] = frozenset()) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {extra}; allowed {sorted(allowed)}")
    missing = sorted(required - set(d))
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    return d


class SearchSpace:
    """A declared space of ShuffleNet V1/V2 architectures.

    Build with :meth:`load` (a built-in name such as ``"default"`` or a YAML
    path) or :meth:`from_dict`. All randomness comes from the explicit
    ``numpy.random.Generator`` passed to :meth:`sample`.
    """

    def __init__(
        self,
        *,
        name: str,
        stem_channels: tuple[int, ...],
        small_input: tuple[bool, ...],
        stages: tuple[StageSpace, ...],
        groups: tuple[int, ...],
        splits: tuple[float, ...],
        last_conv: tuple[int, ...],
    ) -> None:
        self.name = name
        self.stem_channels = tuple(stem_channels)
        self.small_input = tuple(small_input)
        self.stages = tuple(stages)
        self.groups = tuple(groups)
        self.splits = tuple(float(s) for s in splits)
        self.last_conv = tuple(last_conv)
        self._check_options()

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, name_or_path: str | Path = "default") -> "SearchSpace":
        """Load a built-in space by name (``search_space/spaces/<name>.yaml``) or a YAML file."""
        import yaml

        p = Path(str(name_or_path))
        if p.suffix in (".yaml", ".yml") or p.exists():
            if not p.is_file():
                raise ValueError(f"space: no such file {str(p)!r}")
            text, name = p.read_text(), p.stem
        else:
            f = resources.files("search_space") / "spaces" / f"{name_or_path}.yaml"
            if not f.is_file():
                raise ValueError(f"space: unknown space {str(name_or_path)!r}; built-in spaces: {cls.builtin()}")
            text, name = f.read_text(), str(name_or_path)
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"space: {p} is not valid YAML ({e})") from None
        d = dict(d or {})
        d.setdefault("name", name)
        return cls.from_dict(d)

    @staticmethod
    def builtin() -> list[str]:
        d = resources.files("search_space") / "spaces"
        return sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchSpace":
        _keys(d, {"name", "stem", "stages", "units", "last_conv"}, "space", {"stem", "stages", "units", "last_conv"})
        stem = _keys(d["stem"], {"channels", "small_input"}, "stem", {"channels"})
        small = stem.get("small_input", [False, True])
        if not isinstance(small, list) or not small or not all(isinstance(x, bool) for x in small):
            raise ValueError(f"stem.small_input: expected a non-empty list of booleans, got {small!r}")
        if not isinstance(d["stages"], list) or len(d["stages"]) != NUM_STAGES:
            raise ValueError(f"stages: expected a list of {NUM_STAGES} stages")
        stages = []
        for i, st in enumerate(d["stages"]):
            where = f"stages[{i}]"
            _keys(st, {"depth", "channels"}, where, {"depth", "channels"})
            dep = st["depth"]
            if (
                not isinstance(dep, list)
                or len(dep) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in dep)
                or not 1 <= dep[0] <= dep[1]
            ):
                raise ValueError(f"{where}.depth: expected [min, max] with 1 <= min <= max, got {dep!r}")
            stages.append(StageSpace(dep[0], dep[1], _int_list(st["channels"], f"{where}.channels")))
        units = _keys(d["units"], {"v1", "v2"}, "units")
        if not units:
            raise ValueError("units: declare at least one of 'v1' and 'v2'")
        groups: tuple[int, ...] = ()
        splits: tuple[float, ...] = ()
        if "v1" in units:
            groups = _int_list(_keys(units["v1"], {"groups"}, "units.v1", {"groups"})["groups"], "units.v1.groups")
        if "v2" in units:
            sp = _keys(units["v2"], {"split"}, "units.v2", {"split"})["split"]
            if not isinstance(sp, list) or not sp:
                raise ValueError(f"units.v2.split: expected a non-empty list, got {sp!r}")
            for x in sp:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < 1:
                    raise ValueError(f"units.v2.split: {x!r} is not a number strictly between 0 and 1")
            splits = tuple(float(x) for x in sp)
        return cls(
            name=str(d.get("name", "custom")),
            stem_channels=_int_list(stem["channels"], "stem.channels"),
            small_input=tuple(small),
            stages=tuple(stages),
            groups=groups,
            splits=splits,
            last_conv=_int_list(d["last_conv"], "last_conv", allow_zero=True),
        )

    def to_dict(self) -> dict[str, Any]:
        units: dict[str, Any] = {}
        if self.groups:
            units["v1"] = {"groups": list(self.groups)}
        if self.splits:
            units["v2"] = {"split": list(self.splits)}
        return {
            "name": self.name,
            "stem": {"channels": list(self.stem_channels), "small_input": list(self.small_input)},
            "stages": [
                {"depth": [s.min_depth, s.max_depth], "channels": list(s.channels)} for s in self.stages
            ],
            "units": units,
            "last_conv": list(self.last_conv),
        }

    def __repr__(self) -> str:
        return f"SearchSpace(name={self.name!r}, size={self.size():.3e})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    # ------------------------------------------------------------------ options
    @property
    def unit_options(self) -> tuple[Block, ...]:
        """Every block choice, in a fixed order (v1 groups, then v2 splits)."""
        return tuple(Block.v1(g) for g in self.groups) + tuple(Block.v2(s) for s in self.splits)

    def valid_blocks(self, site: Site) -> tuple[Block, ...]:
        """Block choices that are buildable at ``site`` (its channels, stride and grouped first conv)."""
        return _valid_blocks(self.unit_options, site)

    def _check_options(self) -> None:
        # every declared width must leave at least one buildable unit, whatever came before
        prev: tuple[int, ...] = self.stem_channels
        for i, st in enumerate(self.stages):
            for c in st.channels:
                if not self.valid_blocks(Site(i, 1, c, c)):
                    raise ValueError(f"stages[{i}].channels: no unit choice is buildable at {c} channels")
                for p in prev:
                    if not self.valid_blocks(Site(i, 0, p, c)):
                        raise ValueError(
                            f"stages[{i}].channels: no unit choice can go from {p} to {c} channels"
                        )
            prev = st.channels

    # ------------------------------------------------------------------ membership
    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` if it belongs to the space, else raise ``ValueError`` naming the field."""
        if not isinstance(arch, Arch):
            raise ValueError(f"arch: expected an Arch, got {type(arch).__name__}")
        if arch.stem not in self.stem_channels:
            raise ValueError(f"stem: {arch.stem} channels not in the space's choices {list(self.stem_channels)}")
        if arch.small_input not in self.small_input:
            raise ValueError(f"small_input: {arch.small_input} not allowed by the space ({list(self.small_input)})")
        if arch.last_conv not in self.last_conv:
            raise ValueError(f"last_conv: {arch.last_conv} not in the space's choices {list(self.last_conv)}")
        for i, (st, ss) in enumerate(zip(arch.stages, self.stages)):
            if st.channels not in ss.channels:
                raise ValueError(
                    f"stages[{i}].channels: {st.channels} not in the space's choices {list(ss.channels)}"
                )
            if not ss.min_depth <= st.depth <= ss.max_depth:
                raise ValueError(
                    f"stages[{i}].depth: {st.depth} outside the space's range [{ss.min_depth}, {ss.max_depth}]"
                )
            for j, b in enumerate(st.blocks):
                where = f"stages[{i}].blocks[{j}]"
                if b.unit == "v1" and b.groups not in self.groups:
                    if not self.groups:
                        raise ValueError(f"{where}.unit: v1 units are not in this space")
                    raise ValueError(f"{where}.groups: {b.groups} not in the space's choices {list(self.groups)}")
                if b.unit == "v2" and b.split not in self.splits:
                    if not self.splits:
                        raise ValueError(f"{where}.unit: v2 units are not in this space")
                    raise ValueError(f"{where}.split: {b.split} not in the space's choices {list(self.splits)}")
        return arch

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    __contains__ = contains

    def _context(self, small_input: bool | None) -> bool:
        """The stem variant to use: ``small_input`` if given (checked), else the space's only one."""
        if small_input is None:
            return self.small_input[0]
        if small_input not in self.small_input:
            raise ValueError(f"small_input: {small_input} not allowed by the space ({list(self.small_input)})")
        return small_input

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: np.random.Generator, *, num_classes: int = 1000, small_input: bool | None = None) -> Arch:
        """Draw one architecture, each decision uniform among its buildable choices (SPOS).

        ``small_input=None`` makes the stem variant a decision too (uniform over the
        space's ``stem.small_input`` choices); ``True``/``False`` fixes it.

        Raises:
            TypeError: ``rng`` is not a ``numpy.random.Generator``.
            ValueError: a ``small_input`` the space does not declare.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError("sample() needs an explicit numpy.random.Generator (np.random.default_rng(seed))")
        small = self.draw_stem_variant(rng, small_input)
        stem = int(rng.choice(self.stem_channels))
        cin, stages = stem, []
        for i, ss in enumerate(self.stages):
            cout = int(rng.choice(ss.channels))
            depth = int(rng.integers(ss.min_depth, ss.max_depth + 1))
            first = self.valid_blocks(Site(i, 0, cin, cout))
            rest = self.valid_blocks(Site(i, 1, cout, cout))
            blocks = [first[int(rng.integers(len(first)))]]
            blocks += [rest[int(rng.integers(len(rest)))] for _ in range(depth - 1)]
            stages.append(Stage(cout, tuple(blocks)))
            cin = cout
        last = int(rng.choice(self.last_conv))
        return Arch(stem=stem, stages=tuple(stages), last_conv=last, num_classes=num_classes, small_input=small)

    def extreme(self, which: str, *, num_classes: int = 1000, small_input: bool | None = None) -> Arch:
        """The largest or smallest architecture of the space (BigNAS's sandwich rule, Yu et al.,
        ECCV 2020, section 3.1): widest stem and stages, deepest stages, largest last conv, the
        small-input stem variant when ``small_input`` is None and the space has it, and,
        at every position, the block choice with the most FLOPs (``which="largest"``); or the
        opposite of each (``"smallest"``). Block costs are additive at fixed widths, so the
        per-position choice is exact.

        Raises:
            ValueError: ``which`` is neither ``"largest"`` nor ``"smallest"``.
        """
        if which not in ("largest", "smallest"):
            raise ValueError(f"which: expected 'largest' or 'smallest', got {which!r}")
        from ._cost import count_flops

        pick = max if which == "largest" else min
        # with the stem variant free, the small-input stem (full-resolution stage 2) is the larger
        small = pick(self.small_input) if small_input is None else self._context(small_input)
        stem = pick(self.stem_channels)
        widths = [pick(ss.channels) for ss in self.stages]
        depths = [ss.max_depth if which == "largest" else ss.min_depth for ss in self.stages]
        cins = [stem, *widths[:-1]]
        choices = [[self.valid_blocks(Site(i, 0, cins[i], widths[i]))]
                   + [self.valid_blocks(Site(i, 1, widths[i], widths[i]))] * (depths[i] - 1)
                   for i in range(len(self.stages))]
        blocks = [[opts[0] for opts in stage] for stage in choices]

        def build() -> Arch:
            return Arch(stem=stem, stages=tuple(Stage(w, tuple(b)) for w, b in zip(widths, blocks)),
                        last_conv=pick(self.last_conv), num_classes=num_classes, small_input=small)

        for i, stage in enumerate(choices):
            for j, opts in enumerate(stage):
                costs = []
                for b in opts:
                    blocks[i][j] = b
                    costs.append((count_flops(build(), 32), opts.index(b)))
                blocks[i][j] = opts[pick(costs)[1]]
        return build()

    def draw_stem_variant(self, rng: np.random.Generator, small_input: bool | None) -> bool:
        """``small_input`` if given (checked against the space), else a uniform draw among the
        declared stem variants (no draw when the space declares only one)."""
        if small_input is not None or len(self.small_input) == 1:
            return self._context(small_input)
        return bool(self.small_input[int(rng.integers(len(self.small_input)))])

    def size(self) -> int:
        """Exact number of distinct architectures for one input variant and class count."""
        total = 0
        for stem in self.stem_channels:
            counts = {stem: 1}  # ways to reach each "previous stage width"
            for i, ss in enumerate(self.stages):
                nxt: dict[int, int] = {}
                for cout in ss.channels:
                    n_rest = len(self.valid_blocks(Site(i, 1, cout, cout)))
                    per_depth = sum(n_rest ** (d - 1) for d in range(ss.min_depth, ss.max_depth + 1))
                    ways = sum(
                        n * len(self.valid_blocks(Site(i, 0, cin, cout))) * per_depth
                        for cin, n in counts.items()
                    )
                    nxt[cout] = nxt.get(cout, 0) + ways
                counts = nxt
            total += sum(counts.values())
        return total * len(self.last_conv)

    # ------------------------------------------------------------------ Optuna bridge
    def suggest(self, trial: Any, *, num_classes: int = 1000, small_input: bool | None = None) -> Arch:
        """Define-by-run Optuna bridge: one architecture from ``trial``.

        Parameter names are stable (``stem``, ``stage2.channels``, ``stage2.depth``,
        ``stage2.block0`` ... ``last_conv``) and every distribution is a fixed
        categorical/int over primitive values, so TPE/NSGA-II model them across
        trials. A block choice that is not buildable at the chosen widths (a group
        count that does not divide them, a v1 downsampling unit that cannot grow)
        is repaired deterministically by :meth:`repair_block`. ``small_input=None``
        searches the stem variant too (parameter ``small_input``, only when the
        space declares both).
        """
        if small_input is None and len(self.small_input) > 1:
            small = bool(trial.suggest_categorical("small_input", [bool(v) for v in self.small_input]))
        else:
            small = self._context(small_input)
        names = [str(b) for b in self.unit_options]
        stem = trial.suggest_categorical("stem", list(self.stem_channels))
        cin, stages = stem, []
        for i, ss in enumerate(self.stages):
            p = STAGE_NAMES[i]
            cout = trial.suggest_categorical(f"{p}.channels", list(ss.channels))
            depth = trial.suggest_int(f"{p}.depth", ss.min_depth, ss.max_depth)
            blocks = []
            for j in range(depth):
                choice = Block.parse(trial.suggest_categorical(f"{p}.block{j}", names))
                blocks.append(self.repair_block(choice, Site(i, j, cin if j == 0 else cout, cout)))
            stages.append(Stage(cout, tuple(blocks)))
            cin = cout
        last = trial.suggest_categorical("last_conv", list(self.last_conv))
        return Arch(stem=stem, stages=tuple(stages), last_conv=last, num_classes=num_classes, small_input=small)

    def repair_block(self, block: Block, site: Site) -> Block:
        """``block`` if buildable at ``site``; else the closest buildable choice of the same unit
        type (largest smaller group count, nearest split), else the nearest v2 split."""
        valid = self.valid_blocks(site)
        if block in valid:
            return block
        same = [b for b in valid if b.unit == block.unit]
        if block.unit == "v1" and same:
            smaller = [b for b in same if b.groups < block.groups]
            return max(smaller, key=lambda b: b.groups) if smaller else min(same, key=lambda b: b.groups)
        if block.unit == "v2" and same:
            return min(same, key=lambda b: (abs(b.split - block.split), b.split))
        v2 = [b for b in valid if b.unit == "v2"]
        if v2:
            return min(v2, key=lambda b: (abs(b.split - 0.5), b.split))
        return valid[0]

    def params_from_arch(self, arch: Arch, *, small_input: bool | None = None) -> dict[str, Any]:
        """Optuna parameters that make :meth:`suggest` (with the same ``small_input``) return ``arch``
        (for enqueueing seeds): ``small_input=None`` makes the stem variant a parameter when the
        space declares both; a fixed variant is not one.

        Raises:
            ValueError: ``arch`` is not in the space, or its stem variant is not ``small_input``."""
        self.validate(arch)
        if small_input is not None and arch.small_input is not bool(small_input):
            raise ValueError(f"small_input: {arch} has small_input={arch.small_input}, but the search fixes "
                             f"small_input={bool(small_input)}; seed it into a search of its own stem variant")
        params: dict[str, Any] = {"stem": arch.stem, "last_conv": arch.last_conv}
        if small_input is None and len(self.small_input) > 1:
            params["small_input"] = arch.small_input
        for i, st in enumerate(arch.stages):
            p = STAGE_NAMES[i]
            params[f"{p}.channels"] = st.channels
            params[f"{p}.depth"] = st.depth
            for j, b in enumerate(st.blocks):
                params[f"{p}.block{j}"] = str(b)
        return params


@lru_cache(maxsize=65536)
def _valid_blocks(options: tuple[Block, ...], site: Site) -> tuple[Block, ...]:
    out = []
    for b in options:
        try:
            _check_block("block", site.with_block(b))
        except ValueError:
            continue
        out.append(b)
    return tuple(out)
