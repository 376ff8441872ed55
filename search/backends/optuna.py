"""Optuna backend (default, embedded): a TPE study with a hard latency constraint.

Objectives (``pareto``): validation accuracy (maximise) alone, or accuracy and latency
(minimise) as two; either way the budget is an Optuna constraint
(``trial.set_constraint("latency", latency - budget)``, feasible iff <= 0) that TPE takes
into account (Optuna 5's constrained TPE, single- and multi-objective alike).
A suggestion the latency predictor puts over the budget is told to TPE as infeasible and
drawn again without counting as a trial (rejection sampling, ``max_rejections`` in a row at most).
Presets that fit the budget are enqueued as seed trials. The study lives in a
JournalStorage file inside the folder it is given (the run folder, or its ``search-<stem>/``
in a stratified stem search), so ``--resume`` continues it
without losing finished trials; trials left RUNNING by an interrupted process
are marked FAIL and their parameters enqueued again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search.records import TrialRecord
from search_space import Arch, SearchSpace, Task

__all__ = ["run", "open_study", "records", "sampler", "ScoredStartupTPESampler", "STUDY_FILE", "RANDOM_STARTUP_TRIALS"]

log = logging.getLogger(__name__)
STUDY_FILE = "study.journal"
# random scored trials (rejected ones not counted) before TPE models the history. Optuna counts enqueued trials (the preset seeds) as
# startup trials too, so they come on top: with up to 18 presets in budget TPE would otherwise start
# at once from a history of hand-designed networks only
RANDOM_STARTUP_TRIALS = 10


class ScoredStartupTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE whose random startup counts scored trials only: a trial with the user
    attribute ``rejected`` (rejection sampling, :func:`run`) still tells TPE where the budget
    lies, but does not end the random phase (Optuna counts every finished trial towards
    ``n_startup_trials``, so at a budget few networks meet TPE would start from one or two
    scored networks)."""

    def __init__(self, *, n_startup_trials: int, **kwargs) -> None:
        super().__init__(n_startup_trials=n_startup_trials, **kwargs)
        self.scored_startup_trials = n_startup_trials

    def _count_scored_only(self, study: optuna.Study) -> None:
        done = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
        self._n_startup_trials = self.scored_startup_trials + sum(t.user_attrs.get("rejected", False) for t in done)

    def sample_relative(self, study, trial, search_space):
        self._count_scored_only(study)
        return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        self._count_scored_only(study)
        return super().sample_independent(study, trial, param_name, param_distribution)


def sampler(seed: int, n_seeds: int = 0) -> ScoredStartupTPESampler:
    """The search's TPE: multivariate, ``RANDOM_STARTUP_TRIALS`` random scored trials after the
    ``n_seeds`` enqueued preset seeds (rejected trials not counted; both backends use it)."""
    return ScoredStartupTPESampler(seed=seed, multivariate=True, n_startup_trials=RANDOM_STARTUP_TRIALS + n_seeds)


def open_study(run_dir: Path, *, seed: int, pareto: bool = False, n_seeds: int = 0) -> optuna.Study:
    """The run folder's study (created or continued): top-1 maximised, and with ``pareto`` latency
    minimised too; its :func:`sampler` (``n_seeds`` preset seeds before the random startup trials).
    Raises ``ValueError`` when the folder's study has the other objective."""
    storage = JournalStorage(JournalFileBackend(str(Path(run_dir) / STUDY_FILE)))
    directions = ["maximize", "minimize"] if pareto else ["maximize"]
    study = optuna.create_study(storage=storage, study_name="search", directions=directions,
                                sampler=sampler(seed, n_seeds), load_if_exists=True)  # Optuna does not compare an existing study's directions
    if len(study.directions) != len(directions):
        raise ValueError(f"objective: the study in {run_dir} has {len(study.directions)} objective(s); resume it "
                         f"with --objective {'pareto' if len(study.directions) == 2 else 'accuracy'}")
    return study


def _recover(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a dead process as FAIL and enqueue them again as they were.

    An enqueued trial (a preset seed) comes back with all its fixed parameters and its
    ``source``, even if it was interrupted before its architecture was suggested; a
    sampled trial comes back with the parameters it had drawn (the rest are drawn anew;
    one interrupted before any draw is simply replaced by the next trial, since only
    COMPLETE trials count towards ``n_trials``)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        params = t.system_attrs.get("fixed_params") or t.params
        attrs = {"source": t.user_attrs["source"]} if "source" in t.user_attrs else None
        if params:
            study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=False)
        n += 1
    return n


def run(
    objective: Callable[[Arch], TrialRecord],
    space: SearchSpace,
    *,
    run_dir: Path,
    n_trials: int,
    seed: int,
    task: Task,
    seeds: Sequence[tuple[str, Arch]] = (),
    on_trial: Callable[[TrialRecord], None] | None = None,
    resume: bool = False,
    pareto: bool = False,
    reject: Callable[[Arch], TrialRecord | None] | None = None,
    max_rejections: int = 0,
) -> list[TrialRecord]:
    """Run (or continue) the study until it holds ``n_trials`` finished trials that count; every
    trial's record, the rejected ones included. ``pareto``: latency is a second objective (else
    top-1 alone, under the constraint).

    The backend protocol (:class:`search.backends.Backend`), rejection sampling included: a
    suggestion ``reject`` returns a record for is told to TPE as that infeasible trial (so its
    constraint model learns the budget) with the user attribute ``rejected``, and does not count;
    after ``max_rejections`` in a row the next suggestion counts whatever it is. The study always
    continues what ``run_dir`` holds, so ``resume`` changes nothing here; it is accepted for the
    protocol. An exception raised by ``objective`` marks its trial FAIL and stops the search
    (in-process: it is a bug, not a lost worker); a Ctrl-C (``KeyboardInterrupt``) leaves its trial
    RUNNING, as a dead process would, so a resumed search runs it again with its parameters (a
    preset seed with its name; study.optimize marked it FAIL, and a preset seed was then lost).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(run_dir, seed=seed, pareto=pareto, n_seeds=len(seeds))
    recovered = _recover(study)
    if recovered:
        log.info("resume: %d interrupted trial(s) will be re-run", recovered)
    for name, arch in seeds:
        study.enqueue_trial(space.params_from_arch(arch, small_input=task.small_input), user_attrs={"source": name}, skip_if_exists=True)

    counted = sum(not t.user_attrs.get("rejected", False)
                  for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    in_a_row = 0
    while counted < n_trials:
        trial = study.ask()
        try:
            arch = space.suggest(trial, num_classes=task.num_classes, small_input=task.small_input)
            rec = reject(arch) if reject is not None and in_a_row < max_rejections else None
            rejected = rec is not None
            if not rejected:
                rec = objective(arch)
        except Exception:  # a bug, not a lost worker: recorded FAIL, and the search stops (as study.optimize did);
            study.tell(trial, state=TrialState.FAIL)  # Ctrl-C is no Exception: its trial stays RUNNING (_recover)
            raise
        rec = rec.replace(number=trial.number, source=trial.user_attrs.get("source", "sampled"), rejected=rejected)
        for k, v in rec.to_dict().items():
            if k != "number":
                trial.set_user_attr(k, v)
        trial.set_constraint("latency", float(rec.constraint))
        told = study.tell(trial, [float(rec.acc), float(rec.latency_ms)] if pareto else float(rec.acc))
        if told.state != TrialState.COMPLETE:  # Optuna refused the values (NaN) and recorded the trial FAIL
            raise ValueError(f"trial {trial.number}: the objective returned top-1 {rec.acc!r}, latency "
                             f"{rec.latency_ms!r} ms for {rec.arch}; Optuna recorded it {told.state.name}")
        in_a_row = in_a_row + 1 if rejected else 0
        if not rejected:
            counted += 1
            if on_trial is not None:
                on_trial(rec)
    return records(study)


_FIELDS = {f for f in TrialRecord.__dataclass_fields__} - {"number", "state", "error"}


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every finished (``state="complete"``) and failed (``state="failed"``) trial of a study, by number,
    the suggestions rejection sampling drew again included (``rejected=True``).

    A failed trial is listed when its architecture is known (the Ray backend records it when it
    is suggested); its error comes from the study user attribute ``trial_errors`` (by arch).
    """
    errors = study.user_attrs.get("trial_errors", {})
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        attrs = {k: v for k, v in t.user_attrs.items() if k in _FIELDS}  # older runs stored extra keys
        if t.state == TrialState.COMPLETE:
            out.append(TrialRecord.from_dict({**attrs, "number": t.number}))
        elif "arch" in attrs:
            out.append(TrialRecord(number=t.number, arch=attrs["arch"], source=attrs.get("source", "sampled"),
                                   state="failed", error=errors.get(attrs["arch"], "failed")))
    return sorted(out, key=lambda r: r.number)
