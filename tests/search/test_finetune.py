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
    """Synchronous: all four train to rung 1 (inherited: rungs 1, 2 of 4 epochs), the best two (0 and
    2) to rung 2, the best one (2) to the end. The first candidate is stopped like any other (ASHA
    run one candidate after another would let it finish: it has no one to compare with)."""
    calls = []
    cfg = FinetuneConfig(top=4, epochs=4, reduction_factor=2)
    recs = successive_halving(ARCHS, _step(calls), cfg)
    assert cfg.rungs == (1, 2)
    assert [r["pruned"] for r in recs] == [True, True, False, True]
    assert [r["epochs"] for r in recs] == [2, 1, 4, 1]
    assert [r["final"] for r in recs] == [60, 40, 85, 30]
    assert recs[2]["finetune_acc"] == [55, 65, 75, 85] and recs[1]["arch"] == str(ARCHS[1])
    assert calls == [(0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (2, 2), (2, 3), (2, 4)]  # 8 instead of 16
    assert len(calls) == cfg.planned_epochs(4)
    assert winner_index(recs) == 2


def test_the_outcome_does_not_depend_on_the_candidates_order():
    """Every candidate at a rung is compared with all the others there, whatever order they ran in."""
    import itertools

    curves = {0: [30, 40, 50, 60, 70, 71], 1: [35, 45, 55, 65, 75, 90], 2: [50, 55, 60, 62, 64, 66],
              3: [20, 25, 30, 35, 40, 45], 4: [40, 50, 52, 54, 56, 58], 5: [10, 20, 30, 40, 50, 99],
              6: [45, 48, 70, 72, 74, 76], 7: [33, 44, 54, 64, 74, 84]}
    cfg = FinetuneConfig(top=8, epochs=6, init="scratch")
    assert cfg.rungs == (2, 4) and cfg.planned_epochs(8) == 8 * 2 + 4 * 2 + 2 * 2
    winners = set()
    for order in itertools.islice(itertools.permutations(range(8)), 0, 40320, 997):
        recs = successive_halving([ARCHS[0]] * 8, lambda k, e, order=order: curves[order[k]][e - 1], cfg)
        assert sum(r["epochs"] for r in recs) == 28
        winners.add(order[winner_index(recs)])
        assert sorted(order[k] for k, r in enumerate(recs) if r["epochs"] == 6) == [1, 6]
    # rung 2 keeps 2 (55), 4 (50), 6 (48), 1 (45); rung 4 keeps 6 (72) and 1 (65); 5 (99 at the end) stopped at rung 2
    assert winners == {1}


def test_rungs_and_planned_epochs():
    assert FinetuneConfig(init="scratch", epochs=6, reduction_factor=3).rungs == (2,)
    assert FinetuneConfig(init="scratch", epochs=6, reduction_factor=3).planned_epochs(8) == 8 * 2 + 2 * 4
    assert FinetuneConfig(init="scratch", epochs=8).rungs == (2, 4)
    assert FinetuneConfig(init="scratch", epochs=8).planned_epochs(3) == 3 * 2 + 1 * 2 + 1 * 4
    assert FinetuneConfig(init="inherited", epochs=1).rungs == () and FinetuneConfig(epochs=1).planned_epochs(5) == 5
    assert FinetuneConfig(init="scratch", epochs=6).planned_epochs(1) == 6 and FinetuneConfig().planned_epochs(0) == 0
    # one candidate passes every rung alone and trains the whole schedule
    calls = []
    (one,) = successive_halving(ARCHS[:1], _step(calls), FinetuneConfig(top=1, epochs=4))
    assert (one["epochs"], one["pruned"], one["final"]) == (4, False, 80) and len(calls) == 4


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="finetune: no candidates"):
        successive_halving([], lambda k, e: 0.0, FinetuneConfig())


@pytest.mark.parametrize("crash_at", [(0, 2), (1, 1), (2, 2), (2, 4), (3, 1)])
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
    assert len(calls) == len(set(calls)) == 8  # every (candidate, epoch) trained once in all
    assert calls[:len(before)] == before


def test_the_survivor_of_the_last_rung_wins_even_if_it_then_falls():
    """Only candidates that ran every epoch can win; one stopped at a rung never does."""
    curves = {0: [50, 90], 1: [60, 10]}  # 0 would end higher, but 1 leads at the rung (epoch 1)
    recs = successive_halving(ARCHS[:2], lambda k, e: curves[k][e - 1], FinetuneConfig(top=2, epochs=2))
    assert [r["pruned"] for r in recs] == [True, False] and [r["epochs"] for r in recs] == [1, 2]
    assert winner_index(recs) == 1


@pytest.mark.parametrize("kw, msg", [(dict(top=-1), "finetune_top"), (dict(epochs=0), "finetune_epochs"),
                                     (dict(init="random"), "finetune_init: unknown init 'random'"),
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


def test_the_from_scratch_step_is_the_retrain_recipe_over_its_schedule_and_resumes(tmp_path):
    """``init="scratch"``: candidate k is ``ShuffleNet(arch)`` drawn under the seed, trained with the
    retrain recipe over ``epochs`` and stopped after each epoch; it needs no supernet, and a new
    process resumes it from its checkpoint without training again."""
    import torch

    from nas_data import load_data
    from search.evaluate import EvalConfig, calibration_batches
    from search.finetune import finetune_step
    from search.retrain import retrain_recipe
    from supernet import ShuffleNet, recalibrate_bn
    from supernet.train import train_model

    data = load_data("digits")
    archs = [Arch.parse("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10")]
    cfg = FinetuneConfig(top=1, epochs=2, init="scratch")
    step, models = finetune_step(None, archs, data, cfg, device="cpu", seed=3, ckpt_dir=tmp_path / "a",
                                 supernet_id="ignored")
    a1, a2 = step(0, 1), step(0, 2)
    torch.manual_seed(3)
    ref = ShuffleNet(archs[0])
    calib = calibration_batches(data, EvalConfig(), torch.device("cpu"), channels_last=True)
    hist = train_model(ref, data, retrain_recipe(2, 3, 0.05, 128), device="cpu", progress=False,
                       after_epoch=lambda m: {"bn_recalibrated": recalibrate_bn(m, calib[:2])})
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
    # a checkpoint of another schedule is refused (its epoch 1 is not this schedule's epoch 1)
    shorter, _ = finetune_step(None, archs, data, FinetuneConfig(top=1, epochs=1, init="scratch"), device="cpu",
                               seed=3, ckpt_dir=tmp_path / "a", supernet_id="x")
    with pytest.raises(ValueError, match="trained with a different recipe"):
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
    """Top-1 inside the retrain recipe's warm-up (2 epochs; 1 in a 2-epoch schedule) is near chance:
    from scratch, successive halving first compares at its end (then 4), a fine-tune at epoch 1 (then 2, 4)."""
    assert [FinetuneConfig(init="scratch", epochs=e).first_rung for e in (1, 2, 4, 6)] == [1, 1, 2, 2]
    assert FinetuneConfig(init="inherited", epochs=4).first_rung == 1
    # candidate 1 trails at epoch 1 (inside the warm-up) but leads at epoch 2
    curves = {0: [50, 60, 70, 80], 1: [10, 65, 75, 85], 2: [55, 40, 45, 50], 3: [30, 20, 25, 30]}
    scratch = successive_halving(ARCHS, lambda k, e: curves[k][e - 1], FinetuneConfig(top=4, epochs=4, init="scratch"))
    assert [r["epochs"] for r in scratch] == [4, 4, 2, 2] and winner_index(scratch) == 1
    fine = successive_halving(ARCHS, lambda k, e: curves[k][e - 1], FinetuneConfig(top=4, epochs=4))
    assert [r["epochs"] for r in fine] == [4, 1, 2, 1] and winner_index(fine) == 0  # 1 stopped in the warm-up


def test_the_final_pick_validates_with_recalibrated_bn_and_trains_as_without(tmp_path):
    """After each epoch a candidate's BN statistics are re-estimated on the first 2 of the one-shot
    score's batches (512 of the 1,438 digits training images) before validation: the weights train exactly
    as without it, only the BN buffers and the validation figure differ, and the figure is that of
    the trained weights with recalibrated BN (what is checkpointed and shipped)."""
    import torch

    from nas_data import load_data
    from nas_training.engine import accuracy
    from search.evaluate import EvalConfig, calibration_batches
    from search.finetune import finetune_step
    from search.retrain import retrain_recipe
    from supernet import ShuffleNet, recalibrate_bn
    from supernet.train import train_model

    data = load_data("digits")
    arch = Arch.parse("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10")
    step, models = finetune_step(None, [arch], data, FinetuneConfig(top=1, epochs=2, init="scratch"), device="cpu",
                                 seed=5, ckpt_dir=tmp_path, supernet_id="x")
    acc = step(0, 2)
    hist = torch.load(next(tmp_path.glob("*.pt")), weights_only=False)["history"]
    assert [h["bn_recalibrated"] for h in hist] == [2, 2]
    torch.manual_seed(5)
    plain = ShuffleNet(arch)
    plain_hist = train_model(plain, data, retrain_recipe(2, 5, 0.05, 128), device="cpu", progress=False)
    assert "bn_recalibrated" not in plain_hist[-1]
    got, ref = models[0].state_dict(), plain.state_dict()
    for n, p in models[0].named_parameters():  # the training is unchanged, bit for bit
        torch.testing.assert_close(p, ref[n], rtol=0, atol=0, msg=n)
    first_bn = next(k for k in ref if k.endswith("running_var"))
    assert not torch.equal(got[first_bn], ref[first_bn])  # the running averages lag the weights
    calib = calibration_batches(data, EvalConfig(), torch.device("cpu"), channels_last=True)
    assert recalibrate_bn(plain, calib) == 6 and recalibrate_bn(plain, calib[:2]) == 2
    for k in ref:
        if k.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(got[k], plain.state_dict()[k], rtol=1e-5, atol=1e-6, msg=k)
    assert acc == pytest.approx(accuracy(plain, data.batches("val", batch_size=256, channels_last=True)), abs=1e-9)
    # interrupted after epoch 1, a new process ends as the uninterrupted pick did, BN buffers included
    cut, _ = finetune_step(None, [arch], data, FinetuneConfig(top=1, epochs=2, init="scratch"), device="cpu",
                           seed=5, ckpt_dir=tmp_path / "cut", supernet_id="x")
    cut(0, 1)
    again, models2 = finetune_step(None, [arch], data, FinetuneConfig(top=1, epochs=2, init="scratch"), device="cpu",
                                   seed=5, ckpt_dir=tmp_path / "cut", supernet_id="x")
    assert again(0, 2) == acc
    torch.testing.assert_close(models2[0].state_dict(), models[0].state_dict(), rtol=0, atol=0)
    # a checkpoint validated with running BN statistics (before the re-estimation) is refused, not compared
    old = tmp_path / "old"
    torch.manual_seed(5)
    train_model(ShuffleNet(arch), data, retrain_recipe(2, 5, 0.05, 128), device="cpu", progress=False,
                checkpoint=old / next(tmp_path.glob("*.pt")).name, config={"arch": str(arch), "init": "scratch"},
                stop_after_epoch=1)
    stale, _ = finetune_step(None, [arch], data, FinetuneConfig(top=1, epochs=2, init="scratch"), device="cpu",
                             seed=5, ckpt_dir=old, supernet_id="x")
    with pytest.raises(ValueError, match="trained with a different bn_calib_batches"):
        stale(0, 2)
