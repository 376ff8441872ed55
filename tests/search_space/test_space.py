import itertools

import numpy as np
import optuna
import pytest
import yaml

from search_space import Arch, Block, SearchSpace, Site, Stage, get_preset, list_presets

SPACE = SearchSpace.load("default")

TINY = {
    "stem": {"channels": [8, 16], "small_input": [True]},
    "stages": [
        {"depth": [1, 2], "channels": [16, 24]},
        {"depth": [1, 3], "channels": [24, 48]},
        {"depth": [1, 1], "channels": [48]},
    ],
    "units": {"v1": {"groups": [1, 2, 3]}, "v2": {"split": [0.25, 0.5]}},
    "last_conv": [0, 64],
}


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_is_in_the_default_space(name):
    assert SPACE.contains(get_preset(name))
    assert SPACE.contains(get_preset(name, 10, small_input=True))


def test_default_space_goes_1_5x_deeper_than_baselines():
    assert [s.max_depth for s in SPACE.stages] >= [6, 12, 6]
    assert set(SPACE.groups) >= {1, 2, 3, 4, 8} and set(SPACE.splits) >= {0.25, 0.5, 0.75}


def _enumerate(space):
    """Brute force: every arch of a tiny space, by trying every combination."""
    out = set()
    opts = space.unit_options
    for stem, last in itertools.product(space.stem_channels, space.last_conv):
        per_stage = []
        for ss in space.stages:
            cand = []
            for c in ss.channels:
                for d in range(ss.min_depth, ss.max_depth + 1):
                    for blocks in itertools.product(opts, repeat=d):
                        cand.append(Stage(c, blocks))
            per_stage.append(cand)
        for stages in itertools.product(*per_stage):
            try:
                out.add(Arch(stem=stem, stages=stages, last_conv=last, num_classes=10, small_input=True))
            except ValueError:
                pass
    return out


def test_size_is_exact_on_a_tiny_space():
    tiny = SearchSpace.from_dict(TINY)
    archs = _enumerate(tiny)
    assert tiny.size() == len(archs) == 111600
    assert all(tiny.contains(a) for a in archs)
    # sampling covers only members
    rng = np.random.default_rng(0)
    assert all(tiny.sample(rng, num_classes=10) in archs for _ in range(300))


def test_default_space_size_is_an_exact_int():
    n = SPACE.size()
    assert isinstance(n, int) and n == 1055173606080367980572028


def test_seeded_sampling_is_deterministic_and_always_valid():
    a = [str(SPACE.sample(np.random.default_rng(7))) for _ in range(3)]
    assert len(set(a)) == 1
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    s1 = [SPACE.sample(rng1, num_classes=10, small_input=True) for _ in range(200)]
    s2 = [SPACE.sample(rng2, num_classes=10, small_input=True) for _ in range(200)]
    assert s1 == s2
    assert all(SPACE.contains(a) for a in s1)
    assert len({str(a) for a in s1}) == 200
    with pytest.raises(TypeError, match="Generator"):
        SPACE.sample(7)


def test_sampling_reaches_every_choice():
    rng = np.random.default_rng(0)
    archs = [SPACE.sample(rng) for _ in range(400)]
    blocks = {str(b) for a in archs for st in a.stages for b in st.blocks}
    assert blocks == {str(b) for b in SPACE.unit_options}
    for i, ss in enumerate(SPACE.stages):
        assert {a.stages[i].channels for a in archs} == set(ss.channels)
        assert {a.stages[i].depth for a in archs} == set(range(ss.min_depth, ss.max_depth + 1))


@pytest.mark.parametrize(
    "arch, field",
    [
        ("stem32|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv1024|cls10", "stem"),
        ("stem24|50:v2s0.5|96:v2s0.5|192:v2s0.5|conv1024|cls10", "stages[0].channels"),
        ("stem24|48:v2s0.5x7|96:v2s0.5|192:v2s0.5|conv1024|cls10", "stages[0].depth"),
        ("stem24|48:v2s0.5|96:v2s0.5x13|192:v2s0.5|conv1024|cls10", "stages[1].depth"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v1g6|conv1024|cls10", "stages[2].blocks[0].groups"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5,v2s0.125|conv1024|cls10", "stages[2].blocks[1].split"),
        ("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv512|cls10", "last_conv"),
    ],
)
def test_validate_names_the_offending_field(arch, field):
    a = Arch.parse(arch)
    with pytest.raises(ValueError) as e:
        SPACE.validate(a)
    assert field in str(e.value) and not SPACE.contains(a)


def test_validate_refuses_a_disallowed_input_variant_and_unit_type():
    only_small = SearchSpace.from_dict({**TINY, "units": {"v2": {"split": [0.5]}}})
    a = Arch.parse("stem8:small|16:v1g1|24:v2s0.5|48:v2s0.5|conv0|cls10")
    with pytest.raises(ValueError, match=r"stages\[0\]\.blocks\[0\]\.unit"):
        only_small.validate(a)
    with pytest.raises(ValueError, match="small_input"):
        only_small.validate(a.replace(small_input=False))


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["stages"][0].update(kernel=[3, 5]), "stages[0]"),
        (lambda d: d["stages"][1].update(depth=[3, 1]), "stages[1].depth"),
        (lambda d: d["units"].update(mbconv={}), "mbconv"),
        (lambda d: d["units"]["v2"].update(split=[0.5, 1.5]), "units.v2.split"),
        (lambda d: d["stem"].update(channels=[]), "stem.channels"),
        (lambda d: d["stages"][0].update(channels=[15]), "stages[0].channels"),
    ],
)
def test_bad_space_yaml_names_the_field(tmp_path, mutate, field):
    d = yaml.safe_load(yaml.safe_dump(TINY))
    mutate(d)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError) as e:
        SearchSpace.load(p)
    assert field in str(e.value), str(e.value)


def test_load_by_name_path_and_unknown():
    assert SearchSpace.load() == SearchSpace.load("default")
    assert "default" in SearchSpace.builtin()
    with pytest.raises(ValueError, match="unknown space 'nope'"):
        SearchSpace.load("nope")
    assert SearchSpace.from_dict(SPACE.to_dict()) == SPACE


def test_suggest_is_a_pure_optuna_bridge():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seeds = [get_preset(n, 10, small_input=True) for n in list_presets()]
    for a in seeds:
        study.enqueue_trial(SPACE.params_from_arch(a))
    got = []

    def objective(trial):
        a = SPACE.suggest(trial, num_classes=10, small_input=True)
        got.append(a)
        assert all(isinstance(v, (int, float, str, bool)) for v in trial.params.values())
        return 0.0

    study.optimize(objective, n_trials=len(seeds) + 60)
    assert got[: len(seeds)] == seeds  # enqueued presets are recovered exactly
    assert all(SPACE.contains(a) for a in got)
    names = {k for t in study.trials for k in t.params}
    assert {"stem", "stage2.channels", "stage2.depth", "stage2.block0", "stage3.block11", "last_conv"} <= names


def test_repair_block_is_deterministic_and_close():
    # 232/4 = 58 bottleneck: g=4 and g=8 do not divide it -> largest valid smaller count is 2
    assert SPACE.repair_block(Block.v1(8), Site(1, 1, 232, 232)) == Block.v1(2)
    # v1 downsampling 96 -> 96 impossible -> nearest v2 split
    assert SPACE.repair_block(Block.v1(3), Site(1, 0, 96, 96)) == Block.v2(0.5)
    assert SPACE.repair_block(Block.v2(0.25), Site(1, 1, 96, 96)) == Block.v2(0.25)


def test_the_stem_variant_is_a_searched_decision():
    """Issue 10: the space declares small_input [false, true]; sampling, Optuna and the
    enqueue bridge all treat it as a decision."""
    import optuna

    rng = np.random.default_rng(0)
    drawn = [SPACE.sample(rng, num_classes=10).small_input for _ in range(400)]
    assert 150 < sum(drawn) < 250  # uniform over the two variants
    fixed = SearchSpace.from_dict({**SPACE.to_dict(), "stem": {"channels": [24], "small_input": [True]}})
    assert all(fixed.sample(rng, num_classes=10).small_input for _ in range(20))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs = []
    for _ in range(40):
        t = study.ask()
        archs.append(SPACE.suggest(t, num_classes=10))
        assert t.params["small_input"] == archs[-1].small_input
        study.tell(t, 0.0)
    assert {a.small_input for a in archs} == {False, True}
    small = get_preset("shufflenet_v2_x0_5", 10, small_input=True)
    params = SPACE.params_from_arch(small)
    assert params["small_input"] is True
    study.enqueue_trial(params)
    t = study.ask()
    assert SPACE.suggest(t, num_classes=10) == small
    assert "small_input" not in fixed.params_from_arch(small)
    # a search with the stem variant fixed (a stratified stem search): not a parameter, and a seed of
    # the other variant is refused
    params = SPACE.params_from_arch(small, small_input=True)
    assert "small_input" not in params and params == {k: v for k, v in SPACE.params_from_arch(small).items()
                                                      if k != "small_input"}
    study.enqueue_trial(params)
    t = study.ask()
    assert SPACE.suggest(t, num_classes=10, small_input=True) == small and "small_input" not in t.params
    with pytest.raises(ValueError, match=r"small_input: .* has small_input=True, but the search fixes "
                                         r"small_input=False; seed it into a search of its own stem variant"):
        SPACE.params_from_arch(small, small_input=False)
