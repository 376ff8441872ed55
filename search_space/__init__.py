"""The ShuffleNet V1/V2 architecture space, as data (no torch import)."""

from ._arch import STAGE_NAMES, Arch, Block, Site, Stage, block_channels, conv_out, spatial_sizes
from ._cost import count_flops, count_mac, count_params
from ._presets import get_preset, list_presets, register_preset
from ._space import SearchSpace
from ._task import Task

__all__ = [
    "Arch",
    "Block",
    "Stage",
    "Site",
    "SearchSpace",
    "Task",
    "get_preset",
    "list_presets",
    "register_preset",
    "count_params",
    "count_flops",
    "count_mac",
    "spatial_sizes",
    "block_channels",
    "conv_out",
    "STAGE_NAMES",
]
