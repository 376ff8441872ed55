"""The ShuffleNet V1/V2 architecture space, as data (no torch import)."""

from ._arch import STAGE_NAMES, Arch, Block, Stage, block_channels
from ._cost import count_flops, count_mac, count_params, spatial_sizes
from ._presets import get_preset, list_presets, register_preset
from ._space import SearchSpace

__all__ = [
    "Arch",
    "Block",
    "Stage",
    "SearchSpace",
    "get_preset",
    "list_presets",
    "register_preset",
    "count_params",
    "count_flops",
    "count_mac",
    "spatial_sizes",
    "block_channels",
    "STAGE_NAMES",
]
