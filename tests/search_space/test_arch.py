import numpy as np
import pytest
import yaml

from search_space import Arch, Block, SearchSpace, Stage, get_preset, list_presets

SPACE = SearchSpace.load("default")


def _random_archs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [SPACE.sample(rng, num_classes=int(rng.integers(2, 1001)), small_input=bool(rng.integers(2))) for _ in range(n)]


def test_string_and_dict_round_trip_1000_random_archs():
    archs = _random_archs(1000)
    for a in archs:
        s = str(a)
        assert Arch.parse(s) == a
        assert str(Arch.parse(s)) == s
        assert Arch.from_dict(a.to_dict()) == a
        assert Arch.from_dict(yaml.safe_load(yaml.safe_dump(a.to_dict()))) == a
    assert len({str(a) for a in archs}) == 1000  # the string is a usable dedup key


def test_yaml_round_trip_and_string_key():
    a = _random_archs(1, seed=3)[0]
    text = a.to_yaml()
    assert yaml.safe_load(text)["arch"] == str(a)
    assert Arch.from_yaml(text) == a


def test_canonical_string_of_torchvision_x1_0():
    assert str(get_preset("shufflenet_v2_x1_0")) == "stem24|116:v2s0.5x4|232:v2s0.5x8|464:v2s0.5x4|conv1024|cls1000"
    assert str(get_preset("shufflenet_v1_g3", 10, small_input=True)) == (
        "stem24:small|240:v1g3x4|480:v1g3x8|960:v1g3x4|conv0|cls10"
    )


def test_uncompressed_runs_parse_to_the_canonical_form():
    a = Arch.parse("stem24|48:v2s0.5,v2s0.5,v1g1|96:v2s0.5|192:v2s0.25x2|conv0|cls10")
    assert str(a) == "stem24|48:v2s0.5x2,v1g1|96:v2s0.5|192:v2s0.25x2|conv0|cls10"
    assert a.depths == (3, 1, 2) and a.widths == (48, 96, 192)


@pytest.mark.parametrize(
    "s, field",
    [
        ("", "arch string"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv0", "arch string"),
        ("stemX|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv0|cls10", "stem"),
        ("stem24|48|96:v2s0.5|192:v2s0.5|conv0|cls10", "stages[0]"),
        ("stem24|48:v3g2|96:v2s0.5|192:v2s0.5|conv0|cls10", "unknown unit type"),
        ("stem24|48:v2s0.5|96:v1gX|192:v2s0.5|conv0|cls10", "stages[1].blocks[0]"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s1.5|conv0|cls10", "split"),
        ("stem24|48:v2s0.5|96:v2s0.5,|192:v2s0.5|conv0|cls10", "stages[1].blocks"),
        ("stem24|48:v2s0.5|96:v2s0.5x0|192:v2s0.5|conv0|cls10", "repeat count"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5|c1024|cls10", "last_conv"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv0|classes10", "num_classes"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv0|cls0", "num_classes"),
        # group count that does not divide the channels it acts on (bottleneck 96/4=24 ok, 3 | 24, but 5 does not)
        ("stem24|48:v2s0.5|96:v2s0.5|192:v1g5|conv0|cls10", "groups=5"),
        # v1 downsampling unit that cannot grow (out <= in)
        ("stem24|48:v2s0.5|96:v2s0.5|96:v1g1|conv0|cls10", "stages[2].blocks[0]"),
        # split that does not give whole channels: 98 * 0.25
        ("stem24|48:v2s0.5|98:v2s0.25|192:v2s0.5|conv0|cls10", "split=0.25"),
    ],
)
def test_malformed_strings_name_the_field(s, field):
    with pytest.raises(ValueError, match=None) as e:
        Arch.parse(s)
    assert field in str(e.value), str(e.value)


def test_unknown_unit_type_in_dict_and_block():
    with pytest.raises(ValueError, match="unit"):
        Block("v3", groups=2)
    d = get_preset("shufflenet_v2_x0_5").to_dict()
    d["stages"][1]["blocks"][2] = {"unit": "mbconv", "expand": 6}
    with pytest.raises(ValueError, match=r"stages\[1\]\.blocks\[2\]\.unit"):
        Arch.from_dict(d)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(width_mult=1.0), "width_mult"),
        (lambda d: d["stem"].update(stride=2), "stride"),
        (lambda d: d["stages"][0].update(se=True), "stages[0]"),
        (lambda d: d["stages"][2]["blocks"][0].update(kernel=5), "stages[2].blocks[0]"),
        (lambda d: d["stages"][0]["blocks"][0].update(groups=2), "stages[0].blocks[0]"),
        (lambda d: d["stages"].pop(), "stages"),
    ],
)
def test_unknown_yaml_keys_name_the_field(mutate, field):
    d = get_preset("shufflenet_v2_x1_0").to_dict()
    mutate(d)
    with pytest.raises(ValueError) as e:
        Arch.from_dict(yaml.safe_load(yaml.safe_dump(d)))
    assert field in str(e.value), str(e.value)


def test_yaml_string_disagreeing_with_fields_is_refused():
    a = get_preset("shufflenet_v2_x0_5")
    text = a.to_yaml().replace("conv1024|cls1000", "conv2048|cls1000", 1)
    with pytest.raises(ValueError, match="disagrees"):
        Arch.from_yaml(text)


def test_arch_constructor_checks_types():
    with pytest.raises(ValueError, match="stages"):
        Arch(stem=24, stages=(Stage(48, (Block.v2(),)),))
    with pytest.raises(ValueError, match=r"stages\[1\].depth"):
        Arch(stem=24, stages=(Stage(48, (Block.v2(),)), Stage(96, ()), Stage(192, (Block.v2(),))))
    with pytest.raises(ValueError, match="small_input"):
        get_preset("shufflenet_v2_x0_5").replace(small_input="yes")


def test_presets_registry():
    assert list_presets() == sorted(
        [f"shufflenet_v2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")]
        + [f"shufflenet_v1_g{g}" for g in (1, 2, 3, 4, 8)]
    )
    with pytest.raises(ValueError, match="unknown preset 'resnet50'"):
        get_preset("resnet50")
    from search_space import register_preset

    with pytest.raises(ValueError, match="already registered"):
        register_preset("shufflenet_v2_x1_0")(lambda **kw: None)
    a = get_preset("shufflenet_v1_g8", num_classes=10)
    assert a.num_classes == 10 and a.last_conv == 0 and a.widths == (384, 768, 1536) and a.depths == (4, 8, 4)
