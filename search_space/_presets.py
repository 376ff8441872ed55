"""Registry of hand-designed networks expressed as points of the space.

* ``shufflenet_v2_x{0_5,1_0,1_5,2_0}``: torchvision's ShuffleNetV2 (Ma et al.,
  ECCV 2018), stem 24, repeats 4/8/4, split 0.5.
* ``shufflenet_v1_g{1,2,3,4,8}``: ShuffleNet V1 1x (Zhang et al., CVPR 2018,
  Table 1), stem 24, repeats 4/8/4, bottleneck = out/4, no conv5.
"""

from __future__ import annotations

from typing import Callable

from ._arch import Arch, Block, Stage

__all__ = ["get_preset", "list_presets", "register_preset"]

_PRESETS: dict[str, Callable[..., Arch]] = {}


def register_preset(name: str) -> Callable[[Callable[..., Arch]], Callable[..., Arch]]:
    """Decorator adding a preset builder; duplicate names are refused (torchvision ``_api``)."""

    def wrap(fn: Callable[..., Arch]) -> Callable[..., Arch]:
        if name in _PRESETS:
            raise ValueError(f"preset: {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return wrap


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str, num_classes: int = 1000, *, small_input: bool = False) -> Arch:
    """The preset ``name`` as an :class:`Arch` (``ValueError`` lists the known names)."""
    if name not in _PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; known presets: {list_presets()}")
    return _PRESETS[name](num_classes=num_classes, small_input=small_input)


_REPEATS = (4, 8, 4)


def _uniform(channels, block: Block, last_conv: int, num_classes: int, small_input: bool) -> Arch:
    stages = tuple(Stage(c, (block,) * n) for c, n in zip(channels, _REPEATS))
    return Arch(stem=24, stages=stages, last_conv=last_conv, num_classes=num_classes, small_input=small_input)


_V2 = {  # torchvision shufflenetv2.py: stages_out_channels
    "0_5": ((48, 96, 192), 1024),
    "1_0": ((116, 232, 464), 1024),
    "1_5": ((176, 352, 704), 1024),
    "2_0": ((244, 488, 976), 2048),
}
_V1 = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}


def _make_v2(ch, last):
    return lambda *, num_classes, small_input: _uniform(ch, Block.v2(0.5), last, num_classes, small_input)


def _make_v1(g, ch):
    return lambda *, num_classes, small_input: _uniform(ch, Block.v1(g), 0, num_classes, small_input)


for _w, (_ch, _last) in _V2.items():
    register_preset(f"shufflenet_v2_x{_w}")(_make_v2(_ch, _last))
for _g, _ch in _V1.items():
    register_preset(f"shufflenet_v1_g{_g}")(_make_v1(_g, _ch))
