"""Optuna backend (default, embedded): a multi-objective study with a hard latency constraint.

Objectives: validation accuracy (maximise) and latency (minimise); the budget
is an Optuna constraint (``trial.set_constraint("latency", latency - budget)``,
feasible iff <= 0) that the multi-objective TPE sampler takes into account.
Presets that fit the budget are enqueued as seed trials. The study lives in a
JournalStorage file inside the run folder, so ``--resume`` continues it
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

from search_space import Arch, SearchSpace

__all__ = ["run_optuna", "open_study", "trial_records", "failed_trials", "STUDY_FILE"]

log = logging.getLogger(__name__)
STUDY_FILE = "study.journal"


def open_study(run_dir: Path, *, seed: int) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(Path(run_dir) / STUDY_FILE)))
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    return optuna.create_study(storage=storage, study_name="search", directions=["maximize", "minimize"],
                               sampler=sampler, load_if_exists=True)


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


def run_optuna(
    score: Callable[[Arch], dict],
    space: SearchSpace,
    *,
    run_dir: Path,
    n_trials: int,
    seed: int,
    num_classes: int,
    seeds: Sequence[tuple[str, Arch]] = (),
    on_trial: Callable[[int, dict], None] | None = None,
) -> optuna.Study:
    """Run (or continue) the study until it holds ``n_trials`` finished trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(run_dir, seed=seed)
    recovered = _recover(study)
    if recovered:
        log.info("resume: %d interrupted trial(s) will be re-run", recovered)
    for name, arch in seeds:
        study.enqueue_trial(space.params_from_arch(arch), user_attrs={"source": name}, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = space.suggest(trial, num_classes=num_classes, small_input=None)
        rec = score(arch)
        for k, v in rec.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("source", trial.user_attrs.get("source", "sampled"))
        trial.set_constraint("latency", float(rec["constraint"]))
        if on_trial is not None:
            on_trial(trial.number, rec)
        return float(rec["acc"]), float(rec["latency_ms"])

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = max(0, n_trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining, gc_after_trial=False)
    return study


def failed_trials(study: optuna.Study) -> list[dict]:
    """One dict per trial that failed (``number``, ``arch``, ``source``, ``error``): the Ray backend
    records its architecture when it is suggested and its error in ``trial_errors``."""
    errors = study.user_attrs.get("trial_errors", {})
    return [{"number": t.number, "arch": t.user_attrs.get("arch"), "source": t.user_attrs.get("source", "sampled"),
             "error": errors.get(t.user_attrs.get("arch"), "failed")}
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if "arch" in t.user_attrs]


def trial_records(study: optuna.Study) -> list[dict]:
    """One dict per finished trial (number, source, and the scorer's record)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = {"number": t.number, **{k: v for k, v in t.user_attrs.items()}}
        out.append(rec)
    return out
