import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from search_space import Arch, SearchSpace, count_flops, count_mac, count_params, get_preset, list_presets
from supernet import ShuffleNet, ShuffleV1Unit, ShuffleV2Unit, channel_shuffle
from tests.helpers import randomize_bn

SPACE = SearchSpace.load("default")
TV = {
    "0_5": 1_366_792,
    "1_0": 2_278_604,
    "1_5": 3_503_624,
    "2_0": 7_393_996,
}


@pytest.mark.parametrize("width", list(TV))
def test_torchvision_networks_are_recovered_exactly(width):
    name = f"shufflenet_v2_x{width}"
    arch = get_preset(name)
    assert SPACE.contains(arch)
    torch.manual_seed(0)
    tv = randomize_bn(getattr(torchvision.models, name)(weights=None), 1, 0.1).eval()
    ours = ShuffleNet(arch).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in tv.parameters()) == TV[width] == count_params(arch)
    assert list(ours.state_dict()) == list(tv.state_dict())
    assert [type(m).__name__ for _, m in ours.named_modules()][1:] == [
        "Sequential" if type(m).__name__ == "Sequential" else type(m).__name__.replace("InvertedResidual", "ShuffleV2Unit")
        for _, m in tv.named_modules()
    ][1:]
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=0)
    # and back: our weights load into a fresh torchvision model
    ours2 = randomize_bn(ShuffleNet(arch), 3, 0.1).eval()
    tv2 = getattr(torchvision.models, name)(weights=None).eval()
    tv2.load_state_dict(ours2.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(tv2(x), ours2(x), atol=1e-5, rtol=0)


def _hook_flops(model: nn.Module, input_size: int) -> int:
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def fc_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hs = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hs += [m.register_forward_hook(fc_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, input_size, input_size))
    for h in hs:
        h.remove()
    return total


def _cases():
    rng = np.random.default_rng(123)
    cases = [(get_preset(n, 10), 64) for n in list_presets()]
    cases += [(get_preset(n, 1000), 224) for n in ("shufflenet_v2_x1_0", "shufflenet_v1_g3")]
    for k in range(110):
        small = bool(k % 2)
        cases.append((SPACE.sample(rng, num_classes=int(rng.integers(2, 200)), small_input=small), 32 if small else 65))
    return cases


def test_count_params_and_flops_match_the_built_model():
    cases = _cases()
    assert len(cases) >= 110
    for arch, size in cases:
        m = ShuffleNet(arch)
        assert count_params(arch) == sum(p.numel() for p in m.parameters()), str(arch)
        assert count_flops(arch, size) == _hook_flops(m, size), str(arch)


def test_published_complexities():
    # torchvision / ShuffleNet V2 paper and ShuffleNet V1 paper (Table 1): within 2%
    published = {
        "shufflenet_v2_x0_5": 41e6, "shufflenet_v2_x1_0": 146e6, "shufflenet_v2_x1_5": 299e6,
        "shufflenet_v2_x2_0": 591e6, "shufflenet_v1_g1": 143e6, "shufflenet_v1_g2": 140e6,
        "shufflenet_v1_g3": 137e6, "shufflenet_v1_g4": 133e6, "shufflenet_v1_g8": 137e6,
    }
    for name, ref in published.items():
        assert abs(count_flops(get_preset(name)) / ref - 1) < 0.02, name
    assert count_flops(get_preset("shufflenet_v2_x1_0")) == 144_907_992


def test_count_mac_per_unit_matches_the_paper_formula():
    """Adding one stride-1 unit adds exactly the hand-derived memory access cost."""
    h, c = 7, 464  # 224 input: stage4 map is 7x7
    base = "stem24|116:v2s0.5|232:v2s0.5|{}|conv1024|cls1000"
    one = Arch.parse(base.format("464:v2s0.5"))
    two = Arch.parse(base.format("464:v2s0.5x2"))
    b = c // 2
    hw = h * h
    pw = hw * (b + b) + b * b  # 1x1 conv: h*w*(c1+c2) + c1*c2 (ShuffleNet V2, Sec. 2)
    dw = hw * b * 2 + 9 * b
    bn = 2 * hw * b + 2 * b
    relu = 2 * hw * b
    v2 = pw + bn + relu + dw + bn + pw + bn + relu + 2 * hw * c + 2 * hw * c  # + concat + shuffle
    assert count_mac(two) - count_mac(one) == v2
    one = Arch.parse(base.format("464:v1g4").replace("|conv1024", "|conv0"))
    two = Arch.parse(base.format("464:v1g4x2").replace("|conv1024", "|conv0"))
    m, g = c // 4, 4
    v1 = (hw * (c + m) + c * m // g) + (2 * hw * m + 2 * m) + 2 * hw * m + 2 * hw * m  # gconv, bn, relu, shuffle
    v1 += (hw * m * 2 + 9 * m) + (2 * hw * m + 2 * m) + (hw * (m + c) + m * c // g) + (2 * hw * c + 2 * c)
    v1 += 3 * hw * c + 2 * hw * c  # add, relu
    assert count_mac(two) - count_mac(one) == v1
    # guideline G2: at equal FLOPs, more groups cost more memory access
    g1, g8 = get_preset("shufflenet_v1_g1"), get_preset("shufflenet_v1_g8")
    assert count_mac(g8) > count_mac(g1)


def test_cost_model_rejects_bad_input_size():
    with pytest.raises(ValueError, match="input_size"):
        count_flops(get_preset("shufflenet_v2_x0_5"), 0)


@pytest.mark.parametrize("name", list_presets())
def test_presets_run_small_input_and_mixed(name):
    arch = get_preset(name, 10, small_input=True)
    m = ShuffleNet(arch).eval()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(m.maxpool, nn.Identity) and m.conv1[0].stride == (1, 1)


def test_v1_units_follow_the_paper():
    arch = get_preset("shufflenet_v1_g3")
    m = ShuffleNet(arch)
    first = m.stage2[0]
    assert isinstance(first, ShuffleV1Unit) and isinstance(m.conv5, nn.Identity)
    assert first.branch_main_1[0].groups == 1  # stage-2 first pointwise conv is not grouped
    assert first.branch_main_2[2].out_channels == 240 - 24  # concat with pooled shortcut
    assert first.branch_main_1[0].out_channels == 60  # bottleneck = out / 4
    assert m.stage3[1].branch_main_1[0].groups == 3 and m.stage3[1].branch_main_2[2].groups == 3
    assert isinstance(first.branch_proj, nn.AvgPool2d)


def test_mixed_network_and_split_ratio():
    arch = Arch.parse("stem24:small|48:v1g1,v2s0.25|96:v2s0.75,v1g4x2|192:v1g2,v2s0.5|conv0|cls7")
    m = ShuffleNet(arch).eval()
    assert isinstance(m.stage2[1], ShuffleV2Unit) and m.stage2[1].left == 36
    assert m(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    assert count_params(arch) == sum(p.numel() for p in m.parameters())
    assert str(ShuffleNet(str(arch)).arch) == str(arch)


def test_channel_shuffle_is_the_paper_permutation():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups [0,1] [2,3] [4,5] -> take one channel of each group in turn
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
