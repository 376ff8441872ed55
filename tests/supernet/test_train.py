import pytest
import torch

from nas_data import load_data
from nas_training.engine import Recipe
from search_space import SearchSpace, Task
from supernet.train import load_supernet, main, train_supernet

TINY = SearchSpace.from_dict({
    "name": "tiny",
    "stem": {"channels": [8]},
    "stages": [{"depth": [1, 2], "channels": [16, 24]}, {"depth": [1, 2], "channels": [32, 48]},
               {"depth": [1, 2], "channels": [64]}],
    "units": {"v1": {"groups": [1, 2]}, "v2": {"split": [0.5]}},
    "last_conv": [0, 64],
})


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_training_lowers_the_loss_and_writes_a_self_describing_checkpoint(digits, tmp_path):
    ckpt = tmp_path / "supernet.pt"
    recipe = Recipe(epochs=20, batch_size=64, lr=0.05, warmup_epochs=2, seed=0)
    net, state = train_supernet(TINY, digits, recipe, checkpoint=ckpt, device="cpu", progress=False)
    losses = [h["train_loss"] for h in state["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    saved = torch.load(ckpt, weights_only=False)
    assert saved["epoch"] == 20 and saved["config"]["data"] == "digits"
    assert saved["config"]["recipe"]["lr"] == 0.05 and saved["config"]["space"]["name"] == "tiny"
    assert saved["metrics"]["train_loss"] == losses[-1] and saved["train_seconds"] > 0
    again, _ = load_supernet(ckpt)
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write left no temporary file


def test_interrupted_and_resumed_equals_uninterrupted(digits, tmp_path):
    recipe = Recipe(epochs=3, batch_size=128, lr=0.05, seed=3, flops_max=2.0)
    full, _ = train_supernet(TINY, digits, recipe, device="cpu", progress=False)
    ckpt = tmp_path / "s.pt"
    train_supernet(TINY, digits, recipe, checkpoint=ckpt, device="cpu", progress=False, stop_after_epoch=1)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    resumed, state = train_supernet(TINY, digits, recipe, checkpoint=ckpt, resume=True, device="cpu", progress=False)
    assert state["epoch"] == 3 and len(state["history"]) == 3
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_resume_refuses_a_different_config(digits, tmp_path):
    ckpt = tmp_path / "s.pt"
    train_supernet(TINY, digits, Recipe(epochs=2, seed=0), checkpoint=ckpt, device="cpu", progress=False, stop_after_epoch=1)
    with pytest.raises(ValueError, match="different recipe"):
        train_supernet(TINY, digits, Recipe(epochs=2, seed=1), checkpoint=ckpt, resume=True, device="cpu", progress=False)


def test_bad_inputs(digits, tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        Recipe(epochs=0)
    with pytest.raises(ValueError, match="flops_min"):
        Recipe(flops_min=5, flops_max=1)
    with pytest.raises(ValueError, match="no architecture"):
        train_supernet(TINY, digits, Recipe(epochs=1, flops_max=0.001), device="cpu", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            train_supernet(TINY, digits, Recipe(epochs=1), device="cuda", progress=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_supernet(bad)


def test_cli_errors_are_one_line_and_exit_2(capsys, tmp_path):
    assert main(["--data", "imagefolder:/no/such/dir", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data:") and "does not exist" in err[0]
    assert main(["--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "epochs" in capsys.readouterr().err


def _data(n_train: int, n_val: int = 20):
    """A tiny synthetic dataset with ``n_train`` training images (uint8, 8x8, 10 classes)."""
    from nas_data import Data

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_val, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(n_train + n_val) % 10
    return Data("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], [str(i) for i in range(10)],
                (0.5,) * 3, (0.25,) * 3)


def test_a_last_training_batch_of_one_joins_the_previous_batch():
    """Issue 12 case 3: 129 images at batch 128 crashed BatchNorm on a last batch of one."""
    from search_space import Arch
    from supernet import ShuffleNet
    from supernet.train import train_model

    data = _data(129)
    g = torch.Generator().manual_seed(0)
    sizes = [len(y) for _, y in data.batches("train", batch_size=128, shuffle=True, generator=g, min_last=2)]
    assert sizes == [129] and data.num_batches("train", batch_size=128, min_last=2) == 1
    # the ImageNet stem takes 8x8 inputs down to 1x1 at stage 4: one value per channel for a batch of one
    model = ShuffleNet(Arch.parse("stem8|16:v2s0.5|32:v1g1|64:v1g2|conv64|cls10"))
    hist = train_model(model, data, Recipe(epochs=1, batch_size=128, warmup_epochs=0), device="cpu", progress=False)
    assert len(hist) == 1 and 0 <= hist[0]["val_acc"] <= 100


@pytest.mark.parametrize("n,bs,expect", [(129, 128, [129]), (257, 128, [128, 129]), (130, 128, [128, 2]),
                                         (128, 128, [128]), (1, 128, [1]), (5, 2, [2, 3])])
def test_batch_bounds(n, bs, expect):
    data = _data(n)
    assert [len(y) for _, y in data.batches("train", batch_size=bs, min_last=2)] == expect
    assert data.num_batches("train", batch_size=bs, min_last=2) == len(expect)
    assert sum(len(y) for _, y in data.batches("train", batch_size=bs)) == n  # default: every batch as it falls


def test_supernet_training_and_bn_calibration_take_a_last_batch_of_one():
    """Siblings of case 3: SPOS training (N % batch == 1) and BN recalibration batches."""
    from search.evaluate import EvalConfig, calibration_batches
    from search_space import Arch
    from supernet import ShuffleNet, recalibrate_bn

    data = _data(65)
    _, state = train_supernet(TINY, data, Recipe(epochs=1, batch_size=32, warmup_epochs=0), device="cpu",
                              progress=False)
    assert len(state["history"]) == 1 and state["history"][0]["train_loss"] > 0
    calib = calibration_batches(data, EvalConfig(calib_batches=8, batch_size=32), torch.device("cpu"), False)
    assert [len(x) for x in calib] == [32, 33]
    model = ShuffleNet(Arch.parse("stem8|16:v2s0.5|32:v1g1|64:v1g2|conv64|cls10"))
    assert recalibrate_bn(model, calib) == 2


def test_training_on_one_image_says_so():
    from search_space import Arch
    from supernet import ShuffleNet
    from supernet.train import train_model

    with pytest.raises(ValueError, match="1 training image"):
        train_model(ShuffleNet(Arch.parse("stem8|16:v2s0.5|32:v1g1|64:v1g2|conv64|cls10")), _data(1), Recipe(epochs=1),
                    device="cpu", progress=False)


def _two_paths(space):
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (space.sample(rng, num_classes=10, small_input=False) for _ in range(2))
    while str(b) == str(a):
        b = space.sample(rng, num_classes=10, small_input=False)
    return a, b


def _sparse_step(upd, x, arch, clip=None):
    upd.forward(x, arch).square().mean().backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(upd.params(), clip)
    upd.step()


def _masked_step(net, opt, upd, x, arch, clip=None):
    saved = upd.freeze([arch])
    opt.zero_grad(set_to_none=True)
    net(x, arch).square().mean().backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()
    upd.restore(saved)


@pytest.mark.parametrize("kind", ["sparse", "masked"])
def test_path_only_update_leaves_unused_slices_and_their_momentum_bit_identical(kind):
    """Issue 10: no weight decay or stale momentum on what the sampled path did not read."""
    from nas_training.engine import make_optimizer
    from supernet import SuperNet
    from supernet.path_update import MaskedPathUpdate, PathOnlyUpdate

    torch.manual_seed(0)
    net = SuperNet(TINY, num_classes=10).train()
    opt = make_optimizer(net, Recipe(lr=0.1, weight_decay=0.01))
    upd = (PathOnlyUpdate if kind == "sparse" else MaskedPathUpdate)(net, opt)
    a, b = _two_paths(TINY)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def step(arch):
        _sparse_step(upd, x, arch) if kind == "sparse" else _masked_step(net, opt, upd, x, arch)

    step(a)  # momentum now exists on a's slices
    params = dict(net.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    bufs = {n: opt.state[p]["momentum_buffer"].clone() for n, p in params.items() if p in opt.state}
    masks = net.path_masks(b)
    step(b)
    changed_used = frozen = 0
    for n, p in params.items():
        m = masks.get(n, torch.zeros_like(p, dtype=torch.bool))
        assert torch.equal(p.detach()[~m], before[n][~m]), n
        if n in bufs:
            assert torch.equal(opt.state[p]["momentum_buffer"][~m], bufs[n][~m]), n
        frozen += int((~m).sum())
        changed_used += int((p.detach()[m] != before[n][m]).sum())
    assert frozen > 0 and changed_used > 0
    # without the path-only update, the same step moves unused elements (decay + momentum)
    p0 = {n: p.detach().clone() for n, p in params.items()}
    opt.zero_grad(set_to_none=True)
    net(x, b).square().mean().backward()
    opt.step()
    moved = sum(int((p.detach()[~masks.get(n, torch.zeros_like(p, dtype=torch.bool))] != p0[n][
        ~masks.get(n, torch.zeros_like(p, dtype=torch.bool))]).sum()) for n, p in params.items())
    assert moved > 0


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_path_sized_update_equals_torch_sgd_restricted_to_the_path(nesterov, channels_last):
    """PathOnlyUpdate (gradients of path size, no supernet-sized tensor) computes what torch's
    SGD step followed by restoring the unused elements computes: weights and momentum equal to
    1e-5 after three steps with clipping, on paths that gather by label and by block diagonal.

    In float64: the two updates convolve with weights of different sizes, so channels_last
    kernels sum in a different order (one that also varies by CPU); in float32 a BatchNorm
    running_var over 4 samples at 1x1 amplified that past 1e-5 on the CI machine. The check
    is about the update's arithmetic, not float32 rounding."""
    from nas_training.engine import make_optimizer
    from supernet import SuperNet
    from supernet.path_update import MaskedPathUpdate, PathOnlyUpdate

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    nets = [SuperNet(TINY, num_classes=10).double().to(memory_format=fmt).train() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    recipe = Recipe(lr=0.1, weight_decay=0.01, nesterov=nesterov)
    opts = [make_optimizer(n, recipe) for n in nets]
    sparse, masked = PathOnlyUpdate(nets[0], opts[0]), MaskedPathUpdate(nets[1], opts[1])
    a, b = _two_paths(TINY)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=fmt)
    for arch in (a, b, a):
        _sparse_step(sparse, x, arch, clip=0.5)
        _masked_step(nets[1], opts[1], masked, x, arch, clip=0.5)
    s0, s1 = nets[0].state_dict(), nets[1].state_dict()
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=1e-5, msg=k)
    p0, p1 = dict(nets[0].named_parameters()), dict(nets[1].named_parameters())
    assert {n for n in p0 if p0[n] in opts[0].state} == {n for n in p1 if p1[n] in opts[1].state}
    for n in p0:
        if p1[n] in opts[1].state:
            torch.testing.assert_close(opts[0].state[p0[n]]["momentum_buffer"], opts[1].state[p1[n]]["momentum_buffer"],
                                       rtol=0, atol=1e-5, msg=n)


def test_path_only_update_refuses_frozen_parameters():
    """The index twin addresses every parameter; a frozen one used to be read as a weight and
    updated at a wrong offset (found in review: a storage error or silent wrong writes)."""
    from nas_training.engine import make_optimizer
    from supernet import SuperNet
    from supernet.path_update import PathOnlyUpdate

    net = SuperNet(TINY, num_classes=10)
    opt = make_optimizer(net, Recipe())
    name, p = next(iter(net.named_parameters()))
    p.requires_grad_(False)
    with pytest.raises(ValueError, match=f"frozen parameters are not supported \\(\\['{name}'\\]\\); use update='full'"):
        PathOnlyUpdate(net, opt)


def test_path_sized_update_reads_each_shared_element_at_most_once():
    """The update scatters each subnet element to its own shared element: no two subnet
    elements of a path (of any sharing variant) read the same one, so nothing is summed."""
    import numpy as np

    from nas_training.engine import make_optimizer
    from supernet import SuperNet
    from supernet.path_update import PathOnlyUpdate

    space = SearchSpace.load("default")
    rng = np.random.default_rng(0)
    for v1_sharing in ("labels", "dense", "per_group"):
        net = SuperNet(space, num_classes=10, v1_sharing=v1_sharing).train()
        upd = PathOnlyUpdate(net, make_optimizer(net, Recipe()))
        for _ in range(3):
            arch = space.sample(rng, num_classes=10, small_input=None)
            upd.forward(torch.zeros(2, 3, 32, 32), arch)
            seen: dict[int, list[torch.Tensor]] = {}
            for _leaf, p, where in upd._items:
                if where.dtype == torch.int64:
                    seen.setdefault(id(p), []).append(where)
                else:  # a view: its storage positions
                    base = torch.arange(p.numel()).as_strided(p.shape, p.stride())
                    seen.setdefault(id(p), []).append(base.as_strided(where.shape, where.stride(),
                                                                      where.storage_offset() - p.storage_offset())
                                                      .reshape(-1))
            for idx in seen.values():
                cat = torch.cat(idx)
                assert cat.numel() == cat.unique().numel()
            assert sum(leaf.numel() for leaf, _, _ in upd._items) == sum(
                int(m.sum()) for m in net.path_masks(arch).values())


def test_path_masks_match_the_extracted_subnet():
    """A mask counts exactly the shared elements the subnet reads: a prefix slice's size."""
    from search_space import Arch
    from supernet import SuperNet

    net = SuperNet(TINY, num_classes=10)
    a = Arch.parse("stem8|16:v2s0.5|32:v1g1|64:v1g2|conv64|cls10")
    m = net.path_masks(a)
    assert int(m["stem_conv"].sum()) == 8 * 3 * 9 == net.stem_conv.numel()
    assert int(m["heads.head.conv5"].sum()) == 64 * 64
    assert "heads.head.fc.l0.weight" not in m and int(m["heads.head.fc.l64.weight"].sum()) == 640
    assert all(int(v.sum()) > 0 for v in m.values())


def test_fair_sampler_counts_are_equal_after_each_cycle():
    """FairNAS strict fairness: every unit choice once per position per cycle of m steps."""
    from collections import Counter

    import numpy as np

    from supernet.sampling import FairSampler

    space = SearchSpace.load("default")
    fs = FairSampler(space, Task(10, 32, False), seed=3)
    m = fs.cycle
    assert m == 8 and len(fs.positions) == 6 + 12 + 6
    rng = np.random.default_rng(0)
    planned = {pos: Counter() for pos in fs.positions}
    kept = total = 0
    for step in range(3 * m):
        plan = fs.plan(step)
        arch = fs(rng, step)
        space.validate(arch)
        for pos, blk in plan.items():
            planned[pos][str(blk)] += 1
            i, j = pos
            if j < arch.stages[i].depth:
                total += 1
                kept += arch.stages[i].blocks[j] == blk
        if (step + 1) % m == 0:
            cycles = (step + 1) // m
            assert all(set(c.values()) == {cycles} and len(c) == m for c in planned.values())
    assert fs.plan(5) == FairSampler(space, Task(10, 32, False), seed=3).plan(5)  # pure in (seed, step)
    assert kept / total > 0.8, kept / total  # the plan is realised wherever it is buildable


def test_supernet_training_with_fair_sampling_and_path_update_resumes_exactly(digits, tmp_path):
    recipe = Recipe(epochs=2, batch_size=256, lr=0.05, seed=1)
    kw = dict(device="cpu", progress=False, sampler="fair", update="path")
    full, _ = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "a.pt", **kw)
    train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", stop_after_epoch=1, **kw)
    resumed, state = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", resume=True, **kw)
    assert state["config"]["sampler"] == "fair" and state["config"]["update"] == "path"
    for (k, x), (_, y) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(x, y), k
    with pytest.raises(ValueError, match="different sampler"):
        train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", resume=True, device="cpu", progress=False,
                       update="path", sampler="uniform")
    with pytest.raises(ValueError, match="update: expected one of"):
        train_supernet(TINY, digits, recipe, device="cpu", progress=False, update="sparse")
    # on a CPU, one path a step, the default update is the path-only one: the checkpoint resumes
    # (finished: nothing to train) without the flag, and not with the full update
    _, again = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", resume=True, device="cpu",
                              progress=False, sampler="fair")
    assert again["config"]["update"] == "path" and again["epoch"] == 2
    with pytest.raises(ValueError, match="different update"):
        train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", resume=True, device="cpu", progress=False,
                       sampler="fair", update="full")
    # a checkpoint of the full update (a GPU's default, or a CPU's before the path-only default)
    # resumes without the flag and keeps training with the full update
    train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "c.pt", stop_after_epoch=1, device="cpu",
                   progress=False, sampler="fair", update="full")
    _, full_state = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "c.pt", resume=True, device="cpu",
                                   progress=False, sampler="fair")
    assert "update" not in full_state["config"] and full_state["epoch"] == 2 and len(full_state["history"]) == 2


def test_extreme_archs_are_the_largest_and_smallest_of_the_space():
    import numpy as np

    from search_space import count_flops

    big = TINY.extreme("largest", num_classes=10)
    small = TINY.extreme("smallest", num_classes=10)
    assert str(big) == "stem8:small|24:v2s0.5x2|48:v2s0.5x2|64:v2s0.5x2|conv64|cls10"  # the stem variant is free too
    assert str(TINY.extreme("largest", num_classes=10, small_input=False)) == str(big).replace(":small", "")
    assert str(small) == "stem8|16:v1g2|32:v1g2|64:v1g2|conv0|cls10"
    rng = np.random.default_rng(0)
    flops = [count_flops(TINY.sample(rng, num_classes=10), 32) for _ in range(300)]
    assert count_flops(small, 32) <= min(flops) and count_flops(big, 32) >= max(flops)
    with pytest.raises(ValueError, match="which: expected"):
        TINY.extreme("widest")


def test_sandwich_step_trains_the_largest_and_smallest_paths_with_in_place_distillation():
    """Issue 10 (BigNAS sandwich rule): one step = labels for the largest, its soft prediction for the rest."""
    import copy

    import numpy as np
    from torch import nn

    from supernet import SuperNet
    from supernet.train import sandwich_step

    torch.manual_seed(0)
    net = SuperNet(TINY, num_classes=10).train()
    ref = copy.deepcopy(net)
    recipe = Recipe(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=None)
    big, small = (TINY.extreme(w, num_classes=10) for w in ("largest", "smallest"))
    mid = TINY.sample(np.random.default_rng(1), num_classes=10)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 10
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    masks = {w: net.path_masks(a) for w, a in (("big", big), ("small", small), ("mid", mid))}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    outs = sandwich_step(net, x, y, [big, small, mid], crit, opt, sched, scaler, recipe, False)
    assert len(outs) == 3
    # reference: the summed loss by hand, one SGD step
    lb = ref(x, big)
    t = lb.detach().softmax(1)
    loss = crit(lb, y) + sum(-(t * ref(x, a).log_softmax(1)).sum(1).mean() for a in (small, mid))
    loss.backward()
    with torch.no_grad():
        for (n, p), (_, q) in zip(net.named_parameters(), ref.named_parameters()):
            want = q - 0.1 * q.grad if q.grad is not None else q
            torch.testing.assert_close(p, want, rtol=0, atol=1e-5, msg=n)
    # elements that only the largest reads and only the smallest reads both moved
    for w, others in (("big", ("small", "mid")), ("small", ("big", "mid"))):
        moved = 0
        for n, m in masks[w].items():
            only = m.clone()
            for o in others:
                if n in masks[o]:
                    only &= ~masks[o][n]
            p = dict(net.named_parameters())[n].detach()
            moved += int((p[only] != before[n][only]).sum())
        assert moved > 0, w


def test_supernet_training_with_the_sandwich_rule_records_it_and_resumes_exactly(digits, tmp_path):
    recipe = Recipe(epochs=2, batch_size=256, lr=0.05, seed=2)
    kw = dict(device="cpu", progress=False, sandwich=1)
    full, _ = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "a.pt", **kw)
    train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", stop_after_epoch=1, **kw)
    resumed, state = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "b.pt", resume=True, **kw)
    assert state["config"]["sandwich"] == 1 and len(state["history"]) == 2
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="sandwich: expected"):
        train_supernet(TINY, digits, recipe, device="cpu", progress=False, sandwich=-1)


def test_supernet_training_over_both_stem_variants(digits, tmp_path):
    """Issue 10: the search searches the stem variant, so the supernet trains both."""
    import numpy as np

    from supernet.sampling import make_path_sampler

    for kind in ("uniform", "fair"):
        sample = make_path_sampler(kind, TINY, Task(10, 32, None), seed=0)
        rng = np.random.default_rng(0)
        drawn = [sample(rng, k).small_input for k in range(60)]
        assert 15 < sum(drawn) < 45, kind
    _, state = train_supernet(TINY, digits, Recipe(epochs=1, batch_size=256, seed=0), checkpoint=tmp_path / "s.pt",
                              device="cpu", progress=False, small_input=None)
    assert state["config"]["small_input"] is None
    with pytest.raises(ValueError, match="different small_input"):
        train_supernet(TINY, digits, Recipe(epochs=1, batch_size=256, seed=0), checkpoint=tmp_path / "s.pt",
                       resume=True, device="cpu", progress=False, small_input=False)


def test_few_shot_sub_supernet_trains_one_unit_family_from_the_one_shot_weights(digits, tmp_path):
    """Few-shot NAS split by unit family: a sub-supernet starts from the trained supernet and
    samples only architectures of its family."""
    import numpy as np

    from search_space import Arch
    from supernet.sampling import in_family, make_path_sampler, unit_family

    assert unit_family(Arch.parse("stem8|16:v1g2,v1g1|32:v1g1|64:v2s0.5|conv0|cls10")) == "v1"  # 3 of 4 blocks
    assert unit_family(Arch.parse("stem8|16:v1g2,v2s0.5|32:v1g1|64:v2s0.5|conv0|cls10")) == "v2"  # a tie
    base = make_path_sampler("uniform", TINY, Task(10, 32, False), seed=0)
    rng = np.random.default_rng(0)
    for fam in ("v1", "v2"):
        assert all(unit_family(in_family(base, fam)(rng, k)) == fam for k in range(30))
    with pytest.raises(ValueError, match="family: expected"):
        in_family(base, "v3")
    recipe = Recipe(epochs=1, batch_size=256, seed=0)
    one_shot, _ = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "one.pt", device="cpu", progress=False)
    start, _ = train_supernet(TINY, digits, recipe, device="cpu", progress=False, family="v1", init=tmp_path / "one.pt",
                              stop_after_epoch=0)
    for (k, a), (_, b) in zip(one_shot.state_dict().items(), start.state_dict().items()):
        assert torch.equal(a, b), k
    _, state = train_supernet(TINY, digits, recipe, checkpoint=tmp_path / "v1.pt", device="cpu", progress=False,
                              family="v1", init=tmp_path / "one.pt")
    assert state["config"]["family"] == "v1" and state["config"]["init"] == str(tmp_path / "one.pt")
    other = SearchSpace.from_dict({**TINY.to_dict(), "last_conv": [0, 128]})
    with pytest.raises(ValueError, match="init: .* (another space|does not fit)"):
        train_supernet(other, digits, recipe, device="cpu", progress=False, init=tmp_path / "one.pt")
