"""The ShuffleNet units: the only unit code in the project.

* :class:`ShuffleV2Unit`: ShuffleNet V2 unit (Ma et al., "ShuffleNet V2:
  Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018),
  with torchvision's ``InvertedResidual`` module layout (``branch1``,
  ``branch2``) so its ``state_dict`` keys are torchvision's, generalised to a
  channel-split ratio (0.5 in the paper).
* :class:`ShuffleV1Unit`: ShuffleNet V1 unit (Zhang et al., "ShuffleNet: An
  Extremely Efficient Convolutional Neural Network for Mobile Devices", CVPR
  2018, Fig. 2): grouped 1x1 conv -> BN -> ReLU -> channel shuffle ->
  depthwise 3x3 -> BN -> grouped 1x1 -> BN; stride 1 adds the identity then
  ReLU; stride 2 concatenates a 3x3 average-pooled shortcut with the ReLU'd
  branch. The first pointwise conv of stage 2 is not grouped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from search_space import Block, block_channels

__all__ = ["channel_shuffle", "ShuffleV1Unit", "ShuffleV2Unit", "make_unit"]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Channel shuffle (Zhang et al. 2018): (N, g*k, H, W) -> interleave the g groups."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit; ``split`` = share of output channels made by ``branch2``."""

    def __init__(self, inp: int, oup: int, stride: int, *, split: float = 0.5) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride: must be 1 or 2, got {stride}")
        if stride == 1 and inp != oup:
            raise ValueError(f"a stride-1 v2 unit needs inp == oup, got {inp} and {oup}")
        self.stride = stride
        ch = block_channels(inp, oup, Block.v2(split), stride)
        br, left = ch["branch"], ch["left"]
        self.left = left
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, left, 1, 1, 0, bias=False),
                nn.BatchNorm2d(left),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else br, br, 1, 1, 0, bias=False),
            nn.BatchNorm2d(br),
            nn.ReLU(inplace=True),
            nn.Conv2d(br, br, 3, stride, 1, groups=br, bias=False),
            nn.BatchNorm2d(br),
            nn.Conv2d(br, br, 1, 1, 0, bias=False),
            nn.BatchNorm2d(br),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x[:, : self.left], x[:, self.left :]
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleV1Unit(nn.Module):
    """ShuffleNet V1 unit with ``groups`` groups; ``first_grouped=False`` for the first unit of stage 2."""

    def __init__(self, inp: int, oup: int, stride: int, *, groups: int, first_grouped: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride: must be 1 or 2, got {stride}")
        if stride == 1 and inp != oup:
            raise ValueError(f"a stride-1 v1 unit needs inp == oup, got {inp} and {oup}")
        self.stride, self.groups = stride, groups
        ch = block_channels(inp, oup, Block.v1(groups), stride)
        mid, out = ch["mid"], ch["out"]
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, 1, 0, groups=groups if first_grouped else 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.Conv2d(mid, out, 1, 1, 0, groups=groups, bias=False),
            nn.BatchNorm2d(out),
        )
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.branch_main_1(x)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.branch_main_2(y)
        if self.stride == 1:
            return torch.relu(y + x)
        return torch.cat((self.branch_proj(x), torch.relu(y)), dim=1)


def make_unit(block: Block, inp: int, oup: int, stride: int, *, first_grouped: bool = True) -> nn.Module:
    """Build the unit described by ``block``."""
    if block.unit == "v2":
        return ShuffleV2Unit(inp, oup, stride, split=block.split)
    return ShuffleV1Unit(inp, oup, stride, groups=block.groups, first_grouped=first_grouped)
