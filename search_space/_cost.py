"""Analytic cost model: parameters, FLOPs (multiply-adds) and memory access cost.

Computed from an :class:`Arch` alone, without torch. Conventions:

* ``count_params``: every learnable tensor (conv weights, BN weight/bias, fc).
* ``count_flops``: multiply-adds of convolutions and the fc layer (the
  convention of the ShuffleNet papers and torchvision's ``GFLOPS`` field);
  BN, ReLU, pooling, add, concat and shuffle are not counted.
* ``count_mac``: memory access cost, ShuffleNet V2 (Ma et al. 2018, Sec. 2):
  for a 1x1 conv ``h*w*(c1+c2) + c1*c2``, i.e. every element of the input
  and output feature maps plus the weights. Extended here to every op, the
  element-wise ones included (guideline G4): a conv reads its input, writes
  its output and reads its weights; BN reads+writes the map (+2c params);
  ReLU reads+writes it; an add reads two maps and writes one; a concat
  reads its inputs and writes the output; a channel shuffle reads and writes
  the map; the v2 channel split is a view (0); pooling reads input, writes
  output; the fc reads input, weights and bias and writes logits.
"""

from __future__ import annotations

from ._arch import Arch, conv_out

__all__ = ["count_params", "count_flops", "count_mac"]


def _bn(c: int) -> int:
    return 2 * c


def count_params(arch: Arch) -> int:
    """Number of learnable parameters of ``ShuffleNet(arch)``."""
    n = 3 * 9 * arch.stem + _bn(arch.stem)
    for site in arch.sites():
        b, cin, ch = site.block, site.in_channels, site.channels
        if b.unit == "v2":
            br, left = ch["branch"], ch["left"]
            if site.stride == 2:
                n += 9 * cin + _bn(cin) + cin * left + _bn(left)  # branch1: dw, bn, 1x1, bn
                n += cin * br + _bn(br)
            else:
                n += br * br + _bn(br)
            n += 9 * br + _bn(br) + br * br + _bn(br)
        else:
            g1 = b.groups if site.first_grouped else 1
            mid, out = ch["mid"], ch["out"]
            n += (cin // g1) * mid + _bn(mid) + 9 * mid + _bn(mid) + (mid // b.groups) * out + _bn(out)
    c = arch.stages[-1].channels
    if arch.last_conv:
        n += c * arch.last_conv + _bn(arch.last_conv)
        c = arch.last_conv
    return n + c * arch.num_classes + arch.num_classes


def _walk(arch: Arch, input_size: int):
    """Yield (kind, **dims) for every op, in forward order."""
    h = input_size
    h1 = h if arch.small_input else conv_out(h)
    yield "conv", dict(hi=h, ho=h1, cin=3, cout=arch.stem, k=3, g=1)
    yield "bn", dict(h=h1, c=arch.stem)
    yield "relu", dict(h=h1, c=arch.stem)
    if not arch.small_input:
        h2 = conv_out(h1)
        yield "pool", dict(hi=h1, ho=h2, cin=arch.stem, cout=arch.stem)
        h1 = h2
    for site in arch.sites(input_size):
        b, cin, cout, ch = site.block, site.in_channels, site.out_channels, site.channels
        stride, h, ho = site.stride, site.in_size, site.out_size
        if b.unit == "v2":
            br, left = ch["branch"], ch["left"]
            if stride == 2:
                yield "conv", dict(hi=h, ho=ho, cin=cin, cout=cin, k=3, g=cin)
                yield "bn", dict(h=ho, c=cin)
                yield "conv", dict(hi=ho, ho=ho, cin=cin, cout=left, k=1, g=1)
                yield "bn", dict(h=ho, c=left)
                yield "relu", dict(h=ho, c=left)
                c_in2 = cin
            else:
                c_in2 = br
            yield "conv", dict(hi=h, ho=h, cin=c_in2, cout=br, k=1, g=1)
            yield "bn", dict(h=h, c=br)
            yield "relu", dict(h=h, c=br)
            yield "conv", dict(hi=h, ho=ho, cin=br, cout=br, k=3, g=br)
            yield "bn", dict(h=ho, c=br)
            yield "conv", dict(hi=ho, ho=ho, cin=br, cout=br, k=1, g=1)
            yield "bn", dict(h=ho, c=br)
            yield "relu", dict(h=ho, c=br)
            yield "concat", dict(h=ho, c=cout)
            yield "shuffle", dict(h=ho, c=cout)
        else:
            g1 = b.groups if site.first_grouped else 1
            mid, out = ch["mid"], ch["out"]
            yield "conv", dict(hi=h, ho=h, cin=cin, cout=mid, k=1, g=g1)
            yield "bn", dict(h=h, c=mid)
            yield "relu", dict(h=h, c=mid)
            if b.groups > 1:
                yield "shuffle", dict(h=h, c=mid)
            yield "conv", dict(hi=h, ho=ho, cin=mid, cout=mid, k=3, g=mid)
            yield "bn", dict(h=ho, c=mid)
            yield "conv", dict(hi=ho, ho=ho, cin=mid, cout=out, k=1, g=b.groups)
            yield "bn", dict(h=ho, c=out)
            if stride == 2:
                yield "pool", dict(hi=h, ho=ho, cin=cin, cout=cin)
                yield "relu", dict(h=ho, c=out)
                yield "concat", dict(h=ho, c=cout)
            else:
                yield "add", dict(h=ho, c=cout)
                yield "relu", dict(h=ho, c=cout)
    h = arch.spatial_sizes(input_size)[-1]
    c = arch.stages[-1].channels
    if arch.last_conv:
        yield "conv", dict(hi=h, ho=h, cin=c, cout=arch.last_conv, k=1, g=1)
        yield "bn", dict(h=h, c=arch.last_conv)
        yield "relu", dict(h=h, c=arch.last_conv)
        c = arch.last_conv
    yield "pool", dict(hi=h, ho=1, cin=c, cout=c)  # global average pool
    yield "fc", dict(cin=c, cout=arch.num_classes)


def count_flops(arch: Arch, input_size: int = 224) -> int:
    """Multiply-adds of all convolutions and the fc layer at ``input_size`` x ``input_size``."""
    arch.spatial_sizes(input_size)  # validates input_size
    total = 0
    for kind, d in _walk(arch, input_size):
        if kind == "conv":
            total += d["ho"] ** 2 * d["k"] ** 2 * (d["cin"] // d["g"]) * d["cout"]
        elif kind == "fc":
            total += d["cin"] * d["cout"]
    return total


def count_mac(arch: Arch, input_size: int = 224) -> int:
    """Memory access cost (elements read + written) as defined in the module docstring."""
    arch.spatial_sizes(input_size)
    total = 0
    for kind, d in _walk(arch, input_size):
        if kind == "conv":
            w = d["k"] ** 2 * (d["cin"] // d["g"]) * d["cout"]
            total += d["hi"] ** 2 * d["cin"] + d["ho"] ** 2 * d["cout"] + w
        elif kind == "bn":
            total += 2 * d["h"] ** 2 * d["c"] + 2 * d["c"]
        elif kind in ("relu", "shuffle", "concat"):
            total += 2 * d["h"] ** 2 * d["c"]
        elif kind == "add":
            total += 3 * d["h"] ** 2 * d["c"]
        elif kind == "pool":
            total += d["hi"] ** 2 * d["cin"] + d["ho"] ** 2 * d["cout"]
        elif kind == "fc":
            total += d["cin"] + d["cin"] * d["cout"] + 2 * d["cout"]
    return total
