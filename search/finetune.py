"""Multi-fidelity final pick: successive halving over short fine-tunes from inherited weights.

The one-shot score (inherited weights + BN recalibration) ranks the search's
candidates only roughly. Before the final choice, the best ``top`` candidates
by that score (all measured under the budget) are fine-tuned from their
inherited weights one epoch at a time, and Optuna's
:class:`~optuna.pruners.SuccessiveHalvingPruner` (asynchronous successive
halving, Li et al., "A System for Massively Parallel Hyperparameter Tuning",
MLSys 2020) stops the weaker ones at each rung (epochs 1, eta, eta^2, ...):
a candidate goes on only while its validation top-1 is among the best
1/eta of those that reached the same rung. Candidates run best one-shot score
first, so the strongest set the bar early. The winner is the most accurate
candidate that finished all ``epochs``.

The study lives in ``finetune.journal`` of the run folder and each
candidate's fine-tune is checkpointed, so an interrupted pick resumes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search_space import Arch

__all__ = ["FinetuneConfig", "successive_halving", "finetune_step"]

log = logging.getLogger(__name__)
STUDY_FILE = "finetune.journal"


@dataclass(frozen=True)
class FinetuneConfig:
    """``top``: candidates fine-tuned (0 = off: the one-shot score decides); ``epochs``: the
    most any candidate gets; ``lr``: peak learning rate of the fine-tune (cosine, no warm-up);
    ``reduction_factor``: eta of successive halving.

    Raises:
        ValueError: a negative ``top``, ``epochs`` < 1, ``lr`` <= 0 or ``reduction_factor`` < 2.
    """

    top: int = 4
    epochs: int = 4
    lr: float = 0.01
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 0:
            raise ValueError(f"finetune_top: must be an integer >= 0 (0 = off), got {self.top!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"finetune_epochs: must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"finetune lr: must be > 0, got {self.lr!r}")
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise ValueError(f"reduction_factor: must be an integer >= 2, got {self.reduction_factor!r}")


def successive_halving(
    archs: Sequence[Arch],
    step: Callable[[int, int], float],
    cfg: FinetuneConfig,
    *,
    run_dir: Path | None = None,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> list[dict]:
    """Fine-tune ``archs`` (best one-shot score first) under successive halving.

    Args:
        archs: the candidates, in the order they run.
        step: ``step(k, epoch) -> val top-1 (%)`` fine-tunes candidate ``k`` up to ``epoch``
            (1-based; called with 1, 2, ... in turn) and returns its accuracy then.
        cfg: the budget (``epochs``) and eta (``reduction_factor``).
        run_dir: keep the study in ``run_dir/finetune.journal`` (resumable); None = in memory.
        on_epoch: progress callback ``(k, epoch, acc)``.

    Returns:
        One record per candidate, in input order: ``arch``, ``finetune_acc`` (per epoch, %),
        ``epochs`` (run), ``pruned`` (stopped by successive halving) and ``final`` (its last
        accuracy, %).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(Path(run_dir) / STUDY_FILE))) if run_dir is not None else None
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=cfg.reduction_factor,
                                                    min_early_stopping_rate=0)
    study = optuna.create_study(storage=storage, study_name="finetune", direction="maximize", pruner=pruner,
                                load_if_exists=True)
    done = {t.params["candidate"]: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # left by a dead process
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def objective(trial: optuna.Trial) -> float:
        k = trial.suggest_int("candidate", 0, len(archs) - 1)
        trial.set_user_attr("arch", str(archs[k]))
        acc = float("nan")
        for epoch in range(1, cfg.epochs + 1):
            acc = float(step(k, epoch))
            trial.report(acc, epoch)
            if on_epoch is not None:
                on_epoch(k, epoch, acc)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    for k in range(len(archs)):
        if k in done:
            continue
        study.enqueue_trial({"candidate": k})
        study.optimize(objective, n_trials=1, gc_after_trial=False)
    out = []
    trials = {t.params["candidate"]: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))}
    for k, a in enumerate(archs):
        t = trials[k]
        accs = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        out.append({"arch": str(a), "finetune_acc": accs, "epochs": len(accs), "pruned": t.state == TrialState.PRUNED,
                    "final": accs[-1]})
    return out


def finetune_step(supernet, archs: Sequence[Arch], data, cfg: FinetuneConfig, *, device, seed: int,
                  ckpt_dir: Path, calib=None) -> tuple[Callable[[int, int], float], dict]:
    """The real ``step`` for :func:`successive_halving`: candidate k starts from its inherited
    weights (BN recalibrated, as scored) and trains with the supernet recipe's augmentation and
    a short cosine schedule of ``cfg.epochs`` epochs at ``cfg.lr`` (no warm-up), checkpointed in
    ``ckpt_dir/<k>.pt``. Returns ``(step, models)``: ``models[k]`` is candidate k's model as
    last fine-tuned (in eval mode)."""
    from search.evaluate import EvalConfig, evaluate_arch
    from supernet.train import Recipe, train_model

    recipe = Recipe(epochs=cfg.epochs, lr=cfg.lr, warmup_epochs=0, seed=seed)
    models: dict[int, object] = {}

    def step(k: int, epoch: int) -> float:
        if k not in models:
            _, models[k] = evaluate_arch(supernet, archs[k], data, EvalConfig(), device=device, calib=calib)
        # one epoch more per call: the checkpoint carries optimizer and schedule across calls
        hist = train_model(models[k], data, recipe, device=device, progress=False, desc=f"fine-tune {k}",
                           checkpoint=Path(ckpt_dir) / f"{k}.pt", resume=True,
                           config={"arch": str(archs[k]), "finetune": asdict(cfg)}, stop_after_epoch=epoch)
        models[k].eval()
        return float(hist[epoch - 1]["val_acc"])  # a resumed candidate may already be past ``epoch``

    return step, models
