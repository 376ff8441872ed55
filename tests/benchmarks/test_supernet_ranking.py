"""benchmarks/supernet_ranking.py --ensemble: per-run tau, its spread, and the tau of the mean score."""

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("supernet_ranking", ROOT / "benchmarks" / "supernet_ranking.py")
sr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sr)

RETRAINED = [60.0, 58.0, 55.0, 50.0, 64.0, 62.0, 57.0, 52.0]
ROLES = ["preset"] * 4 + ["sampled"] * 4


def _result(path: Path, inherited: list[float], retrained=RETRAINED, finetuned: dict | None = None,
            schedule: int | None = None, neg_nll: list[float] | None = None) -> str:
    nets = [{"name": f"n{k}", "role": r, "arch": f"arch{k}", "retrained": t, "inherited": i}
            for k, (r, t, i) in enumerate(zip(ROLES, retrained, inherited))]
    for n, x in zip(nets, neg_nll or []):
        n["inherited_neg_nll"] = x
    for e, scores in (finetuned or {}).items():
        for n, x in zip(nets, scores):
            n[f"finetuned_e{e}"] = x
    path.write_text(json.dumps({"label": path.stem, "networks": nets, "args": {"finetune_epochs": schedule}}))
    return str(path)


def test_ensemble_reports_each_run_their_spread_and_the_tau_of_the_mean_score(tmp_path, capsys):
    a = [30.0, 31.0, 29.0, 20.0, 33.0, 25.0, 26.0, 24.0]
    b = [28.0, 27.0, 30.0, 22.0, 35.0, 34.0, 20.0, 23.0]
    out = tmp_path / "ens.json"
    r = sr.ensemble([_result(tmp_path / "a.json", a), _result(tmp_path / "b.json", b)], str(out))
    tau = lambda x, idx: kendalltau([RETRAINED[i] for i in idx], [x[i] for i in idx]).statistic  # noqa: E731
    groups = {"all": range(8), "presets": range(4), "sampled": range(4, 8)}
    for g, idx in groups.items():
        assert r["runs"][0][g]["tau"] == pytest.approx(tau(a, idx), abs=1e-12)
        assert r["runs"][1][g]["tau"] == pytest.approx(tau(b, idx), abs=1e-12)
        assert r["tau_over_runs"][g]["mean"] == pytest.approx((tau(a, idx) + tau(b, idx)) / 2, abs=1e-12)
        mean = [(x + y) / 2 for x, y in zip(a, b)]
        assert r["ensemble"][g]["tau"] == pytest.approx(tau(mean, idx), abs=1e-12)
        assert r["ensemble"][g]["n"] == len(idx)
    assert r["tau_over_runs"]["all"]["min"] == pytest.approx(min(tau(a, range(8)), tau(b, range(8))))
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert "ensemble: mean inherited score of 2 runs" in capsys.readouterr().out
    assert r["finetuned"] == {}


def test_ensemble_also_combines_the_fine_tuned_scores_every_run_has(tmp_path, capsys):
    inh = [30.0, 31.0, 29.0, 20.0, 33.0, 25.0, 26.0, 24.0]
    f1a = [40.0, 41.0, 39.0, 38.0, 45.0, 44.0, 36.0, 37.0]
    f1b = [42.0, 39.0, 40.0, 35.0, 43.0, 46.0, 38.0, 33.0]
    f2a = [1.0] * 8  # epoch 2 only in run a: not combined
    r = sr.ensemble([_result(tmp_path / "a.json", inh, finetuned={1: f1a, 2: f2a}),
                     _result(tmp_path / "b.json", inh, finetuned={1: f1b})])
    assert list(r["finetuned"]) == ["1"]
    tau = lambda x, idx: kendalltau([RETRAINED[i] for i in idx], [x[i] for i in idx]).statistic  # noqa: E731
    mean = [(x + y) / 2 for x, y in zip(f1a, f1b)]
    for g, idx in {"all": range(8), "presets": range(4), "sampled": range(4, 8)}.items():
        assert r["finetuned"]["1"]["runs"][0][g]["tau"] == pytest.approx(tau(f1a, idx), abs=1e-12)
        assert r["finetuned"]["1"]["runs"][1][g]["tau"] == pytest.approx(tau(f1b, idx), abs=1e-12)
        assert r["finetuned"]["1"]["ensemble"][g]["tau"] == pytest.approx(tau(mean, idx), abs=1e-12)
        assert r["ensemble"][g]["tau"] == pytest.approx(tau(inh, idx), abs=1e-12)  # same inherited scores
    assert [n["finetuned_e1"] for n in r["networks"]] == pytest.approx(mean, abs=1e-12)
    assert "ensemble: mean score fine-tuned 1 epoch(s) of 2 runs" in capsys.readouterr().out


def test_ensemble_also_combines_the_loss_score_when_every_run_has_it(tmp_path, capsys):
    inh = [30.0, 31.0, 29.0, 20.0, 33.0, 25.0, 26.0, 24.0]
    la = [-1.9, -1.8, -2.0, -2.1, -1.7, -1.95, -1.85, -2.05]
    lb = [-2.0, -1.7, -1.9, -2.2, -1.6, -1.75, -2.1, -2.0]
    r = sr.ensemble([_result(tmp_path / "a.json", inh, neg_nll=la), _result(tmp_path / "b.json", inh, neg_nll=lb)])
    tau = lambda x, idx: kendalltau([RETRAINED[i] for i in idx], [x[i] for i in idx]).statistic  # noqa: E731
    mean = [(x + y) / 2 for x, y in zip(la, lb)]
    for g, idx in {"all": range(8), "presets": range(4), "sampled": range(4, 8)}.items():
        assert r["by_loss"]["runs"][0][g]["tau"] == pytest.approx(tau(la, idx), abs=1e-12)
        assert r["by_loss"]["runs"][1][g]["tau"] == pytest.approx(tau(lb, idx), abs=1e-12)
        assert r["by_loss"]["ensemble"][g]["tau"] == pytest.approx(tau(mean, idx), abs=1e-12)
    assert [n["inherited_neg_nll"] for n in r["networks"]] == pytest.approx(mean, abs=1e-12)
    assert "ensemble: mean inherited score: minus the val loss of 2 runs" in capsys.readouterr().out
    # a run without the loss score (written before it existed): top-1 only
    r = sr.ensemble([_result(tmp_path / "a.json", inh, neg_nll=la), _result(tmp_path / "c.json", inh)])
    assert "by_loss" not in r and "inherited_neg_nll" not in r["networks"][0]


def test_mean_nll_is_the_mean_cross_entropy_in_nats_and_refuses_no_samples():
    import torch

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    batches = [(torch.tensor([0, 1]), torch.tensor([0, 2])), (torch.tensor([2]), torch.tensor([1]))]
    nll = sr.mean_nll(lambda idx: logits[idx], batches)
    expected = (-(2 - math.log(math.exp(2) + 2)) - (0 - math.log(math.e + 2)) + math.log(3)) / 3
    assert nll == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="batches: no samples to evaluate"):
        sr.mean_nll(lambda idx: logits[idx], [])


def test_ensemble_does_not_average_fine_tune_epochs_of_different_schedules(tmp_path, capsys):
    """Epoch 1 of a 1-epoch cosine schedule and epoch 1 of a 2-epoch one are different estimates."""
    inh = [30.0, 31.0, 29.0, 20.0, 33.0, 25.0, 26.0, 24.0]
    r = sr.ensemble([_result(tmp_path / "a.json", inh, finetuned={1: inh}, schedule=1),
                     _result(tmp_path / "b.json", inh, finetuned={1: inh, 2: inh}, schedule=2)])
    assert r["finetuned"] == {}
    assert "note: fine-tuned scores not combined: the runs fine-tuned on schedules of [1, 2] epochs" in \
        capsys.readouterr().out


def test_ensemble_refuses_runs_on_another_truth_or_too_few_files(tmp_path):
    a = _result(tmp_path / "a.json", [1.0] * 8)
    other = _result(tmp_path / "b.json", [1.0] * 8, retrained=[61.0] + RETRAINED[1:])
    with pytest.raises(ValueError, match=r"--ensemble: .*b\.json scored other networks or another truth than .*a\.json"):
        sr.ensemble([a, other])
    with pytest.raises(ValueError, match="--ensemble: give at least 2 result files, got 1"):
        sr.ensemble([a])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match=r"--ensemble: .*bad\.json is not a supernet_ranking result \(KeyError"):
        sr.ensemble([a, str(tmp_path / "bad.json")])


def test_curve_snapshot_keeps_its_bytes_when_training_rewrites_the_checkpoint(tmp_path):
    from nas_common import atomic_write

    ckpt, at = tmp_path / "sup.pt", tmp_path / "sup-at20.pt"
    atomic_write(ckpt, lambda p: p.write_bytes(b"epoch 20"))
    sr._snapshot(ckpt, at)
    assert os.path.samefile(ckpt, at)  # a hard link, not a second copy (this file system has them)
    atomic_write(ckpt, lambda p: p.write_bytes(b"epoch 40"))  # what resuming the training does
    assert at.read_bytes() == b"epoch 20"
    assert ckpt.read_bytes() == b"epoch 40"


def test_size_baselines_rank_by_params_mflops_and_latency_per_group(capsys):
    params = [9.0, 5.0, 7.0, 1.0, 2.0, 8.0, 3.0, 6.0]
    mflops = [0.5, 0.4, 0.3, 0.2, 4.0, 3.0, 2.0, 1.0]  # the sampled four in retrained order: tau 1 there
    lat = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    rows = [{"role": r, "retrained": t, "params": p, "mflops": f, "latency_ms": m}
            for r, t, p, f, m in zip(ROLES, RETRAINED, params, mflops, lat)]
    b = sr.baselines(rows)
    assert list(b) == ["params", "mflops", "latency_ms"]
    groups = {"all": range(8), "presets": range(4), "sampled": range(4, 8)}
    for key, xs in (("params", params), ("mflops", mflops), ("latency_ms", lat)):
        for g, idx in groups.items():
            want = kendalltau([xs[i] for i in idx], [RETRAINED[i] for i in idx]).statistic
            assert b[key][g]["tau"] == pytest.approx(want, abs=1e-12)
            assert b[key][g]["n"] == len(idx)
    assert b["mflops"]["sampled"]["tau"] == pytest.approx(1.0, abs=1e-12)
    assert b["mflops"]["presets"]["tau"] == pytest.approx(1.0, abs=1e-12)  # 0.5 > 0.4 > 0.3 > 0.2 as 60 > 58 > 55 > 50
    assert b["latency_ms"]["presets"]["tau"] == pytest.approx(-1.0, abs=1e-12)
    sr._print_baselines(b)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("baseline params ") and "presets tau" in out[0] and "(n=4)" in out[0]
    assert len(out) == 3


def test_matched_pairs_count_only_pairs_within_the_latency_tolerance(tmp_path, capsys):
    # latencies 1.0, 1.2, 1.5, 3.0: within 30% are (0,1) 1.2x and (1,2) 1.25x; (0,2) is 1.5x, 3.0 matches none
    rows = [{"name": f"n{k}", "latency_ms": lat, "retrained": t, "inherited": i}
            for k, (lat, t, i) in enumerate(zip([1.0, 1.2, 1.5, 3.0], [60.0, 50.0, 55.0, 70.0], [30.0, 20.0, 10.0, 0.0]))]
    m = sr.matched_pairs(rows, "inherited", 0.3)
    # (0,1): 30 > 20 and 60 > 50, concordant; (1,2): 20 > 10 but 50 < 55, discordant
    assert m == {"pairs": 2, "concordant": 1, "accuracy": 50.0, "tau": 0.0}
    wide = sr.matched_pairs(rows, "inherited", 0.5)  # adds (0,2): 30 > 10 and 60 > 55, concordant
    assert (wide["pairs"], wide["concordant"]) == (3, 2)
    assert wide["tau"] == pytest.approx(1 / 3, abs=1e-12)
    tied = [dict(r, inherited=20.0 if k < 2 else r["inherited"]) for k, r in enumerate(rows)]
    assert sr.matched_pairs(tied, "inherited", 0.3) == {"pairs": 1, "concordant": 0, "accuracy": 0.0, "tau": -1.0}
    assert sr._score_keys(rows) == ["inherited", "minus_latency"]  # the faster scores higher
    fast_first = sr.matched_pairs(rows, "minus_latency", 0.3)  # (0,1): faster and better; (1,2): faster, worse
    assert (fast_first["pairs"], fast_first["concordant"]) == (2, 1)
    assert sr.matched_pairs(rows[:1], "inherited")["pairs"] == 0
    truth = json.loads((ROOT / "benchmarks" / "ground_truth.json").read_text())
    names = [n["name"] for n in truth["networks"]][:4]
    lat = [n["latency_ms"] for n in truth["networks"]][:4]
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"networks": [dict(r, name=nm) for r, nm in zip(rows, names)]}))
    out = sr.pairs_report([str(res)], str(ROOT / "benchmarks" / "ground_truth.json"), 0.3)
    want = sr.matched_pairs([dict(r, latency_ms=x) for r, x in zip(rows, lat)], "inherited", 0.3)
    assert out[str(res)]["inherited"] == want
    assert list(out[str(res)]) == ["inherited", "minus_latency"]
    assert f"inherited {want['concordant']}/{want['pairs']} " in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"networks": [dict(rows[0], name="nobody")]}))
    with pytest.raises(ValueError, match=r"--pairs: .*bad\.json: network 'nobody' is not in the truth"):
        sr.pairs_report([str(bad)], str(ROOT / "benchmarks" / "ground_truth.json"))


class _FakeSupernet:
    """Stands in for a trained supernet: every network scores ``offset`` + a value of its string."""

    conv0_head, v1_sharing = "shared", "labels"

    def __init__(self, offset: float):
        self.offset = offset

    def eval(self):
        return self


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # the stub's loss is the same for all
def test_main_few_shot_by_stem_from_a_checkpoint_scores_each_network_with_its_stems_sub_supernet(
        tmp_path, monkeypatch, capsys):
    """The whole ``main()`` path of ``--supernet X --few-shot-epochs 2 --few-shot-by stem``, with
    training and scoring stubbed: the right sub-supernets are trained (knobs from the checkpoint,
    init resolved), each network is scored by its stem's, and the JSON holds the baselines and
    the latency-matched pairs."""
    import sys

    import search.evaluate
    import supernet.train as st
    from search_space import Arch, SearchSpace

    truth = json.loads((ROOT / "benchmarks" / "ground_truth.json").read_text())
    keep = ["shufflenet_v1_g1", "shufflenet_v2_x1_0", "sampled02_mixed", "sampled03_mixed", "sampled11_mixed_small",
            "sampled12_v2_small"]
    truth["networks"] = [n for n in truth["networks"] if n["name"] in keep]
    truth["data"]["spec"] = "digits"  # the embedded data: nothing of CIFAR-10 is read
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    ckpt = tmp_path / "both.pt"
    ckpt.write_bytes(b"")
    config = {"small_input": None, "space": SearchSpace.load("default").to_dict(), "width_sharing": "prefix",
              "update": "full"}
    monkeypatch.setattr(st, "load_supernet", lambda p, device="cpu": (_FakeSupernet(0.0), {"epoch": 20, "config": config}))
    trained = []

    def train_supernet(space, data, recipe, **kw):
        trained.append(dict(kw, epochs=recipe.epochs))
        return _FakeSupernet(100.0 if kw["small_input"] else 50.0), {}

    monkeypatch.setattr(st, "train_supernet", train_supernet)
    monkeypatch.setattr(search.evaluate, "calibration_batches", lambda *a, **k: None)
    import torch

    uniform = lambda x: torch.zeros(len(x), 10)  # noqa: E731  (every class equally likely: loss ln 10)
    monkeypatch.setattr(search.evaluate, "evaluate_arch",
                        lambda net, a, *args, **k: (net.offset + len(str(a)) % 13, uniform))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--truth", "truth.json", "--supernet", str(ckpt),
                                      "--few-shot-epochs", "2", "--few-shot-by", "stem", "--seed", "3"])
    sr.main()
    assert [(t["small_input"], t["sampler"], t["width_sharing"], t["init"], t["epochs"]) for t in trained] == [
        (False, "fair", "prefix", ckpt.resolve(), 2), (True, "fair", "prefix", ckpt.resolve(), 2)]
    assert trained[0]["checkpoint"].name.endswith("-fewshot_stem2_fair_seed3-imagenet.pt")
    out = next((tmp_path / "results" / "ranking").glob("both-*-e20-fewshot_stem2_fair_seed3.json"))
    res = json.loads(out.read_text())
    assert [n["name"] for n in res["networks"]] == [n["name"] for n in truth["networks"]]
    for n in res["networks"]:
        a = Arch.parse(n["arch"])
        assert n["inherited"] == len(str(a)) % 13
        assert n["few_shot"] == (100.0 if a.small_input else 50.0) + len(str(a)) % 13
        assert n["inherited_neg_nll"] == pytest.approx(-math.log(10), abs=1e-5)
    rows = [dict(n, latency_ms=t["latency_ms"]) for n, t in zip(res["networks"], truth["networks"])]
    for k in ("inherited", "few_shot"):
        assert res["matched_pairs"][k] == sr.matched_pairs(rows, k, 0.3)
    assert res["matched_pairs"]["tolerance"] == 0.3
    assert res["baselines"] == sr.baselines([dict(n, **{k: t[k] for k in sr.BASELINES})
                                             for n, t in zip(res["networks"], truth["networks"])])
    printed = capsys.readouterr().out
    assert "few-shot by stem variant (+2 epochs per sub-supernet)" in printed
    assert "latency-matched pairs (within 30%)" in printed and "baseline latency (ms)" in printed


def test_main_refuses_a_stem_split_of_a_one_stem_supernet_and_a_bad_tolerance(tmp_path, monkeypatch):
    import sys

    import supernet.train as st
    from search_space import SearchSpace

    config = {"small_input": False, "space": SearchSpace.load("default").to_dict()}
    monkeypatch.setattr(st, "load_supernet", lambda p, device="cpu": (_FakeSupernet(0.0), {"epoch": 20, "config": config}))
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--supernet", "x.pt", "--few-shot-epochs", "2",
                                      "--few-shot-by", "stem"])
    with pytest.raises(SystemExit, match=r"--few-shot-by stem needs a supernet of both stems .*not --small-input no"):
        sr.main()
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--baselines", "--pair-tolerance", "0"])
    with pytest.raises(SystemExit, match=r"--pair-tolerance must be > 0, got 0.0"):
        sr.main()


def test_scratch_estimate_trains_each_network_with_its_truth_recipe_and_another_seed(tmp_path, monkeypatch, capsys):
    """``--scratch-epochs 2 --seed 1``: every network trains from scratch with its first truth run's
    recipe under seed 1, stopped after 2 epochs; tau per epoch and the matched pairs are written."""
    import sys

    import supernet.train as st

    truth = json.loads((ROOT / "benchmarks" / "ground_truth.json").read_text())
    keep = ["shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v2_x1_0", "sampled02_mixed", "sampled04_v2",
            "sampled11_mixed_small"]
    truth["networks"] = [n for n in truth["networks"] if n["name"] in keep]
    truth["data"]["spec"] = "digits"
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    calls = []

    weights = []

    def train_model(model, data, recipe, **kw):
        calls.append((kw["config"]["arch"], recipe, kw["stop_after_epoch"], kw["checkpoint"]))
        weights.append(next(iter(model.state_dict().values())).clone())
        base = 10.0 * len(calls)
        return [{"epoch": e, "val_acc": base + e} for e in range(1, kw["stop_after_epoch"] + 1)]

    monkeypatch.setattr(st, "train_model", train_model)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--truth", "truth.json", "--small-input", "both",
                                      "--scratch-epochs", "2", "--seed", "1"])
    sr.main()
    assert [c[0] for c in calls] == [n["arch"] for n in truth["networks"]]
    for (_, recipe, stop, ckpt), n in zip(calls, truth["networks"]):
        want = dict(n["runs"][0]["recipe"], seed=1)
        assert {k: getattr(recipe, k) for k in want} == want and stop == 2
        assert ckpt == Path("results/ranking/scratch_seed1") / n["name"] / "checkpoint.pt"
    res = json.loads((tmp_path / "results" / "ranking" / "scratch_e2_seed1_stemboth.json").read_text())
    nets = res["networks"]
    assert [n["scratch_e2"] for n in nets] == [12.0, 22.0, 32.0, 42.0, 52.0, 62.0]
    assert [n["truth_e1"] for n in nets] == [n["runs"][0]["history"][0]["val_acc"] for n in truth["networks"]]
    want = kendalltau([n["scratch_e2"] for n in nets], [n["retrained"] for n in nets]).statistic
    assert res["per_epoch"]["2"]["scratch"]["all"]["tau"] == pytest.approx(want, abs=1e-12)
    assert list(res["matched_pairs"])[:3] == ["tolerance", "scratch_e1", "scratch_e2"]
    out = capsys.readouterr().out
    assert "epoch 2: seed 1 from scratch all tau" in out and "note: --seed" not in out
    # --scratch-schedule complete: the final pick's own recipe, a complete 6-epoch schedule, in its own folders
    from search.finetune import scratch_recipe

    calls.clear()
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--truth", "truth.json", "--small-input", "both",
                                      "--scratch-epochs", "6", "--scratch-schedule", "complete", "--seed", "1"])
    sr.main()
    assert [(c[1], c[2]) for c in calls] == [(scratch_recipe(6, 1), 6)] * len(truth["networks"])
    assert scratch_recipe(6, 1).epochs == 6 and scratch_recipe(6, 1).warmup_epochs == 2
    assert all(c[3] == Path("results/ranking/scratch_complete_e6_seed1") / n["name"] / "checkpoint.pt"
               for c, n in zip(calls, truth["networks"]))
    # every network starts from the weights --seed gives it, whatever trained before it
    import torch

    from search_space import Arch
    from supernet import ShuffleNet

    for w, n in zip(weights[-len(calls):], truth["networks"]):
        torch.manual_seed(1)
        torch.testing.assert_close(w, next(iter(ShuffleNet(Arch.parse(n["arch"])).state_dict().values())),
                                   rtol=0, atol=0)
    res = json.loads((tmp_path / "results" / "ranking" / "scratch_complete_e6_seed1_stemboth.json").read_text())
    assert [n["scratch_e6"] for n in res["networks"]] == [16.0, 26.0, 36.0, 46.0, 56.0, 66.0]
    calls.clear()
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--truth", "truth.json", "--scratch-epochs", "16"])
    with pytest.raises(SystemExit) as e:
        sr.main()
    assert e.value.code == 2 and calls == []  # refused before anything trains
    assert "error: --scratch-epochs: 16 is longer than shufflenet_v1_g1's 15-epoch run" in capsys.readouterr().err


def test_pick_replay_scores_each_rule_by_the_retrained_top1_it_leaves_on_the_table():
    """Three networks under the only budget with 3 of them: every shortlist is all three."""
    rows = [{"name": "a", "latency_ms": 1.0, "retrained": 60.0, "small": False, "s": 10.0, "inh": 1.0},
            {"name": "b", "latency_ms": 2.0, "retrained": 50.0, "small": False, "s": 20.0, "inh": 3.0},
            {"name": "c", "latency_ms": 3.0, "retrained": 70.0, "small": True, "s": 5.0, "inh": 4.0}]
    rules = sr.pick_rules(["s", "inh"], "inh")
    assert rules == {"s": ("s", None), "inh": ("inh", None), "s within stem, inh across": ("s", "inh")}
    r = sr.pick_replay(rows, rules, k=3, draws=5)
    # the shortlist is everything under the budget: both regrets agree
    assert r["s"] == {"regret": 20.0, "regret_budget": 20.0, "n": 5, "p_best": 0.0}  # picks b (50%), best 70%
    assert r["inh"] == {"regret": 0.0, "regret_budget": 0.0, "n": 5, "p_best": 1.0}
    assert r["s within stem, inh across"] == {"regret": 0.0, "regret_budget": 0.0, "n": 5, "p_best": 1.0}  # c by inh
    assert r["random"] == {"regret": pytest.approx(10.0, abs=1e-12), "regret_budget": pytest.approx(10.0, abs=1e-12),
                           "n": 5}  # 70 - mean(60, 50, 70)
    # the search's shortlist: the k best by one score under each budget, one per budget
    top = sr.pick_replay(rows, {"s": ("s", None), "inh": ("inh", None)}, k=2, shortlist="inh")
    # budget 2.0: {b, a} (inh 3, 1), best 60; budget 3.0: {c, b} (inh 4, 3), best 70 of all three
    assert top["s"] == {"regret": 15.0, "regret_budget": 15.0, "n": 2, "p_best": 0.0}  # b both times
    assert top["inh"] == {"regret": 5.0, "regret_budget": 5.0, "n": 2, "p_best": 0.5}  # b (10 short), then c
    assert top["random"] == {"regret": 7.5, "regret_budget": 7.5, "n": 2}  # (60 - 55 + 70 - 60) / 2
    # a shortlist that leaves the best out: regret_budget counts it, regret does not
    left_out = sr.pick_replay(rows, {"inh": ("inh", None)}, k=2, shortlist="s")  # 3.0: {b, a} without c
    assert left_out["inh"]["regret"] == pytest.approx((10.0 + 10.0) / 2)
    assert left_out["inh"]["regret_budget"] == pytest.approx((10.0 + 20.0) / 2)
    # at k=2 the budgets 2.0 (a, b) and 3.0 (any 2 of 3) count, 4 draws each
    r2 = sr.pick_replay(rows, {"s": ("s", None)}, k=2, draws=4, seed=1)
    assert r2["s"]["n"] == 8 and 0.0 <= r2["s"]["p_best"] <= 1.0
    with pytest.raises(ValueError, match="more than the 3 networks"):
        sr.pick_replay(rows, rules, k=4)
    with pytest.raises(ValueError, match="--pick-k must be >= 2"):
        sr.pick_replay(rows, rules, k=1)


def test_pick_report_names_each_files_scores_and_uses_the_one_shot_score_across_stems(tmp_path, capsys):
    truth = ROOT / "benchmarks" / "ground_truth.json"
    nets = json.loads(truth.read_text())["networks"]
    small = [n for n in nets if ":small" in n["arch"].split("|")[0]]
    assert len(nets) == 24 and len(small) == 4
    one_shot = {"networks": [{"name": n["name"], "retrained": 0.0, "inherited": float(k)} for k, n in enumerate(nets)]}
    # a from-scratch score equal to the truth (the mean of its runs): picks the best of every shortlist
    scratch = {"networks": [{"name": n["name"], "retrained": 0.0,
                             "scratch_e2": sum(r["val_acc"] for r in n["runs"]) / len(n["runs"])} for n in nets]}
    (tmp_path / "os.json").write_text(json.dumps(one_shot))
    (tmp_path / "sc.json").write_text(json.dumps(scratch))
    r = sr.pick_report([str(tmp_path / "os.json"), str(tmp_path / "sc.json")], str(truth), k=4, draws=3)
    assert r["networks"] == 24 and r["across"] == "os:inherited"
    assert set(r["one_shot_shortlist"]) == set(r["rules"])  # the search's shortlist, replayed too
    assert set(r["rules"]) == {"os:inherited", "sc:scratch_e2", "minus_latency", "random",
                               "sc:scratch_e2 within stem, os:inherited across",
                               "minus_latency within stem, os:inherited across"}
    assert r["rules"]["sc:scratch_e2"]["regret"] == 0.0 and r["rules"]["sc:scratch_e2"]["p_best"] == 1.0
    n_budgets = sum(sum(m["latency_ms"] <= n["latency_ms"] for m in nets) >= 4 for n in nets)
    assert r["rules"]["random"]["n"] == 3 * n_budgets
    assert "final-pick replay: 24 networks" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"networks": [{"name": "nope", "retrained": 1.0}]}))
    with pytest.raises(ValueError, match="network 'nope' is not in the truth"):
        sr.pick_report([str(tmp_path / "bad.json")], str(truth))
