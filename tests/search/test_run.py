"""End to end: python -m search.run on tiny settings (Optuna backend)."""

import json

import pytest
import torch
import yaml

from nas_data import load_data
from nas_training.engine import accuracy
from search.export import load_artefact, load_model
from search.finetune import FinetuneConfig
from search.latency import Conditions
from search.run import main
from search_space import Arch


def test_search_exports_a_model_that_fits_and_reloads(env, capsys):
    base, out = env
    assert main(base + ["--latency-ms", "1000", "--trials", "6", "--finetune-top", "4", "--stem-search", "stratified"]) == 0
    run = (out / "latest").resolve()
    for f in ("model.pt", "model.ts", "arch.yaml", "trials.csv", "pareto.png", "report.md", "run.yaml", "result.json"):
        assert (run / f).is_file(), f
    res = json.loads((run / "result.json").read_text())
    w = res["winner"]
    assert res["n_trials"] == 6
    assert w["latency"]["median_ms"] <= 1000 and w["latency"]["env"]["runtime"] == "eager"
    arch = Arch.from_yaml((run / "arch.yaml").read_text())
    assert str(arch) == w["arch"]
    data = load_data("digits")
    m = load_model(run)
    acc = accuracy(m, data.batches("val", batch_size=256))
    # the final pick (default: candidates trained from scratch on a 6-epoch schedule, successive
    # halving within each stem at rungs 2 and 4, eta 2); the more accurate of the winner's
    # from-scratch and inherited weights ships (no fine-tune of the winner without --finetune-winner)
    sh = res["finetune"]
    assert len(sh) == 4 and {r["init"] for r in sh} == {"scratch"}
    ft = FinetuneConfig(top=4, epochs=6, init="scratch")
    assert ft.rungs == (2, 4)
    for stem in {r["stem"] for r in sh}:
        group = [r for r in sh if r["stem"] == stem]
        left = len(group)
        for _ in ft.rungs:
            left = max(1, left // 2)
        assert sum(r["epochs"] for r in group) == ft.planned_epochs(len(group))
        assert [r["epochs"] for r in group].count(6) == left == sum(not r["pruned"] for r in group)
        assert all(r["epochs"] in ft.rungs for r in group if r["pruned"])
    _check_final_pick(w, sh)
    assert "acc_finetuned" not in w and "val_acc_finetuned" not in m.meta
    accs = {"scratch": w["acc_scratch"], "inherited": w["acc"]}
    shipped_acc = max(accs.values())
    assert accs[w["weights"]] == shipped_acc and m.meta["weights"] == w["weights"]
    assert acc == pytest.approx(shipped_acc, abs=1e-9)
    assert len(list((run / "finetune-scratch-e6-bn2").glob("*.pt"))) == 4 and not (run / "finetune-bn2").exists()
    assert "the exported model carries the winner's more accurate weights on the validation split (from scratch " \
           "or inherited)" in (run / "report.md").read_text()
    kind = {"scratch": "from-scratch"}.get(w["weights"], w["weights"])
    printed = capsys.readouterr().out
    assert f"{w['acc_scratch']:.2f}% from scratch, 6 epochs; ships the {kind} weights)" in printed
    assert f"Shipped weights: **{ {'scratch': 'from scratch'}.get(w['weights'], w['weights'])}**" in (
        run / "report.md").read_text()
    ts = load_artefact(run, "torchscript")
    x = next(data.batches("val", batch_size=64))[0]
    with torch.no_grad():
        torch.testing.assert_close(ts(x), m(x), rtol=0, atol=1e-5)
    assert accuracy(ts, data.batches("val", batch_size=256)) == pytest.approx(shipped_acc, abs=1e-9)
    import onnx

    onnx.checker.check_model(str(run / "model.onnx"))
    assert "\\|" in (run / "report.md").read_text()  # arch strings escaped inside the Markdown table
    # issue 11: what ships is what was measured; every artefact is measured after export, conditions recorded
    assert m.memory_format == w["latency"]["env"]["memory_format"] == "channels_last"
    assert m.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    shipped = w["shipped"]
    assert list(shipped) == ["model", "export", "torchscript", "onnx"]
    assert [(v["file"], v["runtime"], v["memory_format"], v["primary"]) for v in shipped.values()] == [
        ("model.pt", "eager", "channels_last", True), ("model.pt2", "eager", "contiguous", False),
        ("model.ts", "eager", "contiguous", False), ("model.onnx", "onnxruntime", "contiguous", False)]
    assert all(v["threads"] == 1 and v["batch"] == 1 and v["median_ms"] > 0 for v in shipped.values())
    report = (run / "report.md").read_text()
    assert "| `model.pt` | eager | channels_last |" in report and "budget checked on this one" in report
    assert m.meta["categories"] == data.classes and m.transforms is not None
    assert "searched:" in printed
    # issue 10: the stem variant is searched (the tiny space declares both), the budget decides
    import csv

    with open(run / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    stems = [Arch.parse(r["arch"]).small_input for r in trials]
    # searched stratified (--stem-search): one study per stem variant, 3 trials each, numbered as one search
    assert stems == [False] * 3 + [True] * 3 and [int(r["number"]) for r in trials] == list(range(6))
    assert (run / "search-imagenet" / "study.journal").is_file() and (run / "search-small" / "study.journal").is_file()
    assert not (run / "study.journal").exists()
    # and the final pick's shortlist of 4 holds the best 2 of each stem by one-shot score
    assert sorted(r["stem"] for r in sh) == ["imagenet", "imagenet", "small", "small"]
    for small, stem in ((False, "imagenet"), (True, "small")):
        best = sorted((float(r["acc"]) for r, s in zip(trials, stems) if s is small and r["feasible"] == "True"),
                      reverse=True)
        assert sorted((r["acc_inherited"] for r in sh if r["stem"] == stem), reverse=True) == best[:2]  # ties: either


def test_finetune_winner_also_fine_tunes_the_winner_from_inherited_weights(env):
    """``--finetune-winner``: the from-scratch pick's winner is fine-tuned from its inherited weights
    too (checkpointed in finetune/), and the most accurate of its three weights ships."""
    base, out = env
    assert main(base + ["--latency-ms", "1000", "--trials", "2", "--epochs", "1", "--finetune-top", "1",
                        "--finetune-epochs", "1", "--finetune-winner"]) == 0
    run = (out / "latest").resolve()
    w = json.loads((run / "result.json").read_text())["winner"]
    accs = {"fine-tuned": w["acc_finetuned"], "scratch": w["acc_scratch"], "inherited": w["acc"]}
    m = load_model(run)
    assert accs[w["weights"]] == max(accs.values()) and m.meta["val_acc_finetuned"] == w["acc_finetuned"]
    assert len(list((run / "finetune-bn2").glob("*.pt"))) == 1
    assert yaml.safe_load((run / "run.yaml").read_text())["config"]["finetune_winner"] is True
    assert "the winner is then fine-tuned from its inherited weights" in (run / "report.md").read_text()


def _check_final_pick(w, sh):
    """Issue 10: successive halving within each stem; each stem's most accurate finisher is a
    finalist; the finalist with the best one-shot score (ties: faster) ships."""
    for stem in {r["stem"] for r in sh}:
        group = [r for r in sh if r["stem"] == stem]
        fin = [r for r in group if r["finalist"]]
        assert len(fin) == 1 and fin[0]["final"] == max(r["final"] for r in group if not r["pruned"])
    best = max((r for r in sh if r["finalist"]), key=lambda r: (r["acc_inherited"], -r["latency_ms"]))
    trained = {"inherited": "acc_finetuned", "scratch": "acc_scratch"}[best["init"]]
    assert w["arch"] == best["arch"] and w[trained] == best["final"]


def test_a_searched_small_stem_is_exported_and_reloads(tmp_path):
    """Issue 10 must-show: a winner with the small-input stem ships and reloads exactly."""
    import onnx

    from search.export import export_model
    from supernet import ShuffleNet
    from tests.helpers import randomize_bn

    arch = Arch.parse("stem8:small|16:v2s0.5,v1g2|32:v1g2|64:v2s0.5|conv64|cls10")
    torch.manual_seed(0)
    model = ShuffleNet(arch)
    randomize_bn(model, 0)
    model.eval()
    export_model(model, tmp_path, input_size=32)
    again = load_model(tmp_path)
    assert again.arch == arch and again.arch.small_input
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(again(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(load_artefact(tmp_path, "torchscript")(x), ref, rtol=0, atol=1e-5)
    onnx.checker.check_model(str(tmp_path / "model.onnx"))


@pytest.mark.parametrize("stem_search", ["joint", "stratified"])
def test_resume_keeps_every_finished_trial(env, monkeypatch, capsys, stem_search):
    base, out = env
    import search.evaluate as ev

    real = ev.Scorer.__call__
    calls = {"n": 0}

    def flaky(self, arch):
        calls["n"] += 1
        if calls["n"] == 5:  # 4 trials done (stratified: the ImageNet stem's 3, the small stem's first)
            raise KeyboardInterrupt
        return real(self, arch)

    monkeypatch.setattr(ev.Scorer, "__call__", flaky)
    assert main(base + ["--latency-ms", "1000", "--trials", "6", "--stem-search", stem_search]) == 130
    run = next(p for p in out.iterdir() if p.is_dir() and p.name != "latest")
    assert not (out / "latest").exists()  # an interrupted run does not become 'latest'
    import optuna

    from search.backends.optuna import open_study

    folders = {"joint": {"": 6}, "stratified": {"search-imagenet": 3, "search-small": 3}}[stem_search]

    def complete(folder):  # the study of the run (joint), or of each stem variant (stratified)
        return {t.number: (t.params, t.values) for t in open_study(run / folder, seed=0).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}

    before = {f: complete(f) for f in folders}
    assert [len(v) for v in before.values()] == {"joint": [4], "stratified": [3, 1]}[stem_search]
    assert {p.name for p in run.glob("search-*")} == set(folders) - {""}
    monkeypatch.setattr(ev.Scorer, "__call__", real)
    assert main(["--resume", str(run), "--quiet"]) == 0
    for f, n in folders.items():
        after = complete(f)
        assert len(after) == n and all(after[k] == v for k, v in before[f].items())
    if stem_search == "joint":  # one study over both stems
        import csv

        with open(run / "trials.csv") as fh:
            assert {Arch.parse(r["arch"]).small_input for r in csv.DictReader(fh)} == {False, True}
    # a run is never continued with another supernet (its trials' scores would not compare)
    meta = yaml.safe_load((run / "run.yaml").read_text())
    assert len(meta["supernet_key"]) == 16
    (run / "run.yaml").write_text(yaml.safe_dump(dict(meta, supernet_key="0" * 16), sort_keys=False))
    capsys.readouterr()
    assert main(["--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "was searched with another supernet (0000000000000000; now " + meta["supernet_key"] in err


def test_sandwich_flag_trains_the_searched_supernet_with_the_sandwich_rule(env, monkeypatch):
    """Issue 10: the sandwich rule (BigNAS; best mean Kendall tau after the final pick's fine-tune
    over two seeds, README) is a search flag; its supernet is cached under its own key."""
    import yaml

    import supernet.train as st
    from supernet.train import load_supernet

    base, out = env
    seen = []
    real = st.train_supernet

    def spy(*a, **kw):
        seen.append(kw.get("sandwich"))
        return real(*a, **kw)

    monkeypatch.setattr(st, "train_supernet", spy)
    base = base + ["--epochs", "1", "--finetune-top", "0"]
    assert main(base + ["--latency-ms", "1000", "--trials", "2", "--sandwich", "1"]) == 0
    assert seen == [1]
    run = (out / "latest").resolve()
    meta = yaml.safe_load((run / "run.yaml").read_text())
    assert meta["config"]["sandwich"] == 1
    from nas_common import cache_root

    _, state = load_supernet(cache_root("supernets") / meta["supernet_key"] / "supernet.pt", device="cpu")
    assert state["config"]["sandwich"] == 1 and state["epoch"] == 1 and "update" not in state["config"]  # full
    assert "- supernet: 1 epochs, FairNAS fair sampling, BigNAS sandwich rule (1 sampled paths a step" in \
        (run / "report.md").read_text()
    assert "distilled from the largest)\n" in (run / "report.md").read_text()
    # without the flag: another supernet (trained again, not the sandwich one reused)
    assert main(base + ["--latency-ms", "1000", "--trials", "2"]) == 0
    assert seen == [1, 0]
    other = yaml.safe_load(((out / "latest").resolve() / "run.yaml").read_text())
    assert other["config"]["sandwich"] == 0 and other["supernet_key"] != meta["supernet_key"]
    _, state = load_supernet(cache_root("supernets") / other["supernet_key"] / "supernet.pt", device="cpu")
    assert state["config"]["update"] == "path"  # the default for one path a step on a CPU
    assert "- supernet: 1 epochs, FairNAS fair sampling, one path a step, path-only optimizer update\n" in \
        ((out / "latest").resolve() / "report.md").read_text()


def test_supernet_key_changes_only_where_the_supernet_trains_differently():
    """Cached supernets and resumable runs of earlier versions stay valid where the supernet
    trains as it did: with the sandwich rule or on CUDA (the full update, as before the
    path-only default). On a CPU without the sandwich the default update is now ``path``, so
    the key differs from the one of commit 457a2f2 ("9a95e7dca64e4d02") and a supernet cached
    with the full update is not reused. The other values: ``supernet_key`` of 457a2f2 and of
    commit 311be4e for CUDA."""
    from types import SimpleNamespace

    from nas_training.engine import Recipe
    from search.pipeline import supernet_key
    from search_space import SearchSpace
    from supernet.train import resolve_update

    data = SimpleNamespace(spec="digits", image_size=32, train_y=torch.zeros(1617), val_y=torch.zeros(180))
    args = (SearchSpace.load("default"), data, Recipe(epochs=25))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_update(None, s, d) for d in (cpu, cuda) for s in (0, 2)] == ["path", "full", "full", "full"]
    assert supernet_key(*args, cpu) == supernet_key(*args, cpu, 0) == "d244977bb3307027" != "9a95e7dca64e4d02"
    assert supernet_key(*args, cpu, 2) == "008e3a9a385bf0ec"
    assert supernet_key(*args, cuda) == "b4e49e2700054337" and supernet_key(*args, cuda, 2) == "726e24d7efdf81eb"


@pytest.mark.parametrize("budget", ["0", "-1", "nan", "inf", "fast"])
def test_bad_budgets_are_usage_errors(budget, capsys):
    assert main(["--latency-ms", budget]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: latency_ms: must be a positive finite number of milliseconds") and err.count("\n") == 1


def test_budget_below_the_fastest_arch(env, capsys):
    base, out = env
    assert main(base + ["--latency-ms", "0.0001", "--trials", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "below the fastest architecture" in err[0] and "ms measured" in err[0]
    assert not (out / "latest").exists() and not out.exists()


def test_too_few_calibration_archs_for_both_stems_is_one_line_before_measuring(env, tmp_path, capsys):
    base, out = env
    (tmp_path / "few.yaml").write_text(yaml.safe_dump({"calib_archs": 15}))
    assert main(base + ["--config", str(tmp_path / "few.yaml"), "--latency-ms", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: calib_archs: the calibration fits 10 coefficients per stem variant, so 2 variant(s) need "
                   "at least 20 architectures; got 15"]
    assert not out.exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a ShuffleNAS run folder" in capsys.readouterr().err
    assert main([]) == 2
    assert "budget is required" in capsys.readouterr().err


def test_scorer_latency_floor_marks_small_networks_infeasible_but_scores_them():
    import numpy as np
    import yaml

    from search.evaluate import Scorer
    from search_space import SearchSpace
    from supernet import SuperNet
    from tests.search.conftest import TINY

    space = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(TINY)))
    data = load_data("digits")
    archs = [space.sample(np.random.default_rng(i), num_classes=10) for i in range(3)]
    pred = {str(archs[0]): 2.0, str(archs[1]): 6.0, str(archs[2]): 20.0}

    class Pred:
        def predict(self, a):
            return pred[str(a)]

    torch.manual_seed(0)
    cond = Conditions((1, 3, 32, 32), device="cpu")
    sc = Scorer(SuperNet(space, num_classes=10), data, Pred(), cond, budget_ms=10.0, min_latency_ms=5.0)
    low, mid, high = (sc(a) for a in archs)
    assert low.evaluated and not low.feasible and low.constraint == pytest.approx(3.0) and low.acc > 0
    assert mid.evaluated and mid.feasible and mid.constraint == pytest.approx(-1.0)  # distance to the nearer bound
    assert not high.evaluated and not high.feasible and high.constraint == pytest.approx(10.0)
    with pytest.raises(ValueError, match="min_latency_ms"):
        Scorer(sc.supernet, data, Pred(), cond, budget_ms=10.0, min_latency_ms=10.0)


def test_latency_floor_with_nothing_above_it_falls_back_to_the_budget(env, caplog):
    base, out = env
    assert main(base + ["--latency-ms", "1000", "--trials", "4", "--min-latency-frac", "0.5"]) == 0
    res = json.loads(((out / "latest").resolve() / "result.json").read_text())
    assert res["winner"]["feasible"] is False and res["winner"]["constraint"] > 0  # under the 500 ms floor
    assert "picking among all under the budget" in caplog.text
    assert "search floor 0.5 x budget" in ((out / "latest").resolve() / "report.md").read_text()


@pytest.mark.parametrize("frac", ["1", "-0.1", "1.5"])
def test_bad_latency_floor(frac, capsys):
    assert main(["--latency-ms", "5", "--min-latency-frac", frac]) == 2
    assert "min_latency_frac" in capsys.readouterr().err


@pytest.mark.parametrize("key,value,msg", [
    ("top_k", 0, "top_k: must be a positive integer, got 0"),
    ("trials", -3, "trials: must be a positive integer, got -3"),
    ("threads", "two", "threads: must be a positive integer, got 'two'"),
    ("concurrency", 1.5, "concurrency: must be a positive integer, got 1.5"),
    ("calib_archs", True, "calib_archs: must be a positive integer, got True"),
    ("latency_ms", "fast", "latency_ms: must be a positive finite number of milliseconds, got 'fast'"),
    ("backend", "dask", "backend: unknown backend 'dask'; available: ['optuna', 'ray']"),
    ("seed", -1, "seed: must be an integer >= 0, got -1"),
    ("data", "", "data: must be a non-empty string, got ''"),
    ("finetune_top", -1, "finetune_top: must be an integer >= 0, got -1"),
    ("finetune_epochs", 0, "finetune_epochs: must be a positive integer, got 0"),
    ("val_fraction", 1, "val_fraction: must be a number in (0, 1), got 1"),
    ("sandwich", -1, "sandwich: must be an integer >= 0, got -1"),
    ("sandwich", True, "sandwich: must be an integer >= 0, got True"),
    ("objective", "latency", "objective: unknown objective 'latency'; available: ['accuracy', 'pareto']"),
    ("finetune_winner", "yes", "finetune_winner: must be true or false, got 'yes'"),
])
def test_config_yaml_settings_are_validated_like_flags(tmp_path, capsys, key, value, msg):
    """Issue 12 case 5: `top_k: 0` from YAML failed later inside range(); every setting is
    now checked in one place, with one line and exit 2, before any work."""
    import yaml

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"latency_ms": 5, key: value}))
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {msg}"


@pytest.mark.parametrize("flag,value,msg", [("--threads", "0", "threads: must be a positive integer, got 0"),
                                            ("--trials", "0", "trials: must be a positive integer, got 0"),
                                            ("--max-rejections", "-1", "max_rejections: must be an integer >= 0, got -1"),
                                            ("--latency-ms", "-5", "latency_ms: must be a positive finite"),
                                            ("--latency-ms", "nan", "latency_ms: must be a positive finite")])
def test_flags_get_the_same_one_line_error(capsys, flag, value, msg):
    argv = ["--latency-ms", "5", flag, value] if flag != "--latency-ms" else [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {msg}") and err.count("\n") == 1


def test_a_resumed_runs_settings_are_validated_too(tmp_path, capsys):
    import yaml

    from search.config import DEFAULTS

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": {**DEFAULTS, "latency_ms": 5, "threads": 0}}))
    assert main(["--resume", str(run)]) == 2
    assert capsys.readouterr().err.strip() == "error: threads: must be a positive integer, got 0"


def test_resuming_with_another_backend_is_one_clear_line(tmp_path, capsys):
    import yaml

    from search.config import DEFAULTS

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": {**DEFAULTS, "latency_ms": 5, "backend": "ray"}}))
    assert main(["--resume", str(run), "--backend", "optuna"]) == 2
    assert capsys.readouterr().err == (f"error: backend: {run} was searched with 'ray'; resume it with the same "
                                       f"backend (drop --backend optuna)\n")


def test_more_train_workers_than_cpus_is_one_line_before_any_work(monkeypatch, tmp_path, capsys):
    import nas_training.cluster

    monkeypatch.setattr(nas_training.cluster, "_local_cpus", lambda: 2)
    assert main(["--latency-ms", "5", "--train-workers", "3", "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == ("error: train_workers: 3 workers need 3 CPUs, this machine has 2; use 2 or "
                                       "fewer, or add nodes (`ray start --address ...`)\n")
    assert list(tmp_path.iterdir()) == []  # nothing was started or written


def test_a_noisy_latency_is_remeasured_then_flagged(env, monkeypatch, capsys):
    """Issue 11: a final measurement whose spread stays wide is flagged, not accepted silently."""
    import search.latency._measure as lat

    real = lat._Runner.time_once
    ticks = {"n": 0}

    def stalling(self):  # every 3rd run stalls 20 ms: IQR far above 10% of the median
        ticks["n"] += 1
        t = real(self)
        return t + 20.0 if ticks["n"] % 3 == 0 else t

    base, out = env
    monkeypatch.setattr(lat._Runner, "time_once", stalling)
    assert main(base + ["--latency-ms", "1000", "--trials", "3"]) == 0
    res = json.loads(((out / "latest").resolve() / "result.json").read_text())
    assert res["winner"]["shipped"]["model"]["noisy"] is True
    assert "warning: the latency of model.pt is unreliable" in capsys.readouterr().out
    assert "**unreliable" in ((out / "latest").resolve() / "report.md").read_text()


def test_report_flags_every_shipped_artefact_over_the_budget():
    from search.report import _shipped_lines

    def art(file, ms, primary, noisy=False):
        return {"file": file, "runtime": "eager", "memory_format": "contiguous", "median_ms": ms, "iqr_ms": 0.1,
                "primary": primary, "noisy": noisy}

    shipped = {"pt": art("model.pt", 4.4, True), "pt2": art("model.pt2", 5.9, False), "ts": art("model.ts", 3.0, False)}
    rows = {line.split("`")[1]: line.rsplit("|", 2)[1].strip() for line in _shipped_lines(shipped, 5.0)
            if line.startswith("| `")}
    assert rows == {"model.pt": "**budget checked on this one**", "model.pt2": "**over the 5 ms budget**",
                    "model.ts": ""}
    shipped["pt"] = art("model.pt", 5.2, True)
    rows = {line.split("`")[1]: line.rsplit("|", 2)[1].strip() for line in _shipped_lines(shipped, 5.0)
            if line.startswith("| `")}
    assert rows["model.pt"] == "**budget checked on this one**; **over the 5 ms budget**"


def test_the_trial_count_leaves_rejected_suggestions_out_end_to_end(env, monkeypatch):
    """Rejection sampling through the main job: a suggestion the budget filter rejects (here: every
    network with a 64-channel last conv) is in trials.csv as ``rejected``, never scored, and
    ``--trials`` counts the others; result.json and report.md say how many were rejected."""
    import csv

    import search.evaluate as ev

    real = ev.BudgetFilter.judge

    def judge(self, arch):
        pred, rec = real(self, arch)
        if arch.last_conv == 64:
            return pred, self.record(arch, pred, acc=0.0, measured=None, evaluated=False)
        return pred, rec

    monkeypatch.setattr(ev.BudgetFilter, "judge", judge)
    base, out = env
    assert main(base + ["--latency-ms", "1000", "--trials", "6", "--max-rejections", "20"]) == 0
    run = (out / "latest").resolve()
    with open(run / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    rejected = [r for r in rows if r["rejected"] == "True"]
    counted = [r for r in rows if r["rejected"] == "False"]
    assert len(counted) == 6 and rejected and all(r["evaluated"] == "False" and r["acc"] == "0.0" for r in rejected)
    assert all("conv64" in r["arch"] for r in rejected) and all(r["evaluated"] == "True" for r in counted)
    assert [int(r["number"]) for r in rows] == list(range(len(rows)))
    res = json.loads((run / "result.json").read_text())
    assert (res["n_trials"], res["n_rejected"], res["n_failed"]) == (6, len(rejected), 0)
    assert "conv64" not in res["winner"]["arch"]
    assert f"6 trials (and {len(rejected)} suggestions rejected: predicted over the budget, drawn again)" in (
        run / "report.md").read_text()
