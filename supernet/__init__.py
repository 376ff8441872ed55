"""Every torch module of ShuffleNAS: units, the static ShuffleNet, the supernet."""

from .bn import recalibrate_bn
from .model import ShuffleNet
from .supernet import SuperNet, extract
from .units import ShuffleV1Unit, ShuffleV2Unit, channel_shuffle

__all__ = ["ShuffleNet", "SuperNet", "extract", "recalibrate_bn", "ShuffleV1Unit", "ShuffleV2Unit", "channel_shuffle"]
