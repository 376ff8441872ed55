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
