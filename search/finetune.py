"""Multi-fidelity final pick: successive halving over short trainings of the best candidates.

The one-shot score (inherited weights + BN recalibration) ranks the search's
candidates only roughly. Before the final choice, the best ``top`` candidates
by that score (all measured under the budget) train one epoch at a time, and
Optuna's :class:`~optuna.pruners.SuccessiveHalvingPruner` (asynchronous
successive halving, Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020) stops the weaker ones at each rung (epochs r, r*eta,
r*eta^2, ..., r = :attr:`FinetuneConfig.first_rung`): a candidate goes on only
while its validation top-1 is among the best 1/eta of those that reached the
same rung. Candidates run best one-shot score first, so the strongest set the
bar early. The winner is the most accurate candidate that finished all ``epochs``.

Each candidate starts either from a fresh initialisation (``init="scratch"``, the
search's default: the retrain recipe of :func:`search.retrain.retrain_recipe` over a
:data:`SCRATCH_SCHEDULE_EPOCHS`-epoch schedule, stopped after ``epochs``; reduced training
as a ranking proxy, Zhou et al., "EcoNAS", CVPR 2020; its first rung waits for the
recipe's warm-up, since top-1 inside it is near chance) or from its inherited weights
(``init="inherited"``: a fine-tune, lr ``lr``, a cosine schedule of ``epochs``, rungs from
epoch 1). Against the committed CIFAR-10 truth (``benchmarks/supernet_ranking.py
--scratch-epochs 2`` and ``--pick``), two epochs from scratch rank the ImageNet-stem
networks at Kendall tau 0.70-0.72 against 0.38-0.48 for 1-3 epochs of fine-tune, and
picking the best of each stem after them leaves 0.63-0.66 points of retrained top-1 on
a shortlist of 4 against 1.83 for a 1-epoch fine-tune.

Each candidate's training is checkpointed after every epoch, so an
interrupted pick resumes and ends as an uninterrupted one would (see
:func:`successive_halving`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.trial import TrialState

from search.config import FINETUNE_INITS
from search_space import Arch

__all__ = ["FinetuneConfig", "successive_halving", "winner_index", "finetune_step", "INITS", "SCRATCH_SCHEDULE_EPOCHS",
           "scratch_recipe"]

log = logging.getLogger(__name__)

INITS = FINETUNE_INITS  # what a final-pick candidate starts from (as ``search.retrain --init``)
# the schedule a from-scratch candidate is cut from: the committed truth's retrain recipe
# (benchmarks/ground_truth.json, 15 epochs), whose first epochs ranked it at tau 0.57-0.64
SCRATCH_SCHEDULE_EPOCHS = 15


@dataclass(frozen=True)
class FinetuneConfig:
    """``top``: candidates trained (0 = off: the one-shot score decides); ``epochs``: the
    most any candidate gets (from scratch: where the schedule is cut); ``lr``: peak learning rate of the fine-tune (cosine, no warm-up;
    ``init="inherited"`` only); ``reduction_factor``: eta of successive halving; ``init``: what a
    candidate starts from, one of :data:`INITS` (see the module docstring).

    Raises:
        ValueError: a negative ``top``, ``epochs`` < 1 (or above :data:`SCRATCH_SCHEDULE_EPOCHS`
            from scratch), ``lr`` <= 0, ``reduction_factor`` < 2 or an unknown ``init``.
    """

    top: int = 4
    epochs: int = 4
    lr: float = 0.01
    reduction_factor: int = 2
    init: str = "inherited"

    def __post_init__(self) -> None:
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 0:
            raise ValueError(f"finetune_top: must be an integer >= 0 (0 = off), got {self.top!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"finetune_epochs: must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"finetune lr: must be > 0, got {self.lr!r}")
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise ValueError(f"reduction_factor: must be an integer >= 2, got {self.reduction_factor!r}")
        if self.init not in INITS:
            raise ValueError(f"finetune_init: unknown init {self.init!r}; available: {list(INITS)}")
        if self.init == "scratch" and self.epochs > SCRATCH_SCHEDULE_EPOCHS:
            raise ValueError(f"finetune_epochs: from scratch a candidate trains at most the "
                             f"{SCRATCH_SCHEDULE_EPOCHS}-epoch schedule it is cut from, got {self.epochs}")

    @property
    def first_rung(self) -> int:
        """The first epoch successive halving compares at: 1 for a fine-tune; from scratch the end
        of the retrain recipe's warm-up (capped at ``epochs``), before which top-1 is near chance."""
        if self.init == "inherited":
            return 1
        return max(1, min(self.epochs, scratch_recipe(0).warmup_epochs))


def scratch_recipe(seed: int):
    """The recipe a from-scratch candidate trains with: ``search.retrain``'s over
    :data:`SCRATCH_SCHEDULE_EPOCHS` epochs (lr 0.05, batch 128), cut after ``epochs``."""
    from search.retrain import retrain_recipe

    return retrain_recipe(SCRATCH_SCHEDULE_EPOCHS, seed, 0.05, 128)


def successive_halving(
    archs: Sequence[Arch],
    step: Callable[[int, int], float],
    cfg: FinetuneConfig,
    *,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> list[dict]:
    """Train ``archs`` (best one-shot score first) under successive halving.

    The study is in memory. Resuming relies on ``step`` being resumable (the real one
    checkpoints every candidate after every epoch and returns the recorded figure without
    training again): the decisions are replayed in the same order on the same values, so
    an interrupted pick ends exactly as an uninterrupted one. (A persistent Optuna study
    would not: trials failed by the interruption keep competing at the rungs.)

    Args:
        archs: the candidates, in the order they run.
        step: ``step(k, epoch) -> val top-1 (%)`` trains candidate ``k`` up to ``epoch``
            (1-based; called with 1, 2, ... in turn) and returns its accuracy then.
        cfg: the budget (``epochs``), eta (``reduction_factor``) and the first rung (``first_rung``).
        on_epoch: progress callback ``(k, epoch, acc)``.

    Returns:
        One record per candidate, in input order: ``arch``, ``finetune_acc`` (per epoch, %),
        ``epochs`` (run), ``pruned`` (stopped early by successive halving) and ``final``
        (its last accuracy, %). A candidate that ran every epoch is never ``pruned``.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.first_rung, reduction_factor=cfg.reduction_factor,
                                                    min_early_stopping_rate=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        k = trial.suggest_int("candidate", 0, len(archs) - 1)
        acc = float("nan")
        for epoch in range(1, cfg.epochs + 1):
            acc = float(step(k, epoch))
            trial.report(acc, epoch)
            if on_epoch is not None:
                on_epoch(k, epoch, acc)
            if epoch < cfg.epochs and trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    for k in range(len(archs)):
        study.enqueue_trial({"candidate": k})
        study.optimize(objective, n_trials=1, gc_after_trial=False, catch=())
    out = []
    for t in study.get_trials(deepcopy=False):
        k = t.params["candidate"]
        accs = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        out.append({"arch": str(archs[k]), "finetune_acc": accs, "epochs": len(accs),
                    "pruned": t.state == TrialState.PRUNED, "final": accs[-1]})
    return out


def winner_index(records: Sequence[dict]) -> int:
    """The candidate to ship: the most accurate of those that ran every epoch."""
    if not records:
        raise ValueError("finetune: no candidates")
    return max(range(len(records)), key=lambda k: (not records[k]["pruned"], records[k]["final"]))


def finetune_step(supernet, archs: Sequence[Arch], data, cfg: FinetuneConfig, *, device, seed: int,
                  ckpt_dir: Path, supernet_id: str, calib=None) -> tuple[Callable[[int, int], float], dict]:
    """The real ``step`` for :func:`successive_halving`, checkpointed in ``ckpt_dir/<sha1 of the
    arch>.pt`` after every epoch, with the supernet recipe's augmentation.

    ``cfg.init == "inherited"`` (``supernet`` required): candidate k starts from its inherited weights (BN recalibrated,
    as scored) and trains a short cosine schedule of ``cfg.epochs`` epochs at ``cfg.lr`` (no
    warm-up). ``supernet_id`` names the supernet the weights come from; a checkpoint of another
    supernet, arch or schedule is refused, not reused.

    ``cfg.init == "scratch"``: candidate k starts from the initialisation ``ShuffleNet(arch)``
    draws under ``torch.manual_seed(seed)`` and trains with :func:`scratch_recipe`, cut after
    ``cfg.epochs`` (it needs no supernet; its checkpoints do not depend on one, but record the
    cut, so a checkpoint trained past another cut is refused, not read at the wrong epoch).

    Returns ``(step, models)``: ``models[k]`` is candidate k's model as last trained (eval mode).

    Raises (from ``step``):
        ValueError: a checkpoint of another supernet, arch, init, schedule or cut in ``ckpt_dir``.
    """
    import torch

    from nas_training.engine import Recipe
    from search.evaluate import EvalConfig, evaluate_arch
    from supernet import ShuffleNet
    from supernet.train import train_model

    models: dict[int, object] = {}
    if cfg.init == "scratch":
        recipe = scratch_recipe(seed)
        origin = {"init": "scratch", "cut_after_epoch": cfg.epochs}
    else:
        recipe = Recipe(epochs=cfg.epochs, lr=cfg.lr, warmup_epochs=0, seed=seed)
        origin = {"finetune": {"epochs": cfg.epochs, "lr": cfg.lr}, "supernet": supernet_id}

    def start(k: int):
        if cfg.init == "scratch":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return ShuffleNet(archs[k])
        return evaluate_arch(supernet, archs[k], data, EvalConfig(), device=device, calib=calib)[1]

    def step(k: int, epoch: int) -> float:
        if k not in models:
            models[k] = start(k)
        name = hashlib.sha1(str(archs[k]).encode()).hexdigest()[:16]
        # one epoch more per call: the checkpoint carries optimizer and schedule across calls
        hist = train_model(models[k], data, recipe, device=device, progress=False, desc=f"{cfg.init} {k}",
                           checkpoint=Path(ckpt_dir) / f"{name}.pt", resume=True,
                           config={"arch": str(archs[k]), **origin}, stop_after_epoch=epoch)
        models[k].eval()
        return float(hist[epoch - 1]["val_acc"])  # a resumed candidate may already be past ``epoch``

    return step, models
