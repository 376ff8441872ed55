"""Multi-fidelity final pick (issue 10 item 3): successive halving over short fine-tunes."""

import pytest

from search.finetune import FinetuneConfig, successive_halving, winner_index
from search_space import Arch

ARCHS = [Arch.parse(f"stem8|16:v2s0.5|32:v2s0.5|{c}:v2s0.5|conv0|cls10") for c in (64, 48, 96, 128)]
# val top-1 after each fine-tune epoch, per candidate (in one-shot order)
CURVES = {0: [50, 60, 70, 80], 1: [40, 45, 90, 99], 2: [55, 65, 75, 85], 3: [30, 70, 95, 97]}


def _step(calls, trained=None):
    """A fake fine-tune: ``calls`` logs the epochs actually trained; ``trained`` plays the checkpoints
    (a candidate already past ``epoch`` returns its recorded figure without training)."""
    trained = {} if trained is None else trained

    def step(k, epoch):
        if trained.get(k, 0) < epoch:
            calls.append((k, epoch))
            trained[k] = epoch
        return CURVES[k][epoch - 1]
    return step


def test_successive_halving_stops_the_weaker_half():
    calls = []
    recs = successive_halving(ARCHS, _step(calls), FinetuneConfig(top=4, epochs=4, reduction_factor=2))
    assert [r["pruned"] for r in recs] == [False, True, False, True]
    assert [r["epochs"] for r in recs] == [4, 1, 4, 1]
    assert [r["final"] for r in recs] == [80, 40, 85, 30]
    assert recs[2]["finetune_acc"] == [55, 65, 75, 85] and recs[1]["arch"] == str(ARCHS[1])
    assert len(calls) == 10  # instead of 16 without halving
    assert winner_index(recs) == 2


@pytest.mark.parametrize("crash_at", [(0, 3), (1, 1), (2, 2), (2, 4), (3, 1)])
def test_an_interrupted_pick_ends_as_an_uninterrupted_one(crash_at):
    """Resume replays the decisions on the checkpointed figures: no candidate trains twice and
    the outcome is the uninterrupted one, wherever the interruption fell."""
    want = successive_halving(ARCHS, _step([]), FinetuneConfig(top=4, epochs=4))
    calls, trained = [], {}
    step = _step(calls, trained)

    def dying(k, epoch):
        if (k, epoch) == crash_at:
            raise KeyboardInterrupt
        return step(k, epoch)

    with pytest.raises(KeyboardInterrupt):
        successive_halving(ARCHS, dying, FinetuneConfig(top=4, epochs=4))
    before = list(calls)
    recs = successive_halving(ARCHS, step, FinetuneConfig(top=4, epochs=4))
    assert recs == want
    assert len(calls) == len(set(calls)) == 10  # every (candidate, epoch) trained once in all
    assert calls[:len(before)] == before


def test_a_candidate_that_ran_every_epoch_is_never_marked_stopped():
    curves = {0: [50, 90], 1: [60, 10]}  # candidate 1 reaches the last rung, then falls below
    recs = successive_halving(ARCHS[:2], lambda k, e: curves[k][e - 1], FinetuneConfig(top=2, epochs=2))
    assert [r["pruned"] for r in recs] == [False, False] and [r["epochs"] for r in recs] == [2, 2]
    assert winner_index(recs) == 0


@pytest.mark.parametrize("kw, msg", [(dict(top=-1), "finetune_top"), (dict(epochs=0), "finetune_epochs"),
                                     (dict(init="random"), "finetune_init: unknown init 'random'"),
                                     (dict(init="scratch", epochs=16), "finetune_epochs: from scratch"),
                                     (dict(lr=0), "lr"), (dict(reduction_factor=1), "reduction_factor")])
def test_bad_finetune_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        FinetuneConfig(**kw)


def test_the_real_fine_tune_step_trains_from_inherited_weights_and_resumes(tmp_path):
    import torch

    from nas_data import load_data
    from search.finetune import finetune_step
    from search_space import SearchSpace
    from supernet import SuperNet
    from tests.search.conftest import TINY

    space = SearchSpace.from_dict(TINY)
    torch.manual_seed(0)
    sup = SuperNet(space, num_classes=10)
    data = load_data("digits")
    archs = [Arch.parse("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10")]
    cfg = FinetuneConfig(top=1, epochs=2, lr=0.05)
    step, models = finetune_step(sup, archs, data, cfg, device="cpu", seed=0, ckpt_dir=tmp_path, supernet_id="a")
    a1, a2 = step(0, 1), step(0, 2)
    assert 0 <= a1 <= 100 and a2 > 20  # two epochs on digits from an untrained supernet
    # a new process (fresh step) resuming at epoch 2 trains nothing and reports the same figure
    again, models2 = finetune_step(sup, archs, data, cfg, device="cpu", seed=0, ckpt_dir=tmp_path, supernet_id="a")
    assert again(0, 2) == a2
    other, _ = finetune_step(sup, archs, data, cfg, device="cpu", seed=0, ckpt_dir=tmp_path, supernet_id="b")
    with pytest.raises(ValueError, match="different supernet"):
        other(0, 1)  # fine-tunes from another supernet are refused, not reused
    for (n, p), (_, q) in zip(models[0].state_dict().items(), models2[0].state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_the_from_scratch_step_is_the_retrain_recipe_cut_short_and_resumes(tmp_path):
    """``init="scratch"``: candidate k is ``ShuffleNet(arch)`` drawn under the seed, trained with the
    15-epoch retrain recipe and stopped after each epoch; it needs no supernet, and a new process
    resumes it from its checkpoint without training again."""
    import torch

    from nas_data import load_data
    from search.finetune import SCRATCH_SCHEDULE_EPOCHS, finetune_step
    from search.retrain import retrain_recipe
    from supernet import ShuffleNet
    from supernet.train import train_model

    data = load_data("digits")
    archs = [Arch.parse("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10")]
    cfg = FinetuneConfig(top=1, epochs=2, init="scratch")
    step, models = finetune_step(None, archs, data, cfg, device="cpu", seed=3, ckpt_dir=tmp_path / "a",
                                 supernet_id="ignored")
    a1, a2 = step(0, 1), step(0, 2)
    torch.manual_seed(3)
    ref = ShuffleNet(archs[0])
    hist = train_model(ref, data, retrain_recipe(SCRATCH_SCHEDULE_EPOCHS, 3, 0.05, 128), device="cpu",
                       progress=False, stop_after_epoch=2)
    assert [a1, a2] == [h["val_acc"] for h in hist] and len(hist) == 2
    for (n, p), (_, q) in zip(models[0].state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    # the checkpoint is the supernet's business only from inherited weights: any supernet id resumes it,
    # without training again
    ckpt = next((tmp_path / "a").glob("*.pt"))
    stamp = ckpt.stat().st_mtime_ns
    again, models2 = finetune_step(None, archs, data, cfg, device="cpu", seed=3, ckpt_dir=tmp_path / "a",
                                   supernet_id="other")
    assert again(0, 2) == a2 and ckpt.stat().st_mtime_ns == stamp
    torch.testing.assert_close(models2[0].state_dict(), models[0].state_dict(), rtol=0, atol=0)
    # a checkpoint cut after another epoch is refused (it could hold weights past the one asked for)
    shorter, _ = finetune_step(None, archs, data, FinetuneConfig(top=1, epochs=1, init="scratch"), device="cpu",
                               seed=3, ckpt_dir=tmp_path / "a", supernet_id="x")
    with pytest.raises(ValueError, match="trained with a different cut_after_epoch"):
        shorter(0, 1)
    # a from-scratch checkpoint of the same arch is refused by a fine-tune, not resumed
    from search_space import SearchSpace
    from supernet import SuperNet
    from tests.search.conftest import TINY

    sup = SuperNet(SearchSpace.from_dict(TINY), num_classes=10)
    inh, _ = finetune_step(sup, archs, data, FinetuneConfig(top=1, epochs=2), device="cpu", seed=3,
                           ckpt_dir=tmp_path / "a", supernet_id="s")
    with pytest.raises(ValueError, match="trained with a different"):
        inh(0, 1)


def test_from_scratch_the_first_rung_waits_for_the_warm_up():
    """Top-1 inside the retrain recipe's 2-epoch warm-up is near chance: from scratch, successive
    halving first compares at epoch 2 (then 4), a fine-tune at epoch 1 (then 2, 4)."""
    assert [FinetuneConfig(init="scratch", epochs=e).first_rung for e in (1, 2, 4)] == [1, 2, 2]
    assert FinetuneConfig(init="inherited", epochs=4).first_rung == 1
    # candidate 1 trails at epoch 1 (inside the warm-up) but leads at epoch 2
    curves = {0: [50, 60, 70, 80], 1: [10, 65, 75, 85], 2: [55, 40, 45, 50], 3: [30, 20, 25, 30]}
    scratch = successive_halving(ARCHS, lambda k, e: curves[k][e - 1], FinetuneConfig(top=4, epochs=4, init="scratch"))
    assert [r["epochs"] for r in scratch] == [4, 4, 2, 2] and winner_index(scratch) == 1
    fine = successive_halving(ARCHS, lambda k, e: curves[k][e - 1], FinetuneConfig(top=4, epochs=4))
    assert [r["epochs"] for r in fine] == [4, 1, 2, 1] and winner_index(fine) == 0  # 1 stopped in the warm-up
    # at the default 2 epochs from scratch nothing stops early: every candidate gets both
    two = successive_halving(ARCHS, lambda k, e: curves[k][e - 1], FinetuneConfig(top=4, epochs=2, init="scratch"))
    assert [r["epochs"] for r in two] == [2] * 4 and winner_index(two) == 1
