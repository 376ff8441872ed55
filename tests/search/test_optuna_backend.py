"""The Optuna backend's resume: every trial comes back as an uninterrupted run would have it."""

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
