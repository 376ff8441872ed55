"""benchmarks/nas_vs_baseline.py: its selection and comparison logic, and a tiny end-to-end run."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import kendalltau

from search.records import TrialRecord
from tests.search.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("nas_vs_baseline", ROOT / "benchmarks" / "nas_vs_baseline.py")
nvb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nvb)


def rec(i, lat, acc=50.0, **kw):
    return TrialRecord(**{"number": i, "source": "sampled", "arch": f"a{i}", "acc": acc, "pred_ms": lat,
                          "measured_ms": None, "feasible": True, "evaluated": True, "params": 1000 + i, "mflops": 0.5,
                          **kw})


def test_pick_spanning_takes_one_per_latency_quantile():
    recs = [rec(i, float(lat)) for i, lat in enumerate(np.random.default_rng(0).permutation(100))]
    recs += [rec(100, 5.0, feasible=False), rec(101, 6.0, evaluated=False), rec(102, 7.0, source="shufflenet_v2_x1_0")]
    recs += [rec(103, 99.0).replace(arch="a5")]  # a duplicate arch counts once
    picked = nvb.pick_spanning(recs, 4, exclude={"a7"}, seed=0)
    lats = sorted(r.latency_ms for r in picked)
    assert len(picked) == 4 and len({r.arch for r in picked}) == 4
    # 98 eligible candidates (100 minus the excluded a7 and the duplicate) in bins of 25, 25, 24, 24
    assert 0 <= lats[0] < 26 and 26 <= lats[1] < 52 and 52 <= lats[2] < 77 and 77 <= lats[3] < 100
    assert not {r.arch for r in picked} & {"a7", "a100", "a101", "a102"}
    assert nvb.pick_spanning(recs, 4, exclude={"a7"}, seed=0) == picked  # deterministic under a seed
    assert len(nvb.pick_spanning(recs[:3], 8, exclude=set())) == 3  # never more than there are
    assert nvb.pick_spanning(recs, 0, exclude=set()) == []


def row(name, role, arch, inh, ret, lat):
    return {"name": name, "role": role, "arch": arch, "inherited": inh, "retrained": ret, "latency_ms": lat}


def test_compare_rows_gap_baseline_and_ranking():
    rows = [row("searched", "searched", "w", 70.0, 66.5, 2.0),
            row("x1_0", "preset", "p1", 60.0, 64.0, 2.2),
            row("g3", "preset", "p2", 65.0, 65.0, 2.1),
            row("x1_5", "preset", "p3", 68.0, 70.0, 2.6),  # stronger but over the 2.4 ms budget
            row("rank0", "ranked", "r0", 50.0, 55.0, 1.0)]
    s = nvb.compare_rows(rows, 2.4)
    assert s["baseline"] == "g3" and s["gap_pts"] == pytest.approx(1.5) and s["no_slower"] is True
    assert s["latency_ratio"] == pytest.approx(2.0 / 2.1)
    assert s["sample_n"] == 1 and s["sample_mean"] == 55.0 and s["sample_best"] == 55.0
    assert s["searched_rank"] == 2  # only x1_5 (70.0%) retrained better
    # 10 pairs, one discordant (w, x1_5): tau = (9 - 1) / 10
    want = kendalltau([70, 60, 65, 68, 50], [66.5, 64, 65, 70, 55]).statistic
    assert s["n_ranked"] == 5 and s["kendall_tau"] == pytest.approx(want) and s["kendall_tau"] == pytest.approx(0.8)
    # a winner that is itself a preset is ranked once; no preset in budget -> no baseline
    dup = [row("searched", "searched", "p1", 60.0, 64.0, 2.2), rows[1], rows[3], rows[4]]
    s2 = nvb.compare_rows(dup, 2.4)
    assert s2["n_ranked"] == 3 and s2["baseline"] == "x1_0" and s2["gap_pts"] == 0.0
    assert "gap_pts" not in nvb.compare_rows(rows, 1.5) and nvb.compare_rows(rows, 1.5)["baseline"] is None
    assert "random_n" not in s
    # the random-search control: the winner against the best random network under the budget
    rand = rows + [row("random0", "random", "q0", 40.0, 67.0, 1.9), row("random1", "random", "q1", 45.0, 60.0, 2.3)]
    s3 = nvb.compare_rows(rand, 2.4)
    assert s3["random_n"] == 2 and s3["random_best"] == 67.0 and s3["random_mean"] == pytest.approx(63.5)
    assert s3["vs_random_best_pts"] == pytest.approx(66.5 - 67.0)
    assert "pick_n" not in s3
    # the final pick against its own shortlist: the winner plus its other candidates, retrained
    picks = rows + [row("cand0", "candidate", "c0", 69.0, 68.25, 2.3), row("cand1", "candidate", "c1", 71.0, 60.0, 1.2)]
    s4 = nvb.compare_rows(picks, 2.4)
    assert (s4["pick_n"], s4["pick_best"], s4["pick_regret_pts"]) == (3, 68.25, 68.25 - 66.5)
    # the shortlist stays out of tau and the rank, which compare with runs before it was retrained
    assert {k: s4[k] for k in ("n_ranked", "searched_rank", "kendall_tau")} == {
        k: s[k] for k in ("n_ranked", "searched_rank", "kendall_tau")}
    # a shortlisted preset counts in the shortlist through pick_shortlist (it is retrained once, as a preset)
    s5 = nvb.compare_rows(picks, 2.4, pick_shortlist=["w", "p3", "c0"])
    assert (s5["pick_n"], s5["pick_best"]) == (4, 70.0)


def _imagefolder(root: Path, n: int = 24) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, base in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = np.clip(np.array(base) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")


@pytest.mark.slow
def test_tiny_end_to_end_and_rerun_reuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHUFFLENAS_CACHE", str(tmp_path / "cache"))
    _imagefolder(tmp_path / "imgs")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"calib_archs": 20, "top_k": 3, "device": "cpu", "finetune_top": 2,
                                                        "finetune_epochs": 1}))
    out = tmp_path / "bench"
    argv = ["--root", str(tmp_path / "imgs"), "--per-class", "0", "--latency-ms", "1000", "--supernet-epochs", "1",
            "--trials", "10", "--retrain-epochs", "2", "--rank-archs", "3", "--random-archs", "2",
            "--val-fraction", "0.25", "--space", str(tmp_path / "tiny.yaml"),
            "--search-config", str(tmp_path / "cfg.yaml"), "--search-seed", "3", "--out", str(out), "--quiet"]
    assert nvb.main(argv) == 0
    res = json.loads((out / "nas_vs_baseline.json").read_text())
    rows = res["rows"]
    assert (out / "nas_vs_baseline.png").stat().st_size > 10_000
    assert [r["role"] for r in rows] == ["searched", "candidate"] + ["ranked"] * 3 + ["random"] * 2
    assert len({r["arch"] for r in rows}) == 7  # the samples never repeat the winner or each other
    # the final pick's other candidate is retrained beside the winner
    search = json.loads((Path(res["run_dir"]) / "result.json").read_text())
    assert {r["arch"] for r in rows[:2]} == {c["arch"] for c in search["finetune"]}  # no preset in the tiny space
    assert all(r["latency_ms"] <= 1000 for r in rows if r["role"] == "random")
    assert res["summary"]["random_n"] == 2 and res["summary"]["pick_n"] == 2
    assert res["summary"]["pick_regret_pts"] == max(r["retrained"] for r in rows[:2]) - rows[0]["retrained"]
    from nas_data import load_data

    held = load_data(f"imagefolder:{tmp_path / 'imgs'}", val_fraction=0.25)
    assert res["data"]["val"] == int(held.val_y.numel()) > int(load_data(f"imagefolder:{tmp_path / 'imgs'}").val_y.numel())
    run_yaml = yaml.safe_load((Path(res["run_dir"]) / "run.yaml").read_text())
    assert run_yaml["config"]["val_fraction"] == 0.25 and run_yaml["data"]["val"] == res["data"]["val"]
    # --search-seed seeds the search alone; the retrains keep --seed, so their recipe matches other runs'
    assert run_yaml["config"]["seed"] == 3 and res["search"]["config"]["seed"] == 3 and res["recipe"]["seed"] == 0
    for r in rows:  # every figure in the table is the one its retrain and the latency file recorded
        m = json.loads((out / "retrain" / r["name"] / "metrics.json").read_text())
        assert m["arch"] == r["arch"] and r["retrained"] == m["val_acc"] and len(m["history"]) == 2
        assert r["latency_ms"] == json.loads((out / "latency.json").read_text())[r["arch"]]["median_ms"]
    ranked = [r for r in rows if r["role"] != "candidate"]  # the shortlist stays out of tau
    a, b = [r["inherited"] for r in ranked], [r["retrained"] for r in ranked]
    if len(set(a)) > 1 and len(set(b)) > 1:
        assert res["summary"]["kendall_tau"] == pytest.approx(kendalltau(a, b).statistic)
    assert res["summary"]["baseline"] is None  # no preset lies in the tiny space
    out_text = capsys.readouterr().out
    assert "Kendall tau" in out_text or len(set(a)) == 1 or len(set(b)) == 1

    stamp = {r["name"]: (out / "retrain" / r["name"] / "metrics.json").stat().st_mtime_ns for r in rows}
    assert nvb.main(argv) == 0  # a second invocation reuses the search, the latencies and every retrain
    assert "[1/4] search: reusing" in capsys.readouterr().out
    res2 = json.loads((out / "nas_vs_baseline.json").read_text())
    assert res2["rows"] == rows
    assert stamp == {r["name"]: (out / "retrain" / r["name"] / "metrics.json").stat().st_mtime_ns for r in rows}
    # another search seed (or budget) in the same --out must not reuse this search under the new flags
    argv[argv.index("--search-seed") + 1] = "4"
    assert nvb.main(argv) == 2
    assert "holds a search with other settings (seed 3, now 4;" in capsys.readouterr().err


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    assert nvb.main(["--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_role_folder_holding_another_networks_checkpoint_is_cleared(tmp_path, capsys):
    """A re-run whose winner changed met the old winner's checkpoint in retrain/searched and
    stopped with 'trained with a different arch'; the stale checkpoint is now dropped."""
    import torch

    recipe = {"epochs": 2}
    ck = tmp_path / "searched" / "checkpoint.pt"
    ck.parent.mkdir()
    torch.save({"config": {"arch": "old", "recipe": recipe}}, ck)
    nvb._drop_stale_checkpoint(ck, "old", recipe)
    assert ck.is_file()  # the same network: kept, it resumes
    nvb._drop_stale_checkpoint(ck, "new", recipe)
    assert not ck.exists() and "searched: dropping the checkpoint of old (now new)" in capsys.readouterr().out
    torch.save({"config": {"arch": "new", "recipe": {"epochs": 3}}}, ck)
    nvb._drop_stale_checkpoint(ck, "new", recipe)  # another recipe: dropped too
    assert not ck.exists()
    nvb._drop_stale_checkpoint(ck, "new", recipe)  # nothing there: nothing to do


def test_reusable_retrains_match_recipe_and_data_and_refuse_disagreement(tmp_path, capsys):
    recipe = {"epochs": 10, "seed": 0}
    data = {"spec": "imagefolder:x@1000", "train": 4805, "val": 5195, "root": "x"}
    rows = [{"arch": "a1", "retrained": 53.74}, {"arch": "a2", "retrained": 40.64}, {"arch": "a3", "retrained": None}]
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"recipe": recipe, "data": {**data, "root": "elsewhere"}, "rows": rows}))
    other = tmp_path / "other.json"  # another split: nothing from it
    other.write_text(json.dumps({"recipe": recipe, "data": {**data, "val": 5000}, "rows": [{"arch": "a9", "retrained": 1.0}]}))
    assert nvb.reusable_retrains([good, other], recipe, data) == {"a1": (53.74, str(good)), "a2": (40.64, str(good))}
    assert "--reuse-retrains " + str(other) + ": another recipe or data" in capsys.readouterr().out
    assert nvb.reusable_retrains([good], {**recipe, "epochs": 15}, data) == {}
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"recipe": recipe, "data": data, "rows": [{"arch": "a1", "retrained": 52.0}]}))
    with pytest.raises(ValueError, match=r"--reuse-retrains: a1 retrained to 53.74 in .*good.json and 52.0 in"):
        nvb.reusable_retrains([good, clash], recipe, data)


def test_the_budget_preset_is_the_baseline_whatever_its_remeasurement():
    rows = [row("searched", "searched", "w", 70.0, 66.0, 2.4),
            row("g8", "preset", "p1", 60.0, 64.0, 2.45),  # the budget's preset, re-measured 2% over it
            row("g3", "preset", "p2", 65.0, 63.0, 2.1)]
    s = nvb.compare_rows(rows, 2.4, budget_preset="g8")
    assert s["baseline"] == "g8" and s["budget_preset"] == "g8" and s["gap_pts"] == pytest.approx(2.0)
    assert s["no_slower"] is True and s["latency_ratio"] == pytest.approx(2.4 / 2.45)
    s = nvb.compare_rows(rows, 2.4)  # without it the over-budget reading leaves it out
    assert s["baseline"] == "g3" and s["budget_preset"] is None and s["gap_pts"] == pytest.approx(3.0)


def test_in_budget_keeps_the_budget_preset_and_the_first_random_rows_within_it():
    rows = [row("searched", "searched", "w", 70.0, 0, 2.5), row("g8", "preset", "p1", 60.0, 0, 2.45),
            row("g3", "preset", "p2", 65.0, 0, 2.1), row("x2", "preset", "p3", 65.0, 0, 3.0),
            row("random0", "random", "r0", 1, 0, 2.6), row("random1", "random", "r1", 1, 0, 2.3),
            row("random2", "random", "r2", 1, 0, 1.0), row("random3", "random", "r3", 1, 0, 2.0)]
    assert [r["name"] for r in nvb.in_budget(rows, 2.4, 2, "g8")] == ["searched", "g8", "g3", "random1", "random2"]
    assert [r["name"] for r in nvb.in_budget(rows, 2.4, 5)] == ["searched", "g3", "random1", "random2", "random3"]


def test_budget_at_measures_once_and_reuses_or_refuses_a_kept_budget(tmp_path, monkeypatch):
    from search.latency import measure_many as real
    from search_space import SearchSpace, get_preset

    calls = []

    def counting(models, *a, **kw):
        calls.append(len(models))
        return real(models, *a, **kw)

    monkeypatch.setattr("search.latency.measure_many", counting)
    space = SearchSpace.load("default")
    kw = {"space": space, "threads": 1, "num_classes": 10, "size": 32}
    d = nvb.budget_at("shufflenet_v2_x0_5:small", tmp_path, **kw)
    saved = json.loads((tmp_path / "budget.json").read_text())
    assert calls == [1] and d == saved and d["budget_ms"] == round(d["median_ms"], 3) and d["budget_ms"] > 0
    assert d["preset"] == "shufflenet_v2_x0_5:small"
    assert d["arch"] == str(get_preset("shufflenet_v2_x0_5", 10, small_input=True))
    assert nvb.budget_at("shufflenet_v2_x0_5:small", tmp_path, **kw) == d and calls == [1]  # re-run: read back
    # another --out at the same budget (a second search seed): the file is reused, not measured again
    d2 = nvb.budget_at(str(tmp_path / "budget.json"), tmp_path / "seed1", **kw)
    assert calls == [1] and d2["budget_ms"] == d["budget_ms"] and d2["reused_from"] == str(tmp_path / "budget.json")
    assert json.loads((tmp_path / "seed1" / "budget.json").read_text()) == d2
    with pytest.raises(ValueError, match="--budget-at shufflenet_v2_x0_5:small or another --out"):
        nvb.budget_at("shufflenet_v1_g8", tmp_path, **kw)
    with pytest.raises(ValueError, match="measured with 1 thread.*use --threads 1"):
        nvb.budget_at("shufflenet_v2_x0_5:small", tmp_path, **dict(kw, threads=2))
    with pytest.raises(ValueError, match=r"measured with 1 thread\(s\) at \[1, 3, 32, 32\]"):
        nvb.budget_at(str(tmp_path / "budget.json"), tmp_path / "big", **dict(kw, size=64))
    for bad in ("shufflenet_v9", "shufflenet_v1_g8:tiny", "shufflenet_v1_g8:"):  # a bare ':' names no row
        with pytest.raises(ValueError, match="--budget-at: unknown preset .*shufflenet_v1_g8:small"):
            nvb.budget_at(bad, tmp_path / "other", **kw)
    assert calls == [1] and not (tmp_path / "other").exists()


def test_budget_at_a_preset_outside_the_space_is_refused_before_any_work(tmp_path, capsys):
    _imagefolder(tmp_path / "imgs")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    rc = nvb.main(["--root", str(tmp_path / "imgs"), "--per-class", "0", "--budget-at", "shufflenet_v1_g8",
                   "--space", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and ("--budget-at: shufflenet_v1_g8 is not in space 'tiny-run', so it would not be compared; "
                        "the space holds no preset: use --latency-ms") in err
    assert not (tmp_path / "out" / "budget.json").exists() and not (tmp_path / "out" / "search").exists()
    with pytest.raises(SystemExit) as e:  # one budget or the other
        nvb.main(["--root", str(tmp_path / "imgs"), "--budget-at", "shufflenet_v1_g8", "--latency-ms", "5"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
