"""Ray Tune backend (``--backend ray``): the same objective, distributed.

* trials are a named ``tune.Trainable`` class, :class:`ArchTrial` (the name the
  Ray dashboard shows for its actors); each scores one architecture with the
  objective both backends receive (:class:`~search.evaluate.Scorer`) and
  reports its :class:`~search.records.TrialRecord` as metrics;
* the objective (with its supernet, data and latency predictor) reaches the
  workers through ``tune.with_parameters`` (one object-store copy, not one per trial);
* the search algorithm is Optuna's TPE (top-1, with ``pareto`` also latency) through
  :class:`ConstrainedOptunaSearch`, an ``OptunaSearch`` that forwards the
  latency constraint (``OptunaSearch`` itself never passes constraints on) and rejects
  suggestions predicted over the budget before they become trials (rejection sampling),
  with its study in a JournalStorage file of the folder it is given (the run folder, or its
  ``search-<stem>/`` in a stratified stem search) under a unique
  study name, wrapped in a ``ConcurrencyLimiter``;
* ``address=None`` starts a local cluster with its dashboard on 127.0.0.1
  (the URL is logged); an address joins an existing cluster (``ray start --head``).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas_training.cluster import dashboard_hint, error_line, init_ray
from search.backends import optuna as optuna_backend
from search.backends.optuna import records
from search.records import TrialRecord
from search_space import Arch, SearchSpace, Task

__all__ = ["ArchTrial", "ConstrainedOptunaSearch", "run", "init_ray", "finetune_asha", "dashboard_hint"]

log = logging.getLogger(__name__)
STUDY_FILE = "study-ray.journal"


class ConstrainedOptunaSearch:  # filled in lazily (ray is an optional import at module load)
    pass


_METRICS = tuple(k for k in TrialRecord.__dataclass_fields__ if k not in ("number", "state", "error"))


def _make_searcher_class():
    from ray.tune.search.optuna import OptunaSearch

    class _Constrained(OptunaSearch):
        """OptunaSearch that forwards the latency constraint and the trial record to Optuna, and
        draws a suggestion ``reject`` returns a record for (predicted far over the budget) again,
        up to ``max_rejections`` times in a row, telling Optuna that record with the user attribute
        ``rejected`` (it never becomes a Tune trial, so it does not count towards ``num_samples``)."""

        def __init__(self, *args, reject=None, max_rejections: int = 0, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.reject, self.max_rejections = reject, max_rejections

        def suggest(self, trial_id: str):
            reject = getattr(self, "reject", None)  # a searcher pickled before rejection sampling has none
            for _ in range(getattr(self, "max_rejections", 0) if reject is not None else 0):
                params = super().suggest(trial_id)
                if not isinstance(params, dict) or "arch" not in params:
                    return params  # Searcher.FINISHED and the like
                rec = reject(Arch.parse(params["arch"]))
                if rec is None:
                    return params
                ot_trial = self._ot_trials.pop(trial_id)  # the next super().suggest asks a new one
                rec = rec.replace(number=ot_trial.number, source=params.get("source", "sampled"), rejected=True)
                for k, v in rec.to_dict().items():
                    if k in _METRICS:
                        ot_trial.set_user_attr(k, v)
                ot_trial.set_constraint("latency", float(rec.constraint))
                self._ot_study.tell(ot_trial, [rec.acc, rec.latency_ms] if isinstance(self.metric, list) else rec.acc)
            return super().suggest(trial_id)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None and result and "constraint" in result:
                try:
                    ot_trial.set_constraint("latency", float(result["constraint"]))
                    for k in _METRICS:
                        if k in result:
                            ot_trial.set_user_attr(k, result[k])
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # restored from a Tune snapshot older than the journal: the trial is recorded
            super().on_trial_complete(trial_id, result=result, error=error)

    _Constrained.__name__ = _Constrained.__qualname__ = "ConstrainedOptunaSearch"
    return _Constrained


def _make_trainable():
    from ray import tune

    class ArchTrial(tune.Trainable):
        """One architecture: inherited weights, BN recalibration, validation, latency."""

        def setup(self, config: dict, objective=None) -> None:
            import torch

            torch.set_num_threads(1)
            self.arch = Arch.parse(config["arch"])
            self.objective = objective

        def reset_config(self, new_config: dict) -> bool:
            """Reuse this actor (``TuneConfig(reuse_actors=True)``) for the next architecture: the
            supernet, data and predictor stay loaded; a new actor per trial cost ~2 s here."""
            self.arch = Arch.parse(new_config["arch"])
            return True

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            return None  # one step per trial: nothing to resume inside a trial

        def load_checkpoint(self, checkpoint) -> None:
            return None

        def step(self) -> dict:
            rec = self.objective(self.arch).replace(source=self.config.get("source", "sampled"))
            return {**{k: v for k, v in rec.to_dict().items() if k != "number"}, "done": True}

    return ArchTrial


class _DefineByRun:
    """Picklable define-by-run space for OptunaSearch (Tune checkpoints its searcher)."""

    def __init__(self, space: SearchSpace, task: Task, names: dict[str, str]) -> None:
        self.space, self.task, self.names = space, task, names

    def __call__(self, trial) -> dict:
        arch = str(self.space.suggest(trial, num_classes=self.task.num_classes, small_input=self.task.small_input))
        source = self.names.get(arch, "sampled")
        trial.set_user_attr("arch", arch)  # known from the start: a trial that fails keeps its architecture
        trial.set_user_attr("source", source)
        return {"arch": arch, "source": source}


ArchTrial = None  # resolved by run (keeps `import search.backends.ray` cheap without ray)


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
    concurrency: int = 2,
    address: str | None = None,
    verbose: int = 1,
    max_failures: int = 2,
) -> list[TrialRecord]:
    """Run (or, with ``resume``, continue) the search with Ray Tune; every trial's record, the
    failed ones with ``state="failed"`` (the backend protocol, :class:`search.backends.Backend`).

    ``objective`` must pickle: it travels to the trial actors once, through ``tune.with_parameters``.
    ``on_trial`` sees each finished trial after the search (Tune's own table shows them live).
    ``pareto``: latency is a second objective of the study (else top-1 alone, under the constraint).
    ``reject``/``max_rejections``: rejection sampling in the searcher (:class:`ConstrainedOptunaSearch`
    draws a rejected suggestion again before it becomes a Tune trial), so ``n_trials`` Tune trials
    are scored networks; ``reject`` must pickle (Tune checkpoints the searcher).

    ``verbose=1`` prints Tune's trial table as trials report (accuracy, latency, constraint),
    the same metrics the Ray dashboard shows while the run goes on.

    Failures: a trial whose worker process dies, or that raises, is run again up to
    ``max_failures`` times (``tune.FailureConfig``); one that still fails is recorded FAIL in
    the study, with its architecture (user attribute ``arch``) and its error (study user
    attribute ``trial_errors``, see :func:`search.backends.optuna.records`), and the
    search goes on.

    Resume: the Tune experiment is checkpointed under ``run_dir/ray/<study name>``
    (``ray_study.txt`` names it); ``resume=True`` restores it with ``tune.Tuner.restore``:
    finished trials are kept, unfinished ones run again, and the searcher continues its study.

    Raises:
        ValueError: an unreachable ``address``.
        KeyboardInterrupt: the search was interrupted (Ctrl-C); its state is saved for ``resume``.
    """
    from ray import tune

    global ArchTrial, ConstrainedOptunaSearch
    ArchTrial = _make_trainable()
    ConstrainedOptunaSearch = _make_searcher_class()
    init_ray(address)
    storage = JournalStorage(JournalFileBackend(str(Path(run_dir) / STUDY_FILE)))
    study_name, exp = _experiment(run_dir, resume)
    trainable = tune.with_parameters(ArchTrial, objective=objective)
    # with_parameters returns a subclass named with_parameters.<locals>._Inner; keep the trial
    # actors' name readable in the Ray dashboard
    trainable.__name__ = trainable.__qualname__ = "ArchTrial"
    if exp is not None:
        tuner = tune.Tuner.restore(str(exp), trainable=trainable)
    else:
        searcher = _searcher(space, task, seeds, seed, study_name, storage, pareto, reject, max_rejections)
        tuner = _new_tuner(trainable, searcher, run_dir, study_name, n_trials, concurrency, verbose, max_failures)
    results = tuner.fit()
    errors = {}
    for n, r in enumerate(results):
        if r.error is not None and r.config:  # a trial that never started after a restore has no config
            errors[str(r.config.get("arch"))] = error_line(r.error)
        elif r.metrics and on_trial is not None:
            on_trial(TrialRecord.from_dict({"number": n, **{k: r.metrics[k] for k in _METRICS if k in r.metrics}}))
    if errors:  # saved before an interrupt too: a restored Tune run no longer carries the exceptions
        study = optuna.load_study(study_name=study_name, storage=storage)
        study.set_user_attr("trial_errors", {**study.user_attrs.get("trial_errors", {}), **errors})
        log.warning("%d Ray trial(s) failed after %d retries and are recorded FAIL; first: %s", len(errors),
                    max_failures, next(iter(errors.values())))
    if results.num_terminated + results.num_errors < n_trials:  # Ctrl-C: Tune stopped and saved its state
        raise KeyboardInterrupt(f"the Ray search stopped after {results.num_terminated} of {n_trials} trials")
    return records(optuna.load_study(study_name=study_name, storage=storage))


def _experiment(run_dir: Path, resume: bool) -> tuple[str, Path | None]:
    """(study name, Tune experiment folder to restore or None for a new search). A new search
    writes its name to ``ray_study.txt`` before any trial, so an interrupted run can be restored."""
    from ray import tune

    name_file = Path(run_dir) / "ray_study.txt"
    if resume and name_file.is_file():
        study_name = name_file.read_text().strip()
        exp = Path(run_dir).resolve() / "ray" / study_name
        if tune.Tuner.can_restore(str(exp)):
            return study_name, exp
        log.warning("resume: no Tune checkpoint under %s yet (interrupted at its start); the search starts again", exp)
    study_name = f"search-{uuid.uuid4().hex[:8]}"
    name_file.write_text(study_name + "\n")
    return study_name, None


def _searcher(space: SearchSpace, task: Task, seeds: Sequence[tuple[str, Arch]], seed: int, study_name: str,
              storage, pareto: bool = False, reject=None, max_rejections: int = 0):
    """Optuna's TPE behind Tune (top-1; with ``pareto`` latency too), with the presets as its first
    points, rejecting what ``reject`` rejects (``max_rejections`` in a row at most)."""
    points = [space.params_from_arch(a, small_input=task.small_input) for _, a in seeds]
    return ConstrainedOptunaSearch(
        space=_DefineByRun(space, task, {str(a): n for n, a in seeds}),
        metric=["acc", "latency_ms"] if pareto else "acc", mode=["max", "min"] if pareto else "max",
        points_to_evaluate=points or None,
        sampler=optuna_backend.sampler(seed, len(points)),
        study_name=study_name, storage=storage, reject=reject, max_rejections=max_rejections)


def _new_tuner(trainable, searcher, run_dir: Path, study_name: str, n_trials: int, concurrency: int, verbose: int,
               max_failures: int):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    return tune.Tuner(
        trainable,  # a class Trainable asks for 1 CPU per trial by default
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
                                    num_samples=n_trials, reuse_actors=True),
        run_config=tune.RunConfig(name=study_name, storage_path=str(Path(run_dir).resolve() / "ray"),
                                  stop={"training_iteration": 1}, verbose=verbose,
                                  failure_config=tune.FailureConfig(max_failures=max_failures)),
    )


def _finetune_trainable(config: dict, supernet=None, data=None, archs=None, cfg=None, device=None, seed=0,
                        ckpt_dir=None, supernet_id=None) -> None:
    """One candidate's training (fine-tune or from scratch, ``cfg.init``) as a Tune function trainable:
    one report per epoch (ASHA's rungs)."""
    import torch
    from ray import tune

    from search.finetune import finetune_step

    torch.set_num_threads(1)
    step, _ = finetune_step(supernet, archs, data, cfg, device=device, seed=seed, ckpt_dir=ckpt_dir,
                            supernet_id=supernet_id)
    k = config["candidate"]
    for epoch in range(1, cfg.epochs + 1):
        tune.report({"acc": step(k, epoch), "candidate": k, "epoch": epoch})


def finetune_asha(supernet, archs: Sequence[Arch], data, cfg, *, device, seed: int, ckpt_dir: Path,
                  supernet_id: str, run_dir: Path, address: str | None = None, concurrency: int = 2,
                  verbose: int = 0) -> list[dict]:
    """The multi-fidelity final pick on Ray Tune: every candidate trains in a trial of its own
    (``search.finetune.finetune_step``: from scratch or a fine-tune, ``cfg.init``; checkpointed per
    epoch under ``ckpt_dir``) and Tune's :class:`~ray.tune.schedulers.ASHAScheduler` (Li et al.,
    MLSys 2020) stops the weaker ones at the rungs r, r*eta, r*eta^2, ... epochs (r =
    ``cfg.first_rung``: after the recipe's warm-up from scratch). Candidates start best one-shot
    score first. ``supernet`` is only shipped to the trials for a fine-tune.

    ``ckpt_dir`` and ``run_dir`` must be storage every node sees (a local cluster, or a shared
    file system on several nodes): the driver reloads the winner from its trial's checkpoint.

    Returns records like :func:`search.finetune.successive_halving` (input order): ``arch``,
    ``finetune_acc``, ``epochs``, ``pruned`` (stopped before ``cfg.epochs``), ``final``.

    Raises:
        ValueError: an unreachable ``address``; a trial that failed (its error).
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    init_ray(address)
    trainable = tune.with_parameters(_finetune_trainable, supernet=supernet if cfg.init == "inherited" else None,
                                     data=data, archs=list(archs), cfg=cfg,
                                     device=str(device), seed=seed, ckpt_dir=str(Path(ckpt_dir).resolve()),
                                     supernet_id=supernet_id)
    sched = ASHAScheduler(time_attr="training_iteration", max_t=cfg.epochs, grace_period=cfg.first_rung,
                          reduction_factor=cfg.reduction_factor)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"candidate": tune.grid_search(list(range(len(archs))))},
        tune_config=tune.TuneConfig(metric="acc", mode="max", scheduler=sched, max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name=f"finetune-{uuid.uuid4().hex[:8]}",
                                  storage_path=str(Path(run_dir).resolve() / "ray"), verbose=verbose),
    )
    results = tuner.fit()
    out: list[dict | None] = [None] * len(archs)
    for r in results:
        if r.error is not None:
            raise ValueError(f"finetune: a Ray trial failed ({str(r.error).splitlines()[0]})")
        hist = r.metrics_dataframe.sort_values("epoch")
        k = int(r.config["candidate"])
        accs = [float(a) for a in hist["acc"]]
        out[k] = {"arch": str(archs[k]), "finetune_acc": accs, "epochs": len(accs),
                  "pruned": len(accs) < cfg.epochs, "final": accs[-1]}
    return [r for r in out if r is not None]
