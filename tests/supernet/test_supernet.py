import numpy as np
import pytest
import torch
from torch import nn

from search_space import Arch, SearchSpace, get_preset, list_presets
from supernet import ShuffleNet, SuperNet, extract, recalibrate_bn
from supernet.supernet import block_diagonal
from tests.helpers import randomize_bn

SPACE = SearchSpace.load("default")


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    s = SuperNet(SPACE, num_classes=7, v1_sharing="dense")  # the block-diagonal test reads dense weights
    randomize_bn(s, 1)
    return s.eval()


def _archs():
    rng = np.random.default_rng(2024)
    out = [get_preset(n, 7, small_input=s) for n in list_presets() for s in (False, True)]
    out += [SPACE.sample(rng, num_classes=7, small_input=bool(k % 2)) for k in range(200)]
    return out


def test_extracted_subnets_equal_the_supernet(supernet):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    archs = _archs()
    assert len(archs) == 218
    worst = 0.0
    with torch.no_grad():
        for a in archs:
            ref = supernet(x, a)
            model = extract(supernet, a).eval()
            assert isinstance(model, ShuffleNet) and str(model.arch) == str(a)
            out = model(x)
            assert ref.abs().max() > 1e-3  # not a trivially zero output
            worst = max(worst, float((out - ref).abs().max()))
    assert worst <= 1e-5, worst


def test_extract_is_a_copy(supernet):
    a = get_preset("shufflenet_v2_x0_5", 7)
    m = extract(supernet, a)
    with torch.no_grad():
        m.conv1[0].weight.add_(1.0)
    assert not torch.equal(m.conv1[0].weight, supernet.stem_conv[:24])


def test_v1_group_counts_share_one_dense_weight(supernet):
    base = "stem24|48:v2s0.5|{}|192:v2s0.5|conv0|cls7"
    w = {}
    for g in (1, 2, 4, 8):
        a = Arch.parse(base.format(f"96:v2s0.5,v1g{g}"))
        w[g] = extract(supernet, a).stage3[1].branch_main_2[2].weight  # (96, 24 // g, 1, 1)
    dense = w[1]
    for g in (2, 4, 8):
        og, ig = 96 // g, 24 // g
        for k in range(g):
            torch.testing.assert_close(w[g][k * og : (k + 1) * og], dense[k * og : (k + 1) * og, k * ig : (k + 1) * ig], rtol=0, atol=0)


def test_block_diagonal_is_the_grouped_conv():
    torch.manual_seed(0)
    dense = torch.randn(12, 8, 1, 1)
    x = torch.randn(2, 8, 5, 5)
    grouped = nn.functional.conv2d(x, block_diagonal(dense, 4), groups=4)
    mask = torch.block_diag(*[torch.ones(3, 2)] * 4).view(12, 8, 1, 1)
    torch.testing.assert_close(grouped, nn.functional.conv2d(x, dense * mask), rtol=0, atol=1e-6)


def test_widths_share_prefix_slices(supernet):
    small = extract(supernet, Arch.parse("stem24|48:v2s0.5|96:v2s0.5|192:v2s0.5|conv1024|cls7"))
    large = extract(supernet, Arch.parse("stem24|116:v2s0.5|96:v2s0.5|192:v2s0.5|conv1024|cls7"))
    # stage2 unit 0, branch2's first 1x1: hidden rows are a prefix, input labels = stem channels
    torch.testing.assert_close(small.stage2[0].branch2[0].weight, large.stage2[0].branch2[0].weight[:24], rtol=0, atol=0)
    torch.testing.assert_close(small.stage2[0].branch2[1].running_var, large.stage2[0].branch2[1].running_var[:24])


def test_v1_and_v2_have_their_own_weights_and_depth_uses_first_blocks(supernet):
    keys = set(supernet.units)
    assert {"stage3_0_v1", "stage3_0_v2", "stage3_11_v1", "stage3_11_v2"} <= keys
    assert "stage3_12_v2" not in keys  # max depth 12
    shallow = extract(supernet, Arch.parse("stem24|48:v2s0.5|96:v2s0.5x2|192:v2s0.5|conv0|cls7"))
    deep = extract(supernet, Arch.parse("stem24|48:v2s0.5|96:v2s0.5x5|192:v2s0.5|conv0|cls7"))
    for j in range(2):
        for (n1, t1), (n2, t2) in zip(shallow.stage3[j].state_dict().items(), deep.stage3[j].state_dict().items()):
            assert n1 == n2 and torch.equal(t1, t2)


def test_training_forward_updates_shared_weights_and_bn_statistics():
    torch.manual_seed(0)
    s = SuperNet(SPACE, num_classes=5).train()
    a = Arch.parse("stem24|48:v2s0.5,v2s0.25x2|96:v1g2x2|192:v2s0.75x2|conv1024|cls5")
    before = {k: v.clone() for k, v in s.state_dict().items()}
    out = s(torch.randn(4, 3, 32, 32), a)
    out.square().mean().backward()
    # gradient reaches the shared tensors of the path, not the others
    assert s.units["stage2_1_v2"].pw1.grad.abs().sum() > 0
    assert s.units["stage2_1_v1"].pw1.grad is None
    after = s.state_dict()
    # BN statistics gathered by channel label were written back into the shared buffers
    assert not torch.equal(before["units.stage2_1_v2.bn3.running_mean"], after["units.stage2_1_v2.bn3.running_mean"])
    assert not torch.equal(before["units.stage3_1_v1.bn3.running_var"], after["units.stage3_1_v1.bn3.running_var"])
    assert torch.equal(before["units.stage3_5_v1.bn3.running_var"], after["units.stage3_5_v1.bn3.running_var"])
    # and the extracted model sees exactly those statistics
    m = extract(s, a)
    torch.testing.assert_close(m.stage3[1].branch_main_2[3].running_var, s.subnet_state(a)["stage3.1.branch_main_2.3.running_var"])


def _assert_extracts_exactly(s, space, n=30):
    """``n`` random small-input archs of ``space``: extracted model == supernet path; returns the input."""
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for _ in range(n):
            a = space.sample(rng, num_classes=3, small_input=True)
            torch.testing.assert_close(extract(s, a).eval()(x), s(x, a), rtol=0, atol=1e-5)
    return x


def test_separate_width_sharing_also_extracts_exactly():
    tiny = SearchSpace.from_dict({
        "stem": {"channels": [8]},
        "stages": [{"depth": [1, 2], "channels": [16, 24]}, {"depth": [1, 2], "channels": [24, 48]},
                   {"depth": [1, 2], "channels": [48, 64]}],
        "units": {"v1": {"groups": [1, 2]}, "v2": {"split": [0.25, 0.5]}},
        "last_conv": [0, 32],
    })
    torch.manual_seed(0)
    s = SuperNet(tiny, num_classes=3, width_sharing="separate")
    randomize_bn(s, 0)
    s.eval()
    assert "stage4_0_c48_v2" in s.units and "stage4_0_c64_v2" in s.units and "stage3_0_c24_v1" in s.units
    _assert_extracts_exactly(s, tiny)
    with pytest.raises(ValueError, match="width_sharing"):
        SuperNet(tiny, num_classes=3, width_sharing="suffix")


def test_supernet_refuses_foreign_archs(supernet):
    with pytest.raises(ValueError, match=r"stages\[0\].channels"):
        supernet(torch.zeros(1, 3, 16, 16), Arch.parse("stem24|50:v2s0.5|96:v2s0.5|192:v2s0.5|conv0|cls7"))
    with pytest.raises(ValueError, match="num_classes"):
        extract(supernet, get_preset("shufflenet_v2_x0_5", 10))
    with pytest.raises(ValueError, match="num_classes"):
        SuperNet(SPACE, num_classes=0)


def test_supernet_is_stateless_and_picklable(supernet):
    import pickle

    a, b = get_preset("shufflenet_v1_g3", 7), get_preset("shufflenet_v2_x1_0", 7)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ya = supernet(x, a)
        supernet(x, b)
        clone = pickle.loads(pickle.dumps(supernet))
        assert torch.equal(supernet(x, a), ya) and torch.equal(clone(x, a), ya)
    assert not any("active" in k for k in vars(supernet))


def test_recalibrate_bn_is_the_cumulative_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3))
    batches = [torch.randn(8, 3, 6, 6) * (k + 1) + k for k in range(3)]
    with torch.no_grad():
        feats = [model[0](b) for b in batches]
    n = recalibrate_bn(model, batches)
    assert n == 3 and not model.training and model[1].momentum == 0.3
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.transpose(0, 1).reshape(4, -1).var(1, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-5, atol=1e-5)
    assert recalibrate_bn(model, batches, max_batches=1) == 1
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(model, [])


def test_per_width_conv0_head_extracts_exactly_and_uses_its_own_classifier(tmp_path):

    tiny = SearchSpace.from_dict({
        "stem": {"channels": [8]},
        "stages": [{"depth": [1, 2], "channels": [16]}, {"depth": [1, 2], "channels": [24]},
                   {"depth": [1, 2], "channels": [48, 64]}],
        "units": {"v1": {"groups": [1, 2]}, "v2": {"split": [0.5]}},
        "last_conv": [0, 32],
    })
    torch.manual_seed(0)
    s = SuperNet(tiny, num_classes=3, conv0_head="per_width")
    assert sorted(s.heads["head"].fc) == ["l0_c48", "l0_c64", "l32"]
    assert s.heads["head"].fc["l0_c48"].weight.shape == (3, 64)  # label-indexed columns, like the shared one
    randomize_bn(s, 0)
    s.eval()
    x = _assert_extracts_exactly(s, tiny)
    with torch.no_grad():
        a48 = Arch.parse("stem8:small|16:v2s0.5|24:v2s0.5|48:v2s0.5|conv0|cls3")
        a64 = Arch.parse("stem8:small|16:v2s0.5|24:v2s0.5|64:v2s0.5|conv0|cls3")
        y48, y64 = s(x, a48), s(x, a64)
        s.heads["head"].fc["l0_c48"].bias += 1.0  # only the width-48 network reads this classifier
        torch.testing.assert_close(s(x, a48), y48 + 1.0, rtol=0, atol=1e-5)
        torch.testing.assert_close(s(x, a64), y64, rtol=0, atol=0)
    with pytest.raises(ValueError, match="conv0_head"):
        SuperNet(tiny, num_classes=3, conv0_head="each")
    _knob_round_trips(tiny, tmp_path, "conv0_head", "per_width")


def test_supernet_from_several_threads_equals_one_thread():
    """Issue 12 case 2: 4 threads x 15 calls raised 'Tensor on device meta' or returned NaN,
    because every thread swapped its weights into one cached meta template."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    net = SuperNet(SPACE, num_classes=10).eval()
    arch = get_preset("shufflenet_v2_x1_0", 10)
    xs = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        ref = [net(x, arch) for x in xs]

    def work(i):
        with torch.no_grad():
            return [net(xs[i], arch) for _ in range(15)]

    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(work, range(4)))
    assert len(outs) == 4 and all(len(o) == 15 for o in outs)
    worst = max(float((o - ref[i]).abs().max()) for i in range(4) for o in outs[i])
    assert worst <= 1e-5, worst


def test_evaluation_helpers_leave_the_supernet_and_model_modes():
    """Sibling of case 1: the search Scorer switched the caller's supernet to eval mode,
    and accuracy() evaluated a training-mode model in training mode."""
    from nas_training.engine import accuracy
    from search.evaluate import Scorer
    from search.latency import Conditions

    net = SuperNet(SPACE, num_classes=10).train()
    Scorer(net, data=None, predictor=None, conditions=Conditions((1, 3, 32, 32), device="cpu"), budget_ms=5.0)
    assert net.training
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.BatchNorm1d(3)).train()
    x = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    y = model.eval()(x).argmax(1)
    model.train()
    assert accuracy(model, [(x, y)]) == 100.0  # eval-mode outputs: batch statistics would change them
    assert model.training


TINY_V1 = {
    "stem": {"channels": [8]},
    "stages": [{"depth": [1, 2], "channels": [16, 32]}, {"depth": [1, 3], "channels": [32, 64]},
               {"depth": [1, 2], "channels": [64, 128]}],
    "units": {"v1": {"groups": [1, 2, 4]}, "v2": {"split": [0.5]}},
    "last_conv": [0, 32],
}


@pytest.mark.parametrize("v1_sharing", ["labels", "per_group"])
def test_v1_sharing_variants_extract_exactly(v1_sharing):
    tiny = SearchSpace.from_dict(TINY_V1)
    torch.manual_seed(0)
    s = SuperNet(tiny, num_classes=3, v1_sharing=v1_sharing)
    randomize_bn(s, 0)
    s.eval()
    _assert_extracts_exactly(s, tiny, n=40)
    if v1_sharing == "per_group":
        assert {"stage3_1_v1g1", "stage3_1_v1g2", "stage3_1_v1g4"} <= set(s.units) and "stage3_1_v1" not in s.units
    with pytest.raises(ValueError, match="v1_sharing"):
        SuperNet(tiny, num_classes=3, v1_sharing="diagonal")


def test_v1_hidden_labels_keep_each_hidden_channels_weights_across_group_counts():
    from supernet.supernet import shuffle_src
    from supernet.units import channel_shuffle

    x = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(channel_shuffle(x, 3), x[:, shuffle_src(12, 3)], rtol=0, atol=0)
    tiny = SearchSpace.from_dict(TINY_V1)
    torch.manual_seed(0)
    s = SuperNet(tiny, num_classes=3, v1_sharing="labels")
    randomize_bn(s, 0)
    unit = s.units["stage3_1_v1"]
    for g in (1, 2, 4):
        a = Arch.parse(f"stem8|32:v1g1|64:v1g1,v1g{g}|128:v1g1|conv0|cls3")
        m = extract(s, a).stage3[1]
        src = shuffle_src(16, g)  # mid = 64 // 4 hidden channels
        # depthwise filter and BN of the hidden channel shuffled to position p
        torch.testing.assert_close(m.branch_main_2[0].weight, unit.dw[src], rtol=0, atol=0)
        torch.testing.assert_close(m.branch_main_2[1].running_var, unit.bn2.running_var[src], rtol=0, atol=0)
        # second pointwise conv: output o (label o: stage 3 keeps its labels in v1 units) reads
        # hidden label src[p] through the same shared element for every g
        w = m.branch_main_2[2].weight  # (64, 16 // g, 1, 1)
        og, ig = 64 // g, 16 // g
        for o in range(64):
            k = o // og
            torch.testing.assert_close(w[o, :, 0, 0], unit.pw2[o, src[k * ig:(k + 1) * ig], 0, 0], rtol=0, atol=0)


def test_per_group_v1_weights_are_separate_and_round_trip(tmp_path):

    tiny = SearchSpace.from_dict(TINY_V1)
    torch.manual_seed(0)
    s = SuperNet(tiny, num_classes=3, v1_sharing="per_group").eval()
    x = torch.randn(2, 3, 16, 16)
    a2 = Arch.parse("stem8:small|32:v1g1|64:v1g1,v1g2|128:v1g1|conv0|cls3")
    a4 = Arch.parse("stem8:small|32:v1g1|64:v1g1,v1g4|128:v1g1|conv0|cls3")
    with torch.no_grad():
        y2, y4 = s(x, a2), s(x, a4)
        s.units["stage3_1_v1g2"].bn3.bias += 1.0  # only the g=2 network reads it
        assert not torch.allclose(s(x, a2), y2)
        torch.testing.assert_close(s(x, a4), y4, rtol=0, atol=0)
    _knob_round_trips(tiny, tmp_path, "v1_sharing", "per_group")


def _knob_round_trips(space, tmp_path, knob: str, value: str) -> None:
    """A supernet trained with ``knob=value`` records it and reloads bit for bit with it."""
    from nas_data import load_data
    from nas_training.engine import Recipe
    from supernet.train import load_supernet, train_supernet

    ck = tmp_path / "s.pt"
    net, state = train_supernet(space, load_data("digits"), Recipe(epochs=1, seed=0), checkpoint=ck, device="cpu",
                                progress=False, **{knob: value})
    assert state["config"][knob] == value
    again, _ = load_supernet(ck)
    assert getattr(again, knob) == value and again.state_dict().keys() == net.state_dict().keys()
    for k, v in net.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_templates_reuse_units_across_networks_but_never_within_one():
    """The meta-device templates cache units by position and geometry: two networks that differ
    only in their head share every unit object, one network never holds a unit twice (the
    weights of its positions would collapse into one), and the modes never mix."""
    import dataclasses

    from supernet.supernet import _template

    a = get_preset("shufflenet_v2_x1_0", 7)
    b = dataclasses.replace(a, last_conv=2048)
    ta, tb, tt = _template(a, False), _template(b, False), _template(a, True)

    def units(t):
        return [m for st in (t.stage2, t.stage3, t.stage4) for m in st]

    assert len({id(m) for m in units(ta)}) == len(units(ta)) == 16
    assert all(x is y for x, y in zip(units(ta), units(tb), strict=True)) and ta.conv5 is not tb.conv5
    assert not any(x is y for x, y in zip(units(ta), units(tt)))
    assert not any(m.training for m in ta.modules()) and all(m.training for m in tt.modules())
    assert ta.stage3[1].branch2[0].weight.device.type == "meta"
