"""search.pipeline.run_search: the main job as a library call, its typed result and its config."""

import json

import pytest
import yaml

from search.config import DEFAULTS, SearchConfig
from search.pipeline import SearchResult, run_search
from search.records import TrialRecord, read_trials_csv
from tests.search.conftest import TINY


def test_run_search_returns_what_the_run_folder_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = SearchConfig(latency_ms=1000.0, trials=5, epochs=1, space=str(tmp_path / "tiny.yaml"), device="cpu", max_rejections=20, stem_search="joint",
                       out=str(tmp_path / "results"), calib_archs=20, top_k=3, finetune_top=2, finetune_epochs=1,
                       finetune_init="inherited")
    import search.backends.optuna as optuna_backend
    from search.evaluate import BudgetFilter

    calls, real = [], optuna_backend.run
    monkeypatch.setattr(optuna_backend, "run", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    res = run_search(cfg)
    run = res.run_dir
    assert (tmp_path / "results" / "latest").resolve() == run.resolve()
    # rejection sampling: the backend gets the scorer's budget filter and the config's max_rejections
    (kw,) = calls
    assert isinstance(kw["reject"], BudgetFilter) and kw["reject"].budget_ms == 1000.0 and kw["max_rejections"] == 20
    assert json.loads((run / "result.json").read_text())["n_rejected"] == 0
    # the typed result is the run folder, field by field
    assert res == SearchResult.load(run)
    assert list(res.trials) == read_trials_csv(run / "trials.csv")
    assert len(res.completed) == 5 and res.failed == [] and all(isinstance(r, TrialRecord) for r in res.trials)
    on_disk = json.loads((run / "result.json").read_text())
    assert res.winner == on_disk["winner"] and res.files == on_disk["files"] and res.supernet.is_file()
    assert yaml.safe_load((run / "run.yaml").read_text())["config"] == cfg.to_dict()
    assert set(res.files.values()) == {p.name for p in run.glob("model.*")} | {"arch.yaml"}
    # the winner is a trial, fine-tuned (2 candidates), and its measured latency is the final pick's
    w = next(r for r in res.trials if r.arch == res.winner["arch"])
    assert w.measured_ms == res.winner["latency"]["median_ms"] == res.winner["latency_ms"]
    assert w.pred_ms == res.winner["pred_ms"] and w.feasible
    assert len(res.finetune) == 2 and {r["init"] for r in res.finetune} == {"inherited"}
    assert res.winner["weights"] == "fine-tuned"  # a fine-tune always ships its weights
    assert res.winner["acc_finetuned"] == res.finetune[[r["arch"] for r in res.finetune].index(res.winner["arch"])][
        "final"] and "acc_scratch" not in res.winner
    from tests.search.test_run import _check_final_pick

    _check_final_pick(res.winner, res.finetune)
    # the final measurement fills measured_ms and leaves the prediction and the search's verdict alone
    measured = [r for r in res.trials if r.measured_ms is not None]
    assert measured and all(r.pred_ms is not None for r in measured)
    with pytest.raises(ValueError, match="no finished ShuffleNAS run here \\(missing result.json\\)"):
        SearchResult.load(tmp_path)


def test_search_config_is_frozen_validated_and_resolved_in_one_place(tmp_path):
    with pytest.raises(ValueError, match="top_k: must be a positive integer, got 0"):
        SearchConfig(latency_ms=5.0, top_k=0)
    with pytest.raises(ValueError, match=r"finetune_init: unknown finetune_init 'warm'; available: \['inherited', "):
        SearchConfig(latency_ms=5.0, finetune_init="warm")
    with pytest.raises(ValueError, match="finetune_epochs: must be a positive integer, got 0"):
        SearchConfig(latency_ms=5.0, finetune_epochs=0)
    assert SearchConfig(latency_ms=5.0, finetune_epochs=16).finetune_epochs == 16  # a 16-epoch schedule from scratch
    with pytest.raises(ValueError, match=r"config: unknown setting\(s\) \['epoch'\]"):
        SearchConfig.from_dict({"latency_ms": 5, "epoch": 3})
    c = SearchConfig.from_dict({"latency_ms": 5})
    assert c.latency_ms == 5.0 and isinstance(c.latency_ms, float) and c.to_dict() == {**DEFAULTS, "latency_ms": 5.0}
    with pytest.raises(AttributeError):
        c.trials = 3  # frozen
    # defaults < resumed run.yaml < --config file < flags
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": {**DEFAULTS, "latency_ms": 4, "trials": 7, "seed": 3}}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"trials": 9, "top-k": 2}))
    r = SearchConfig.resolve({"seed": 5, "epochs": None}, config_file=tmp_path / "c.yaml", resume=run)
    assert (r.latency_ms, r.trials, r.top_k, r.seed, r.epochs) == (4.0, 9, 2, 5, DEFAULTS["epochs"])
    with pytest.raises(ValueError, match="backend: .* was searched with 'optuna'; resume it with the same backend"):
        SearchConfig.resolve({"backend": "ray"}, resume=run)
    with pytest.raises(ValueError, match="objective: .* was searched with objective 'accuracy'; resume it with the "
                                         "same objective \\(drop --objective pareto, or objective: in --config\\)"):
        SearchConfig.resolve({"objective": "pareto"}, resume=run)
    with pytest.raises(ValueError, match="is not a ShuffleNAS run folder"):
        SearchConfig.resolve({}, resume=tmp_path / "nope")
    with pytest.raises(ValueError, match=r"stem_search: unknown stem_search 'both'; available: \['stratified', 'joint'\]"):
        SearchConfig(latency_ms=5.0, stem_search="both")
    assert DEFAULTS["stem_search"] == "stratified"
    assert DEFAULTS["max_rejections"] == 0 and SearchConfig(latency_ms=5.0, max_rejections=20).max_rejections == 20
    with pytest.raises(ValueError, match="max_rejections: must be an integer >= 0, got -1"):
        SearchConfig(latency_ms=5.0, max_rejections=-1)
    with pytest.raises(ValueError, match="stem_search: .* was searched with stem_search 'stratified'; resume it with "
                                         r"the same one \(drop --stem-search joint, or stem_search: in --config\)"):
        SearchConfig.resolve({"stem_search": "joint"}, resume=run)
    # a run folder written before stem_search existed searched the stem in one study, and keeps doing so
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.yaml").write_text(yaml.safe_dump({"config": {k: v for k, v in {**DEFAULTS, "latency_ms": 4}.items()
                                                             if k not in ("stem_search", "max_rejections")}}))
    assert SearchConfig.resolve({}, resume=old).stem_search == "joint"
    # and counted every suggestion as a trial (no rejection sampling), unless told otherwise on resume
    assert SearchConfig.resolve({}, resume=old).max_rejections == 0
    assert SearchConfig.resolve({"max_rejections": 5}, resume=old).max_rejections == 5
    ray_run = tmp_path / "ray_run"  # Tune restores a Ray run's searcher with its own max_rejections
    ray_run.mkdir()
    (ray_run / "run.yaml").write_text(yaml.safe_dump({"config": {**DEFAULTS, "latency_ms": 4, "backend": "ray",
                                                                 "max_rejections": 20}}))
    assert SearchConfig.resolve({}, resume=ray_run).max_rejections == 20
    with pytest.raises(ValueError, match=r"max_rejections: a Ray run resumes with its own 20 \(Tune restores its "
                                         r"searcher\); drop --max-rejections 5"):
        SearchConfig.resolve({"max_rejections": 5}, resume=ray_run)
    with pytest.raises(ValueError, match="stem_search: .* was searched with stem_search 'joint'"):
        SearchConfig.resolve({"stem_search": "stratified"}, resume=old)
    joint = tmp_path / "joint"  # a run of the default before session 22 (joint), recorded in its run.yaml
    joint.mkdir()
    (joint / "run.yaml").write_text(yaml.safe_dump({"config": {**DEFAULTS, "latency_ms": 4, "stem_search": "joint"}}))
    assert SearchConfig.resolve({}, resume=joint).stem_search == "joint"  # a resumed run keeps its own
    with pytest.raises(ValueError, match="stem_search: .* was searched with stem_search 'joint'; resume it with "
                                         r"the same one \(drop --stem-search stratified, or stem_search: in --config\)"):
        SearchConfig.resolve({"stem_search": "stratified"}, resume=joint)
    # run_search(config, resume=...) checks it too, for a config not built by resolve()
    with pytest.raises(ValueError, match="backend: .* was searched with 'optuna'"):
        r.replace(backend="ray").check_resume(run)
    with pytest.raises(ValueError, match="backend: .* was searched with 'optuna'"):
        run_search(r.replace(backend="ray"), resume=run)
    with pytest.raises(ValueError, match=r"config: unknown key\(s\) \['trails'\]"):
        (tmp_path / "bad.yaml").write_text("trails: 3\n")
        SearchConfig.resolve({"latency_ms": 5}, config_file=tmp_path / "bad.yaml")


def test_get_backend_names_the_choices():
    from search.backends import get_backend
    from search.backends.optuna import run

    assert get_backend("optuna") is run
    with pytest.raises(ValueError, match=r"backend: unknown backend 'dask'; available: \['optuna', 'ray'\]"):
        get_backend("dask")


def test_the_final_pick_halves_within_each_stem_and_the_one_shot_score_decides_between_stems(monkeypatch):
    """Issue 10: a short fine-tune favours the ImageNet stem across stems (it ranks the small-stem
    networks, the best retrained, last), so it only ranks within a stem."""
    import search.pipeline as pl

    picks = [TrialRecord(number=i, arch=a, acc=acc, pred_ms=lat) for i, (a, acc, lat) in enumerate([
        ("stem8:small|16:v2s0.5|32:v1g2|64:v2s0.5|conv0|cls10", 30.0, 3.0),   # best one-shot, small stem
        ("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv0|cls10", 29.0, 1.0),
        ("stem8:small|16:v1g1|32:v1g2|64:v2s0.5|conv0|cls10", 28.0, 2.5),
        ("stem8|16:v1g1|32:v1g2|64:v2s0.5|conv0|cls10", 27.0, 1.2)])]
    finetuned = {picks[0].arch: 35.0, picks[1].arch: 40.0, picks[2].arch: 36.0, picks[3].arch: 39.0}
    groups = []

    def fake_halving(run, supernet, group, ft):
        groups.append([r.arch for r in group])
        recs = [{"arch": r.arch, "final": finetuned[r.arch], "pruned": False, "epochs": 1, "finetune_acc": [0.0]}
                for r in group]
        best = max(range(len(group)), key=lambda k: recs[k]["final"])
        return recs, best, f"model of {group[best].arch}"

    monkeypatch.setattr(pl, "_halving", fake_halving)
    sh, k, model = pl._finetune(None, None, picks, None)
    assert groups == [[picks[0].arch, picks[2].arch], [picks[1].arch, picks[3].arch]]  # one halving per stem
    # finalists: small stem picks[2] (36.0 > 35.0), ImageNet stem picks[1] (40.0); one-shot 29.0 beats 28.0
    assert [r["finalist"] for r in sh] == [False, True, True, False]
    assert [r["stem"] for r in sh] == ["small", "imagenet", "small", "imagenet"]
    assert k == 1 and model == f"model of {picks[1].arch}"
    # with the small-stem finalist ahead on one-shot score, it ships although its fine-tune is lower
    finetuned[picks[0].arch] = 37.0
    sh, k, model = pl._finetune(None, None, picks, None)
    assert [r["finalist"] for r in sh] == [True, True, False, False] and k == 0
    # equal one-shot scores: the faster by the final end-to-end measurement, not the search-time latency
    picks[1] = picks[1].replace(acc=30.0)
    _, k, _ = pl._finetune(None, None, picks, None, {picks[0].arch: 2.0, picks[1].arch: 2.5})
    assert k == 0
    _, k, _ = pl._finetune(None, None, picks, None)  # by the trials' latency: picks[1] (1.0 ms) is faster
    assert k == 1


def test_the_most_accurate_weights_ship_and_ties_go_to_the_trained_ones():
    from search.pipeline import _ship_choice

    assert _ship_choice({"fine-tuned": 90.0, "scratch": 95.0, "inherited": 10.0}) == "scratch"
    assert _ship_choice({"fine-tuned": 90.0, "scratch": 90.0, "inherited": 90.0}) == "fine-tuned"
    assert _ship_choice({"scratch": 50.0, "inherited": 50.0}) == "scratch"
    assert _ship_choice({"fine-tuned": 5.0, "scratch": 4.0, "inherited": 7.0}) == "inherited"
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['warm'\]"):
        _ship_choice({"warm": 1.0})
    with pytest.raises(ValueError, match="nothing to ship"):
        _ship_choice({})


def test_a_run_folder_from_before_objective_resumes_its_two_objective_study(tmp_path):
    """Runs written before ``objective`` existed searched accuracy and latency: their study has two
    directions, so they load and resume as ``pareto``; asking for the other objective is refused."""
    from search.config import run_settings

    old = {k: v for k, v in {**DEFAULTS, "latency_ms": 5.0}.items() if k != "objective"}
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": old}))
    assert run_settings(yaml.safe_load((run / "run.yaml").read_text()))["objective"] == "pareto"
    assert SearchConfig.resolve({}, resume=run).objective == "pareto"
    with pytest.raises(ValueError, match=r"objective: .* 'pareto'; resume it with the same objective "
                                         r"\(drop --objective accuracy, or objective: in --config\)"):
        SearchConfig.resolve({"objective": "accuracy"}, resume=run)
    assert run_settings({}) == {} and SearchConfig(latency_ms=5.0).objective == "accuracy"


def test_a_run_folder_from_before_finetune_init_loads_and_resumes_as_the_fine_tune_it_was(tmp_path):
    """Runs written before ``finetune_init`` fine-tuned their final pick: loading or resuming one
    keeps that, and its 8 fine-tune epochs."""
    from search.config import run_settings

    old = {k: v for k, v in {**DEFAULTS, "latency_ms": 5.0, "finetune_epochs": 8}.items() if k != "finetune_init"}
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": old}))
    assert run_settings(yaml.safe_load((run / "run.yaml").read_text()))["finetune_init"] == "inherited"
    cfg = SearchConfig.resolve({}, resume=run)
    assert (cfg.finetune_init, cfg.finetune_epochs) == ("inherited", 8)
    assert SearchConfig.resolve({"finetune_init": "scratch", "finetune_epochs": 4}, resume=run).finetune_init == "scratch"


def test_a_run_folder_from_before_finetune_winner_keeps_fine_tuning_its_winner(tmp_path):
    """Runs written before ``finetune_winner`` fine-tuned a from-scratch pick's winner from its inherited
    weights; resumed, they still do. New runs do not unless asked, and train 6 candidates."""
    old = {k: v for k, v in {**DEFAULTS, "latency_ms": 5.0, "finetune_top": 8}.items() if k != "finetune_winner"}
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": old}))
    cfg = SearchConfig.resolve({}, resume=run)
    assert (cfg.finetune_winner, cfg.finetune_top, cfg.finetune_init) == (True, 8, "scratch")
    new = SearchConfig(latency_ms=5.0)
    assert (new.finetune_winner, new.finetune_top) == (False, 6)


def _strata_run(tmp_path, stem_search="stratified", trials=9, fastest=None, stems=(False, True)):
    from types import SimpleNamespace

    from search_space import SearchSpace, Task

    fastest = fastest or {False: 1.0, True: 3.0}
    space = SearchSpace.from_dict({**TINY, "stem": {**TINY.get("stem", {}), "small_input": list(stems)}})
    predictor = SimpleNamespace(fastest=lambda sp, small_input=None: ("arch", fastest[small_input]))
    cfg = SearchConfig(latency_ms=4.0, trials=trials, stem_search=stem_search)
    run_dir = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"  # a new run folder per call
    run_dir.mkdir()
    return SimpleNamespace(config=cfg, space=space, task=Task(10, 32, None), predictor=predictor, run_dir=run_dir)


def test_a_stratified_stem_search_gives_each_stem_that_fits_its_share_of_the_trials(tmp_path):
    """Issue 10: the one-shot score does not compare stems, so a stratified search runs one
    search per stem variant, the trials split evenly (ImageNet takes the remainder)."""
    from search.pipeline import stem_strata

    run = _strata_run(tmp_path)
    got = stem_strata(run)
    assert [(t.small_input, n, f) for t, n, f in got] == [(False, 5, run.run_dir / "search-imagenet"),
                                                           (True, 4, run.run_dir / "search-small")]
    assert all(f.is_dir() and (t.num_classes, t.image_size) == (10, 32) for t, _, f in got)
    # a resumed run keeps the variants it searched, whatever the predictor says now
    assert json.loads((run.run_dir / "stem_strata.json").read_text()) == {"small_input": [False, True]}
    run.predictor = _strata_run(tmp_path, fastest={False: 1.0, True: 9.0}).predictor
    assert [(t.small_input, n) for t, n, _ in stem_strata(run)] == [(False, 5), (True, 4)]
    # the ImageNet stem first, whatever order the space declares the variants in
    assert [t.small_input for t, _, _ in stem_strata(_strata_run(tmp_path, stems=(True, False)))] == [False, True]
    # the small stem's fastest network (4.2 ms) is over the 4 ms budget: every trial goes to the ImageNet stem
    got = stem_strata(_strata_run(tmp_path, fastest={False: 1.0, True: 4.2}))
    assert [(t.small_input, n) for t, n, _ in got] == [(False, 9)]
    assert [(t.small_input, n) for t, n, _ in stem_strata(_strata_run(tmp_path, fastest={False: 1.0, True: 4.2}),
                                                          margin=0.1)] == [(False, 5), (True, 4)]  # within the margin
    # neither predicted to fit (the floor check measured one that does): both stems keep their share
    assert [n for _, n, _ in stem_strata(_strata_run(tmp_path, fastest={False: 5.0, True: 9.0}))] == [5, 4]
    # one trial: the ImageNet stem only
    assert [(t.small_input, n) for t, n, _ in stem_strata(_strata_run(tmp_path, trials=1))] == [(False, 1)]
    # joint, or a space with one stem variant: one search of the run's task in the run folder
    for run in (_strata_run(tmp_path, "joint"), _strata_run(tmp_path, stems=(False,))):
        (task, n, folder), = stem_strata(run)
        assert (task, n, folder) == (run.task, 9, run.run_dir) and not (run.run_dir / "stem_strata.json").exists()


def test_a_stratified_shortlist_shares_its_places_between_stems_and_passes_on_a_short_stems_places(monkeypatch):
    """The final pick's shortlist: the best by one-shot score of each stem, half the places each;
    a stem with too few candidates under the budget leaves its places to the other."""
    from types import SimpleNamespace

    import search.latency as lat
    import search.pipeline as pl

    def rec(n, small, acc, ms):
        arch = f"stem{8 + n}{':small' if small else ''}|16:v2s0.5|32:v1g2|64:v2s0.5|conv0|cls10"
        return TrialRecord(number=n, arch=arch, acc=acc, pred_ms=ms, evaluated=True, feasible=True)

    ms = {}
    rounds = []

    def measure_many(models, conditions, **kw):
        rounds.append(len(models))
        return [SimpleNamespace(median_ms=ms[str(m.arch)]) for m in models]

    monkeypatch.setattr(lat, "measure_many", measure_many)
    import supernet

    monkeypatch.setattr(supernet, "ShuffleNet", lambda a: SimpleNamespace(arch=a))
    # ImageNet stem: one-shot 40..35, small stem 30..25 (lower: the supernet's blind spot)
    recs = [rec(k, False, 40.0 - k, 1.0) for k in range(6)] + [rec(10 + k, True, 30.0 - k, 3.0) for k in range(6)]
    ms.update({r.arch: r.pred_ms for r in recs})
    ms[recs[7].arch] = 4.5  # the second-best small-stem network measures over the 4 ms budget
    run = SimpleNamespace(config=SearchConfig(latency_ms=4.0, top_k=2, stem_search="stratified"), floor_ms=0.0,
                          conditions=None)
    measured, short = pl._shortlist(run, recs, [], 8)
    assert [r.number for r in short] == [0, 1, 2, 3, 10, 12, 13, 14]  # 4 places each, 11 measured over budget
    assert set(measured) == {r.arch for r in recs[:4] + recs[6:12]}  # in chunks of top_k = 2
    # the joint search: the best 8 by one-shot score, all ImageNet stem
    run.config = SearchConfig(latency_ms=4.0, top_k=2, stem_search="joint")
    assert [r.number for r in pl._shortlist(run, recs, [], 8)[1]] == [0, 1, 2, 3, 4, 5, 10, 12]
    # two small-stem networks under the budget: the ImageNet stem takes the 2 places they leave
    for r in recs[8:]:
        ms[r.arch] = 5.0
    run.config = SearchConfig(latency_ms=4.0, top_k=2, stem_search="stratified")
    assert [r.number for r in pl._shortlist(run, recs, [], 8)[1]] == [0, 1, 2, 3, 4, 5, 10]  # 7: only 7 fit
    ms[recs[8].arch] = 1.0
    assert [r.number for r in pl._shortlist(run, recs, [], 8)[1]] == [0, 1, 2, 3, 4, 5, 10, 12]
    # an odd count: the ImageNet stem takes the remainder
    assert [r.number for r in pl._shortlist(run, recs, [], 3)[1]] == [0, 1, 10]
