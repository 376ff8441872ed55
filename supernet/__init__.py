"""Every torch module of ShuffleNAS: units, the static ShuffleNet, the supernet."""

from .model import ShuffleNet
from .units import ShuffleV1Unit, ShuffleV2Unit, channel_shuffle

__all__ = ["ShuffleNet", "ShuffleV1Unit", "ShuffleV2Unit", "channel_shuffle"]
