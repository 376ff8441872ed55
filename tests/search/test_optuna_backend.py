"""The Optuna backend's resume: every trial comes back as an uninterrupted run would have it."""

import pytest

from search.backends.optuna import open_study, records, run
from search.records import TrialRecord
from search_space import SearchSpace, Task, get_preset

SPACE = SearchSpace.load("default")


def _score(arch):
    return TrialRecord(number=-1, arch=str(arch), acc=float(len(str(arch)) % 97), pred_ms=1.0, constraint=-1.0,
                       feasible=True, evaluated=True)


def test_an_interrupted_preset_trial_keeps_its_source_on_resume(tmp_path):
    """Issue 12 case 4: a preset seed trial that was running when the search stopped came back
    as 'sampled', and one interrupted before its arch was suggested was not re-run at all."""
    seeds = [(n, get_preset(n, 10)) for n in ("shufflenet_v1_g1", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0")]
    study = open_study(tmp_path, seed=0)
    for name, arch in seeds:
        study.enqueue_trial(SPACE.params_from_arch(arch), user_attrs={"source": name}, skip_if_exists=True)
    # the process dies with two preset trials RUNNING: one mid-suggest, one before any suggestion
    t0 = study.ask()
    SPACE.suggest(t0, num_classes=10, small_input=None)
    study.ask()
    del study
    run(_score, SPACE, run_dir=tmp_path, n_trials=5, seed=0, task=Task(10, 32, None), seeds=seeds)
    recs = records(open_study(tmp_path, seed=0))
    assert len(recs) == 5
    by_source = {r.source: r.arch for r in recs if r.source != "sampled"}
    assert by_source == {name: str(arch) for name, arch in seeds}
    assert sum(r.source == "sampled" for r in recs) == 2


def test_an_interrupted_sampled_trial_keeps_its_drawn_parameters(tmp_path):
    study = open_study(tmp_path, seed=0)
    t = study.ask()
    arch = SPACE.suggest(t, num_classes=10, small_input=None)  # as the backend asks
    del study
    run(_score, SPACE, run_dir=tmp_path, n_trials=1, seed=0, task=Task(10, 32, None))
    recs = records(open_study(tmp_path, seed=0))
    assert [(r.source, r.arch) for r in recs] == [("sampled", str(arch))]


def test_the_objective_decides_the_study_directions_and_values(tmp_path):
    """``accuracy`` (the default) optimises top-1 alone under the constraint; ``pareto`` adds latency.
    A folder's study keeps its objective: opening it with the other one is refused."""
    import optuna
    import pytest

    def score(arch):
        return TrialRecord(number=-1, arch=str(arch), acc=float(len(str(arch)) % 97), pred_ms=2.5, constraint=-1.0,
                           feasible=True, evaluated=True)

    for pareto, folder in ((False, tmp_path / "acc"), (True, tmp_path / "pareto")):
        folder.mkdir()
        recs = run(score, SPACE, run_dir=folder, n_trials=3, seed=0, task=Task(10, 32, None), pareto=pareto)
        study = open_study(folder, seed=0, pareto=pareto)
        want = [optuna.study.StudyDirection.MAXIMIZE] + [optuna.study.StudyDirection.MINIMIZE] * pareto
        assert study.directions == want
        values = [t.values for t in study.get_trials(deepcopy=False)]
        assert values == [[r.acc, 2.5] if pareto else [r.acc] for r in recs]
        assert [t.constraints for t in study.get_trials(deepcopy=False)] == [{"latency": -1.0}] * 3
        with pytest.raises(ValueError, match=f"objective: the study in .* has {1 + pareto} objective\\(s\\); resume it "
                                             f"with --objective {'pareto' if pareto else 'accuracy'}$"):
            open_study(folder, seed=0, pareto=not pareto)


def test_the_preset_seeds_come_before_the_random_startup_trials(tmp_path):
    """Optuna counts enqueued trials as TPE startup trials: without the seeds added to the startup
    count, up to 18 presets in budget left TPE to model a history of hand-designed networks only."""
    from search.backends.optuna import RANDOM_STARTUP_TRIALS, sampler

    assert RANDOM_STARTUP_TRIALS == 10
    assert sampler(0, 9)._n_startup_trials == 19 and sampler(0)._n_startup_trials == 10
    assert open_study(tmp_path, seed=0, n_seeds=3).sampler._n_startup_trials == 13


def test_a_two_objective_study_resumes_with_its_trials(tmp_path):
    """A run folder's pareto study continues: the second call adds trials to the same study."""
    def score(arch):
        return TrialRecord(number=-1, arch=str(arch), acc=float(len(str(arch)) % 97), pred_ms=2.0, constraint=-3.0,
                           feasible=True, evaluated=True)

    first = run(score, SPACE, run_dir=tmp_path, n_trials=2, seed=0, task=Task(10, 32, None), pareto=True)
    both = run(score, SPACE, run_dir=tmp_path, n_trials=4, seed=0, task=Task(10, 32, None), pareto=True, resume=True)
    assert [r.arch for r in both[:2]] == [r.arch for r in first] and len(both) == 4
    assert [len(t.values) for t in open_study(tmp_path, seed=0, pareto=True).get_trials(deepcopy=False)] == [2] * 4


class _ParamsPredictor:
    """A latency predictor that reads the parameter count: 1 ms per 10,000 parameters."""

    def predict(self, arch) -> float:
        from search_space import count_params

        return count_params(arch) / 1e4


def test_rejection_sampling_counts_only_scored_trials_and_tells_tpe_the_rejected_ones(tmp_path):
    """``max_rejections``: a suggestion the budget filter rejects (predicted over the budget + 5%) is
    told to TPE as an infeasible trial and drawn again; ``n_trials`` counts the scored ones, the
    objective and ``on_trial`` never see a rejected one, and after ``max_rejections`` in a row the
    next suggestion counts whatever it is. A resumed study goes on counting the same way."""
    from search.evaluate import BudgetFilter
    from search_space import count_params

    budget = 200.0  # ms: about half of the default space's random networks go over it (74-567 ms)
    reject = BudgetFilter(_ParamsPredictor(), budget, input_size=32)
    seen, shown = [], []

    def score(arch):
        seen.append(str(arch))
        return reject.record(arch, count_params(arch) / 1e4, acc=50.0, measured=None, evaluated=True)

    recs = run(score, SPACE, run_dir=tmp_path, n_trials=6, seed=0, task=Task(10, 32, None), reject=reject,
               max_rejections=20, on_trial=shown.append)
    counted = [r for r in recs if not r.rejected]
    rejected = [r for r in recs if r.rejected]
    assert len(counted) == 6 and len(rejected) >= 1 and [r.number for r in recs] == list(range(len(recs)))
    assert seen == [r.arch for r in counted] and [r.arch for r in shown] == seen
    assert all(r.pred_ms <= budget * 1.05 and r.evaluated for r in counted)
    for r in rejected:
        assert r.pred_ms > budget * 1.05 and (r.acc, r.evaluated, r.feasible) == (0.0, False, False)
        assert r.constraint == pytest.approx(r.pred_ms - budget, abs=1e-9)
    import optuna

    study = open_study(tmp_path, seed=0)
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.user_attrs["rejected"] for t in trials] == [r.rejected for r in recs]
    assert [t.constraints["latency"] for t in trials] == [r.constraint for r in recs]  # TPE learns the budget
    assert [t.value for t in trials] == [r.acc for r in recs]
    # resumed with a larger n_trials: the earlier trials stay as they were, 4 more scored ones follow
    again = run(score, SPACE, run_dir=tmp_path, n_trials=10, seed=0, task=Task(10, 32, None), reject=reject,
                max_rejections=20)
    assert again[:len(recs)] == recs and sum(not r.rejected for r in again) == 10 and len(seen) == 10


def test_rejection_sampling_stops_rejecting_after_max_rejections_in_a_row(tmp_path):
    """A budget no network meets: each counted trial follows exactly ``max_rejections`` rejected
    ones, so the search ends; with 0 every suggestion counts, as before rejection sampling."""
    from search.evaluate import BudgetFilter

    reject = BudgetFilter(_ParamsPredictor(), 1e-3, input_size=32)
    calls = []

    def score(arch):
        calls.append(str(arch))
        return reject(arch).replace(acc=1.0)  # over the budget: the objective's own unscored record

    (tmp_path / "a").mkdir()
    recs = run(score, SPACE, run_dir=tmp_path / "a", n_trials=2, seed=0, task=Task(10, 32, None), reject=reject,
               max_rejections=3)
    assert [r.rejected for r in recs] == [True, True, True, False] * 2 and len(calls) == 2
    (tmp_path / "b").mkdir()
    recs = run(score, SPACE, run_dir=tmp_path / "b", n_trials=2, seed=0, task=Task(10, 32, None), reject=reject,
               max_rejections=0)
    assert [r.rejected for r in recs] == [False, False] and len(calls) == 4


def test_a_study_from_before_rejection_sampling_counts_every_trial(tmp_path):
    """Trials written before the ``rejected`` attribute existed all count towards ``n_trials``."""
    study = open_study(tmp_path, seed=0)
    for _ in range(3):  # as the backend wrote them before: the record's fields without 'rejected'
        t = study.ask()
        rec = _score(SPACE.suggest(t, num_classes=10, small_input=None)).replace(acc=0.0, evaluated=False)
        for k, v in rec.to_dict().items():
            if k not in ("number", "rejected"):
                t.set_user_attr(k, v)
        t.set_constraint("latency", 5.0)
        study.tell(t, 0.0)
    calls = []
    run(lambda a: calls.append(a) or _score(a), SPACE, run_dir=tmp_path, n_trials=4, seed=0,
        task=Task(10, 32, None))
    assert len(calls) == 1 and len(open_study(tmp_path, seed=0).get_trials(deepcopy=False)) == 4
    assert [r.rejected for r in records(open_study(tmp_path, seed=0))] == [False] * 4


def test_rejected_trials_do_not_end_tpes_random_startup(tmp_path):
    """Optuna counts every finished trial towards ``n_startup_trials``; the search's sampler counts
    scored ones only, so 12 rejected and 2 scored trials still leave TPE in its random phase (10
    scored trials), and it models the history once 10 are scored."""
    from search.backends.optuna import RANDOM_STARTUP_TRIALS, ScoredStartupTPESampler

    study = open_study(tmp_path, seed=0)
    assert isinstance(study.sampler, ScoredStartupTPESampler)

    def add(n, rejected):
        for _ in range(n):
            t = study.ask()
            SPACE.suggest(t, num_classes=10, small_input=None)
            t.set_user_attr("rejected", rejected)
            t.set_constraint("latency", 1.0 if rejected else -1.0)
            study.tell(t, 0.0 if rejected else 50.0)

    random_calls = []
    real = study.sampler._random_sampler.sample_independent
    study.sampler._random_sampler.sample_independent = lambda *a: random_calls.append(a[2]) or real(*a)
    add(12, True)
    add(2, False)
    random_calls.clear()
    add(1, False)  # the 15th trial, 3rd scored: still random
    assert study.sampler._n_startup_trials == RANDOM_STARTUP_TRIALS + 12 and len(random_calls) > 0
    add(7, False)  # 10 scored now
    random_calls.clear()
    add(1, False)  # TPE proper: multivariate, no independent random draws
    assert study.sampler._n_startup_trials == RANDOM_STARTUP_TRIALS + 12 and random_calls == []


def test_rejection_sampling_with_two_objectives_tells_the_predicted_latency(tmp_path):
    from search.evaluate import BudgetFilter

    reject = BudgetFilter(_ParamsPredictor(), 200.0, input_size=32)
    recs = run(lambda a: reject.record(a, 100.0, acc=50.0, measured=None, evaluated=True), SPACE, run_dir=tmp_path,
               n_trials=4, seed=0, task=Task(10, 32, None), reject=reject, max_rejections=20, pareto=True)
    trials = open_study(tmp_path, seed=0, pareto=True).get_trials(deepcopy=False)
    assert sum(not r.rejected for r in recs) == 4 and any(r.rejected for r in recs)
    assert [t.values for t in trials] == [[0.0, r.pred_ms] if r.rejected else [50.0, 100.0] for r in recs]


def test_an_objective_error_fails_its_trial_and_ctrl_c_leaves_a_preset_to_run_again(tmp_path):
    """A bug in the objective: its trial is recorded FAIL and the error stops the search. Ctrl-C:
    the trial stays RUNNING, and on resume a preset seed runs again under its name (study.optimize
    marked it FAIL, and the preset was then skipped for good)."""
    import optuna

    def broken(arch):
        raise RuntimeError("injected")

    (tmp_path / "a").mkdir()
    with pytest.raises(RuntimeError, match="injected"):
        run(broken, SPACE, run_dir=tmp_path / "a", n_trials=2, seed=0, task=Task(10, 32, None))
    states = [t.state for t in open_study(tmp_path / "a", seed=0).get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.FAIL]

    seeds = [("shufflenet_v1_g1", get_preset("shufflenet_v1_g1", 10))]

    def interrupted(arch):
        raise KeyboardInterrupt

    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        run(interrupted, SPACE, run_dir=tmp_path / "b", n_trials=2, seed=0, task=Task(10, 32, None), seeds=seeds)
    assert [t.state for t in open_study(tmp_path / "b", seed=0).get_trials(deepcopy=False)] == [
        optuna.trial.TrialState.RUNNING]
    recs = run(_score, SPACE, run_dir=tmp_path / "b", n_trials=2, seed=0, task=Task(10, 32, None), seeds=seeds)
    assert [(r.source, r.arch) for r in recs][0] == ("shufflenet_v1_g1", str(seeds[0][1])) and len(recs) == 2
