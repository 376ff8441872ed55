"""benchmarks/final_pick.py: reading a retrained shortlist, scoring a pick, and a tiny replay."""

import importlib.util
import json
from pathlib import Path

import pytest
from scipy.stats import kendalltau

from search.config import SearchConfig

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("final_pick", ROOT / "benchmarks" / "final_pick.py")
fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fp)

ARCHS = ["stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10", "stem8|24:v1g1|32:v2s0.5|64:v1g2|conv0|cls10",
         "stem8|16:v1g2x2|32:v1g1|64:v2s0.5|conv64|cls10", "stem8:small|16:v2s0.5|32:v2s0.5|64:v1g1|conv0|cls10"]
RETRAINED = [61.0, 64.5, 60.0, 63.0]


def _result(tmp_path, *, drop_retrain=None, searched=1):
    cfg = SearchConfig(latency_ms=5.0, data="digits", seed=2, finetune_top=4).to_dict()
    ft = [{"arch": a, "acc_inherited": 30.0 - i, "latency_ms": 1.0 + i / 10, "finetune_acc": [20.0, 25.0],
           "final": 25.0, "pruned": False, "finalist": i in (searched, 3), "init": "scratch"}
          for i, a in enumerate(ARCHS)]
    rows = [{"name": "searched", "role": "searched", "arch": ARCHS[searched], "retrained": RETRAINED[searched],
             "latency_ms": 2.0 + searched / 2}]
    rows += [{"name": f"cand{i}", "role": "candidate", "arch": a, "retrained": r, "latency_ms": 2.0 + i / 2}
             for i, (a, r) in enumerate(zip(ARCHS, RETRAINED)) if i != searched and i != drop_retrain]
    rows += [{"name": "shufflenet_v1_g8", "role": "preset", "arch": "p", "retrained": 62.0, "latency_ms": 4.0},
             {"name": "random0", "role": "random", "arch": "r0", "retrained": 63.5}]
    d = {"rows": rows, "search": {"config": cfg, "finetune": ft},
         "summary": {"baseline": "shufflenet_v1_g8", "random_best": 63.5}, "budget": {"budget_ms": 4.009}}
    p = tmp_path / "nas_vs_baseline_tiny.json"
    p.write_text(json.dumps(d))
    return p


def test_load_shortlist_and_score_pick(tmp_path):
    s = fp.load_shortlist(_result(tmp_path))
    assert s["label"] == "nas_vs_baseline_tiny" and s["picked"] == ARCHS[1] and s["budget_ms"] == 4.009
    assert [c["retrained"] for c in s["candidates"]] == RETRAINED and [c["acc"] for c in s["candidates"]] == [30, 29, 28, 27]
    assert (s["random_best"], s["baseline"], s["baseline_acc"], s["baseline_ms"]) == (63.5, "shufflenet_v1_g8", 62.0, 4.0)
    assert [c["bench_ms"] for c in s["candidates"]] == [2.0, 2.5, 3.0, 3.5]  # the benchmark's session, not the pick's
    best = fp.score_pick(s, ARCHS[1])
    assert best == {"retrained": 64.5, "best": 64.5, "regret_pts": 0.0, "rank": 1, "vs_random_best_pts": 1.0,
                    "vs_baseline_pts": 2.5, "latency_ms": 2.5, "vs_baseline_latency": 0.625, "over_budget": False}
    worst = fp.score_pick(s, ARCHS[2], first_rung=[40.0, 45.0, 41.0, 44.0])
    assert worst["regret_pts"] == pytest.approx(4.5) and worst["rank"] == 4
    assert worst["vs_random_best_pts"] == pytest.approx(-3.5) and worst["vs_baseline_pts"] == pytest.approx(-2.0)
    assert worst["tau_first_rung"] == pytest.approx(kendalltau([40, 45, 41, 44], RETRAINED)[0]) == pytest.approx(2 / 3)
    assert fp.score_pick(s, ARCHS[0], first_rung=[9.75] * 4)["tau_first_rung"] is None  # constant: undefined, not NaN
    s["budget_ms"] = 2.9
    assert [fp.score_pick(s, a)["over_budget"] for a in ARCHS] == [False, False, True, True]
    with pytest.raises(ValueError, match="score_pick: x is not in the shortlist nas_vs_baseline_tiny"):
        fp.score_pick(s, "x")


def test_a_shortlist_not_all_retrained_or_without_a_pick_is_refused(tmp_path):
    with pytest.raises(ValueError, match="1 of the 4 shortlisted candidates were not retrained; run "
                                         "nas_vs_baseline.py again without --no-retrain-shortlist"):
        fp.load_shortlist(_result(tmp_path, drop_retrain=2))
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"rows": [], "search": {"finetune": []}}))
    with pytest.raises(ValueError, match="not a nas_vs_baseline.py result with a final pick"):
        fp.load_shortlist(p)
    assert fp.main([str(p), "--out", str(tmp_path / "o")]) == 2


def test_the_replay_runs_the_search_s_final_pick_and_resumes(tmp_path, capsys):
    """Two epochs from scratch on digits: per stem, successive halving (rung 1: 3 ImageNet-stem
    candidates -> 1, the small-stem one alone); the finalist with the better one-shot score ships."""
    res = _result(tmp_path)
    out, js = tmp_path / "out", tmp_path / "fp.json"
    argv = [str(res), "--epochs", "2", "--out", str(out), "--json", str(js), "--quiet"]
    assert fp.main(argv) == 0
    d = json.loads(js.read_text())
    assert d["finetune"] == {"epochs": 2, "reduction_factor": 2, "init": "scratch", "rungs": [1], "first_rung": 1}
    (r,) = d["shortlists"]
    recs = r["replayed"]["records"]
    assert [x["stem"] for x in recs] == ["imagenet"] * 3 + ["small"]
    assert [x["epochs"] for x in recs].count(2) == 2 and r["replayed"]["epochs_trained"] == 3 + 1 + 2
    finalists = [x for x in recs if x["finalist"]]
    assert len(finalists) == 2 and finalists[1]["arch"] == ARCHS[3]
    assert r["replayed"]["picked"] == finalists[0]["arch"]  # the ImageNet-stem finalist: better one-shot score
    k = ARCHS.index(r["replayed"]["picked"])
    assert r["replayed"]["retrained"] == RETRAINED[k] and r["replayed"]["regret_pts"] == pytest.approx(64.5 - RETRAINED[k])
    assert r["search_pick"]["retrained"] == 64.5 and r["search_pick"]["rank"] == 1
    ckpts = sorted(out.rglob("*.pt"))
    assert len(ckpts) == 4 and {c.parent.name for c in ckpts} == {"finetune-scratch-e2-bn2"}
    spent = json.loads(next(out.rglob("seconds.json")).read_text())["seconds"]
    assert spent == r["replayed"]["seconds"] > 0
    stamps = [c.stat().st_mtime_ns for c in ckpts]
    assert fp.main(argv) == 0  # a second run trains nothing and reports the same pick
    again = json.loads(js.read_text())["shortlists"][0]["replayed"]
    assert [c.stat().st_mtime_ns for c in ckpts] == stamps
    assert (again["picked"], again["records"]) == (r["replayed"]["picked"], recs)
    assert again["seconds"] > spent  # the training time of the first run, plus the reprint's
    assert "| nas_vs_baseline_tiny | 4 | 64.50% |" in capsys.readouterr().out


def test_the_final_pick_replayed_with_fewer_candidates_on_recorded_curves():
    """benchmarks/final_pick_top.py: the first N candidates, halving within each stem on the recorded
    curves (6 epochs, rungs 2 and 4), each stem's best a finalist, the best one-shot finalist picked."""
    spec = importlib.util.spec_from_file_location("final_pick_top", ROOT / "benchmarks" / "final_pick_top.py")
    fpt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fpt)
    cands = [{"arch": a, "acc": 30.0 - i, "latency_ms": 1.0 + i / 10, "retrained": r}
             for i, (a, r) in enumerate(zip(ARCHS, RETRAINED))]
    curves = {ARCHS[0]: [10, 20, 30, 40, 50, 60], ARCHS[1]: [10, 25, 35, 45, 55, 65],
              ARCHS[2]: [10, 15], ARCHS[3]: [12, 22, 32, 42, 52, 62]}
    # ImageNet stem: 0, 1, 2 -> rung 2 keeps 1 (25 > 20 > 15), which trains on; small stem: 3 alone.
    # Finalists 1 (one-shot 29) and 3 (27): 1 is picked; 3 x 2 + 4 + 6 = 16 candidate-epochs
    assert fpt.replay_top(cands, curves, 4) == {"picked": ARCHS[1], "retrained": 64.5, "best": 64.5, "epochs": 16}
    # the first two only: rung 2 keeps 1 again; 2 + 2 + 4 = 8 epochs
    assert fpt.replay_top(cands, curves, 2) == {"picked": ARCHS[1], "retrained": 64.5, "best": 64.5, "epochs": 8}
    # a pick that needs an epoch the recorded run did not train is no result, not a guess
    curves[ARCHS[2]] = [10, 99]  # now 2 wins rung 2, but was stopped there in the recorded run
    assert fpt.replay_top(cands, curves, 3) is None
