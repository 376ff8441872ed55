"""``ShuffleNet(arch)``: the one static model class (export, retraining, latency).

Macro layout and attribute names are torchvision's ``ShuffleNetV2``
(``conv1``, ``maxpool``, ``stage2``-``stage4``, ``conv5``, ``fc``), so for any
pure-v2 arch with split 0.5, the standard stem and a last 1x1 conv, the
``state_dict`` loads into and from ``torchvision.models.ShuffleNetV2`` with
``strict=True``. A small-input arch uses a stride-1 ``conv1`` and an identity
``maxpool``; ``last_conv=0`` makes ``conv5`` an identity (ShuffleNet V1).
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from search_space import Arch

from .units import ShuffleV1Unit, make_unit

__all__ = ["ShuffleNet"]


class ShuffleNet(nn.Module):
    """A ShuffleNet V1/V2 network built from an :class:`~search_space.Arch`.

    Args:
        arch: the architecture (``Arch`` or its canonical string).
        unit_factory: builds each unit from ``(block, in_channels, out_channels, stride,
            first_grouped=...)``; default :func:`supernet.units.make_unit`. The supernet's
            structure-only templates pass a cache of units on the meta device.

    Raises:
        ValueError: ``arch`` is neither an ``Arch`` nor an arch string.
    """

    def __init__(self, arch: Arch | str, *, unit_factory: Callable[..., nn.Module] = make_unit) -> None:
        super().__init__()
        if isinstance(arch, str):
            arch = Arch.parse(arch)
        if not isinstance(arch, Arch):
            raise ValueError(f"arch: expected an Arch or an arch string, got {type(arch).__name__}")
        self.arch = arch
        stride = 1 if arch.small_input else 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, arch.stem, 3, stride, 1, bias=False),
            nn.BatchNorm2d(arch.stem),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.Identity() if arch.small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages: list[list[nn.Module]] = [[] for _ in arch.stages]
        for s in arch.sites():
            stages[s.stage].append(unit_factory(s.block, s.in_channels, s.out_channels, s.stride,
                                             first_grouped=s.first_grouped))
        self.stage2, self.stage3, self.stage4 = (nn.Sequential(*s) for s in stages)
        c = arch.stages[-1].channels
        if arch.last_conv:
            self.conv5 = nn.Sequential(
                nn.Conv2d(c, arch.last_conv, 1, 1, 0, bias=False),
                nn.BatchNorm2d(arch.last_conv),
                nn.ReLU(inplace=True),
            )
        else:
            self.conv5 = nn.Identity()
        self.fc = nn.Linear(arch.feature_channels, arch.num_classes)
        for m in self.modules():
            if isinstance(m, ShuffleV1Unit) and m.stride == 1:
                # zero-init the residual branch's last BN (Goyal et al. 2017): every V1 unit starts
                # as the identity; without it deep V1 stacks (no conv5) diverge at lr 0.05 here
                nn.init.zeros_(m.branch_main_2[3].weight)

    def forward_stem(self, x: Tensor) -> Tensor:
        """``conv1`` and ``maxpool``: (N, 3, H, W) -> (N, stem, H/s, W/s), s = 1 (small input) or 4."""
        return self.maxpool(self.conv1(x))

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """``conv5``, global average pool and ``fc`` (timm's ``forward_head``): stage 4's map
        (N, C, h, w) -> logits (N, num_classes), or the pooled features with ``pre_logits``."""
        x = self.conv5(x).mean([2, 3])
        return x if pre_logits else self.fc(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features before ``fc``: (N, 3, H, W) -> (N, feature_channels)."""
        x = self.stage4(self.stage3(self.stage2(self.forward_stem(x))))
        return self.forward_head(x, pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"arch={self.arch}"
