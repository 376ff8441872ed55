"""Path samplers for single-path supernet training: which architecture each step trains.

A sampler is called once per training step as ``sampler(rng, step) -> Arch``:
``rng`` is the epoch's ``numpy.random.Generator`` (seeded by ``(seed, epoch)``
in :func:`supernet.train.train_supernet`) and ``step`` the global step number,
so a resumed run draws exactly the paths of an uninterrupted one. ``name``
identifies the sampler in the checkpoint's config.

* :class:`UniformSampler`: SPOS (Guo et al., ECCV 2020, section 3.2): every
  decision uniform among its buildable choices (the stem variant too when
  ``small_input=None``), optionally inside a FLOPs
  window (SPOS section 3.3 samples within a FLOPs range).
* :class:`FairSampler`: FairNAS strict fairness (Chu et al., ICCV 2021,
  section 3.2): in every cycle of ``m`` steps (``m`` = number of unit
  choices) each unit choice is drawn exactly once at every block position,
  from an independent permutation per position. FairNAS accumulates the ``m``
  paths' gradients into one update; here each path is its own step (single
  path, as SPOS), so only the sampling is strictly fair. Widths, depths,
  stem (and its variant when ``small_input=None``) and last conv stay uniform; a choice that is not buildable at the
  drawn widths (a group count that does not divide them, a V1 unit asked to
  narrow the network) is replaced by :meth:`SearchSpace.repair_block`, and
  the sampler prefers widths at which the stage's planned choices are all
  buildable.
"""

from __future__ import annotations

import math

import numpy as np

from search_space import Arch, SearchSpace, Site, Stage, Task, count_flops

__all__ = ["UniformSampler", "FairSampler", "make_path_sampler", "SAMPLERS", "FAMILIES", "unit_family", "in_family"]

SAMPLERS = ("uniform", "fair")
FAMILIES = ("v1", "v2")


def unit_family(arch: Arch) -> str:
    """The unit family most of ``arch``'s blocks belong to: ``"v1"`` (ShuffleNet V1 units) or
    ``"v2"``; a tie goes to ``"v2"``. The split of few-shot NAS by unit family (Zhao et al.,
    "Few-shot Neural Architecture Search", ICML 2021, section 3: one sub-supernet per part
    of the space) uses it."""
    blocks = [b for st in arch.stages for b in st.blocks]
    return "v1" if 2 * sum(b.unit == "v1" for b in blocks) > len(blocks) else "v2"


def in_family(sample, family: str):
    """``sample`` restricted to architectures of ``family`` (:func:`unit_family`) by rejection.

    Raises:
        ValueError: an unknown family; (when called) none found in 10,000 draws.
    """
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {list(FAMILIES)}, got {family!r}")

    def restricted(rng: np.random.Generator, step: int = 0) -> Arch:
        for _ in range(10_000):
            a = sample(rng, step)
            if unit_family(a) == family:
                return a
        raise ValueError(f"family: no {family} architecture in 10,000 draws of the sampler")

    return restricted


class UniformSampler:
    """SPOS uniform path sampling, optionally restricted to ``[flops_min, flops_max]`` MFLOPs.

    Raises:
        ValueError: (at construction) no architecture falls in the FLOPs window
            after 10,000 draws.
    """

    name = "uniform"

    def __init__(self, space: SearchSpace, task: Task, *, flops_min: float | None = None,
                 flops_max: float | None = None, seed: int = 0) -> None:
        self.space, self.task = space, task
        self.flops_min, self.flops_max = flops_min, flops_max
        self._lo = -math.inf if flops_min is None else flops_min * 1e6
        self._hi = math.inf if flops_max is None else flops_max * 1e6
        if flops_min is not None or flops_max is not None:
            self(np.random.default_rng(seed), 0)  # fail now, not mid-epoch

    def __call__(self, rng: np.random.Generator, step: int = 0) -> Arch:
        windowed = self.flops_min is not None or self.flops_max is not None
        for _ in range(10_000):
            a = self.space.sample(rng, num_classes=self.task.num_classes, small_input=self.task.small_input)
            if not windowed or self._lo <= count_flops(a, self.task.image_size) <= self._hi:
                return a
        raise ValueError(
            f"flops window: no architecture of space {self.space.name!r} found in "
            f"[{self.flops_min}, {self.flops_max}] MFLOPs at {self.task.image_size}x{self.task.image_size} after 10,000 draws"
        )


class FairSampler:
    """FairNAS strict-fairness sampling of unit choices per block position (see module docstring).

    Args:
        space: the search space; its ``unit_options`` are the ``m`` choices.
        task: classes and stem variant of the paths (``small_input=None``: drawn per path).
        seed: seeds the per-cycle permutations (cycle c uses ``default_rng([seed, c])``).
    """

    name = "fair"

    def __init__(self, space: SearchSpace, task: Task, *, seed: int = 0) -> None:
        self.space, self.task, self.seed = space, task, seed
        self.options = space.unit_options
        self.positions = [(i, j) for i, ss in enumerate(space.stages) for j in range(ss.max_depth)]

    @property
    def cycle(self) -> int:
        """Steps per fairness cycle (the number of unit choices)."""
        return len(self.options)

    def plan(self, step: int) -> dict[tuple[int, int], object]:
        """The unit choice planned at every ``(stage, block)`` position for ``step`` (pure)."""
        c, k = divmod(step, self.cycle)
        g = np.random.default_rng([self.seed, c])
        return {pos: self.options[int(g.permutation(self.cycle)[k])] for pos in self.positions}

    def __call__(self, rng: np.random.Generator, step: int = 0) -> Arch:
        space, plan = self.space, self.plan(step)
        small = space.draw_stem_variant(rng, self.task.small_input)
        stem = int(rng.choice(space.stem_channels))
        cin, stages = stem, []
        for i, ss in enumerate(space.stages):
            depth = int(rng.integers(ss.min_depth, ss.max_depth + 1))
            fits = [c for c in ss.channels if all(self._buildable(plan[(i, j)], cin, c, i, j) for j in range(depth))]
            cout = int(rng.choice(fits or list(ss.channels)))
            blocks = []
            for j in range(depth):
                blocks.append(space.repair_block(plan[(i, j)], Site(i, j, cin if j == 0 else cout, cout)))
            stages.append(Stage(cout, tuple(blocks)))
            cin = cout
        last = int(rng.choice(space.last_conv))
        return Arch(stem=stem, stages=tuple(stages), last_conv=last, num_classes=self.task.num_classes,
                    small_input=small)

    def _buildable(self, block, cin: int, cout: int, i: int, j: int) -> bool:
        return block in self.space.valid_blocks(Site(i, j, cin if j == 0 else cout, cout))


def make_path_sampler(kind: str, space: SearchSpace, task: Task, *, seed: int = 0, flops_min: float | None = None,
                      flops_max: float | None = None):
    """The sampler named ``kind`` (``uniform`` or ``fair``) of ``task``'s paths (the FLOPs window
    is in MFLOPs at ``task.image_size``).

    Raises:
        ValueError: unknown ``kind``; a FLOPs window with ``fair`` (not supported).
    """
    if kind == "uniform":
        return UniformSampler(space, task, flops_min=flops_min, flops_max=flops_max, seed=seed)
    if kind == "fair":
        if flops_min is not None or flops_max is not None:
            raise ValueError("sampler: the fair sampler does not take a FLOPs window; use 'uniform'")
        return FairSampler(space, task, seed=seed)
    raise ValueError(f"sampler: unknown sampler {kind!r}; available: {list(SAMPLERS)}")
