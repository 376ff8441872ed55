"""Arch.sites: the one place block geometry (stride, grouped first conv, channels, map sides) is derived."""

import pytest

from search_space import Arch, Block, SearchSpace, Site, get_preset, spatial_sizes


def test_sites_of_shufflenet_v1_g3_at_224():
    arch = get_preset("shufflenet_v1_g3")  # stem24|240:v1g3x4|480:v1g3x8|960:v1g3x4|conv0|cls1000
    sites = arch.sites(224)
    assert len(sites) == 16 and [s.stage for s in sites] == [0] * 4 + [1] * 8 + [2] * 4
    assert [s.stride for s in sites] == [2, 1, 1, 1] + [2] + [1] * 7 + [2, 1, 1, 1]
    # only the very first block of stage 2 has an ungrouped first 1x1 conv (ShuffleNet V1 Sec. 3.3)
    assert [s.first_grouped for s in sites] == [False] + [True] * 15
    assert [(s.in_channels, s.out_channels) for s in sites[:2]] == [(24, 240), (240, 240)]
    assert [(s.in_channels, s.out_channels) for s in (sites[4], sites[12])] == [(240, 480), (480, 960)]
    assert [(s.in_size, s.out_size) for s in (sites[0], sites[1], sites[4], sites[12], sites[15])] == [
        (56, 28), (28, 28), (28, 14), (14, 7), (7, 7)]
    assert sites[0].key == "v1g3|24|240|2|56|0" and sites[5].key == "v1g3|480|480|1|14|1"
    assert sites[0].channels == {"mid": 60, "out": 216}  # 240 - 24: the pooled shortcut is concatenated
    assert arch.spatial_sizes(224) == spatial_sizes(arch, 224) == [56, 28, 14, 7]


def test_small_stem_sites_keep_the_input_side():
    arch = Arch.parse("stem24:small|48:v2s0.5,v1g2|96:v2s0.25|192:v2s0.75|conv0|cls10")
    assert arch.spatial_sizes(32) == [32, 16, 8, 4]
    assert [(s.in_size, s.out_size, s.key) for s in arch.sites(32)] == [
        (32, 16, "v2s0.5|24|48|2|32|0"), (16, 16, "v1g2|48|48|1|16|1"), (16, 8, "v2s0.25|48|96|2|16|1"),
        (8, 4, "v2s0.75|96|192|2|8|1")]
    assert arch.sites()[0].in_size is None  # no input size: geometry without map sides


def test_a_site_without_block_or_size_has_no_key_and_bad_sizes_are_named():
    with pytest.raises(ValueError, match="site key: stage 1 block 0 needs a block and an input size"):
        _ = Site(1, 0, 96, 192).key
    with pytest.raises(ValueError, match="input_size: must be a positive integer, got 0"):
        get_preset("shufflenet_v2_x1_0").sites(0)


def test_the_space_answers_per_site():
    space = SearchSpace.load("default")
    # stage 2's first block reads the 24-channel stem: no V1 unit whose group count must divide 24 is refused
    first = space.valid_blocks(Site(0, 0, 24, 240))
    later = space.valid_blocks(Site(1, 0, 240, 480))
    assert Block.v1(8) in later and Block.v1(3) in first
    assert space.valid_blocks(Site(1, 1, 232, 232)) == tuple(
        b for b in space.unit_options if b.unit == "v2" or b.groups in (1, 2))  # 58-channel bottleneck
