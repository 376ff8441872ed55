"""Multi-fidelity final pick (issue 10 item 3): successive halving over short fine-tunes."""

import pytest

from search.finetune import FinetuneConfig, successive_halving
from search_space import Arch

ARCHS = [Arch.parse(f"stem8|16:v2s0.5|32:v2s0.5|{c}:v2s0.5|conv0|cls10") for c in (64, 48, 96, 128)]
# val top-1 after each fine-tune epoch, per candidate (in one-shot order)
CURVES = {0: [50, 60, 70, 80], 1: [40, 45, 90, 99], 2: [55, 65, 75, 85], 3: [30, 70, 95, 97]}


def _step(calls):
    def step(k, epoch):
        calls.append((k, epoch))
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
    winner = max((r for r in recs if not r["pruned"]), key=lambda r: r["final"])
    assert winner["arch"] == str(ARCHS[2])


def test_an_interrupted_pick_resumes_without_redoing_finished_candidates(tmp_path):
    calls = []
    step = _step(calls)

    def dying(k, epoch):
        if k == 2 and epoch == 2:
            raise KeyboardInterrupt
        return step(k, epoch)

    cfg = FinetuneConfig(top=4, epochs=4)
    with pytest.raises(KeyboardInterrupt):
        successive_halving(ARCHS, dying, cfg, run_dir=tmp_path)
    assert calls == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (2, 1)]
    calls.clear()
    recs = successive_halving(ARCHS, step, cfg, run_dir=tmp_path)
    assert calls == [(2, 1), (2, 2), (2, 3), (2, 4), (3, 1)]  # candidates 0 and 1 are kept as they finished
    assert [r["pruned"] for r in recs] == [False, True, False, True]


@pytest.mark.parametrize("kw, msg", [(dict(top=-1), "finetune_top"), (dict(epochs=0), "finetune_epochs"),
                                     (dict(lr=0), "lr"), (dict(reduction_factor=1), "reduction_factor")])
def test_bad_finetune_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        FinetuneConfig(**kw)


def test_the_real_fine_tune_step_trains_from_inherited_weights_and_resumes(tmp_path):
    import torch

    from search.finetune import finetune_step
    from search_space import SearchSpace
    from supernet import SuperNet
    from supernet.data import load_data
    from tests.search.conftest import TINY

    space = SearchSpace.from_dict(TINY)
    torch.manual_seed(0)
    sup = SuperNet(space, num_classes=10)
    data = load_data("digits")
    archs = [Arch.parse("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10")]
    cfg = FinetuneConfig(top=1, epochs=2, lr=0.05)
    step, models = finetune_step(sup, archs, data, cfg, device="cpu", seed=0, ckpt_dir=tmp_path)
    a1, a2 = step(0, 1), step(0, 2)
    assert 0 <= a1 <= 100 and a2 > 20  # two epochs on digits from an untrained supernet
    # a new process (fresh step) resuming at epoch 2 trains nothing and reports the same figure
    again, models2 = finetune_step(sup, archs, data, cfg, device="cpu", seed=0, ckpt_dir=tmp_path)
    assert again(0, 2) == a2
    for (n, p), (_, q) in zip(models[0].state_dict().items(), models2[0].state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
