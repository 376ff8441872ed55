"""Multi-fidelity final pick: successive halving over short trainings of the best candidates.

The one-shot score (inherited weights + BN recalibration) ranks the search's
candidates only roughly. Before the final choice, the best ``top`` candidates
by that score (all measured under the budget) train, and successive halving
(Jamieson and Talwalkar, "Non-stochastic Best Arm Identification and
Hyperparameter Optimization", AISTATS 2016; the inner loop of Hyperband, Li et
al., JMLR 2018) stops the weaker ones at each rung (epochs r, r*eta, r*eta^2, ...
below ``epochs``, r = :attr:`FinetuneConfig.first_rung`): every candidate still in
trains up to the rung, then only the best 1/eta of them by validation top-1 go on.
The survivors of the last rung train all ``epochs``; the most accurate of them wins.

This is the synchronous form, for candidates trained one after another. The
asynchronous one (ASHA, Li et al., MLSys 2020; Optuna's ``SuccessiveHalvingPruner``,
Ray Tune's ``ASHAScheduler``) exists for parallel workers; run one candidate after
another, it compares each candidate only with the ones before it at a rung, so the
first always trains every epoch and the outcome depends on the order (this module
used Optuna's pruner until session 16). The Ray backend's final pick, whose
candidates train in parallel trials, stays ASHA (:func:`search.backends.ray.finetune_asha`).

Each candidate starts either from a fresh initialisation (``init="scratch"``, the
search's default: the retrain recipe of :func:`search.retrain.retrain_recipe` over
``epochs`` epochs, a complete short schedule; reduced training as a ranking proxy,
Zhou et al., "EcoNAS", CVPR 2020; its first rung waits for the recipe's warm-up,
since top-1 inside it is near chance) or from its inherited weights
(``init="inherited"``: a fine-tune, lr ``lr``, a cosine schedule of ``epochs``, rungs
from epoch 1). ``benchmarks/final_pick.py`` measures the rule against the retrained
shortlists (README "Session 16").

After every epoch a candidate's BatchNorm statistics are re-estimated on the first
:data:`BN_CALIB_BATCHES` of the one-shot score's fixed training batches
(:func:`search.evaluate.calibration_batches`, as SPOS and once-for-all do for a subnet) before
it is validated and checkpointed. The training is
unchanged by it (train-mode BN normalises with batch statistics); what changes is the
judge: early in a schedule the weights move faster than BN's running averages follow, and
on digits (12 steps an epoch) every from-scratch candidate validated at chance (9.7-11.4%)
at the epoch-2 rung with its running statistics, and at 29.8-50.7% with re-estimated ones
(session 21), so the rung halved the shortlist at random. The model validated is the one
checkpointed and shipped. Two batches (512 images) cost a third of all six the one-shot score
uses on digits (1,438 images; 1.2 s against 3.4 s after a 10-s epoch of a small-stem candidate)
and validated those candidates within 1.7 points of them at epoch 2, within 0.3 from epoch 4.

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

from search.config import FINETUNE_INITS
from search_space import Arch

__all__ = ["FinetuneConfig", "successive_halving", "winner_index", "finetune_step", "INITS", "scratch_recipe",
           "BN_CALIB_BATCHES", "checkpoint_folder"]

log = logging.getLogger(__name__)

INITS = FINETUNE_INITS  # what a final-pick candidate starts from (as ``search.retrain --init``)
BN_CALIB_BATCHES = 2  # batches of 256 a candidate's BN statistics are re-estimated on after each epoch


@dataclass(frozen=True)
class FinetuneConfig:
    """``top``: candidates trained (0 = off: the one-shot score decides); ``epochs``: the
    length of every candidate's schedule, which the survivors of the last rung complete; ``lr``:
    peak learning rate of the fine-tune (cosine, no warm-up; ``init="inherited"`` only);
    ``reduction_factor``: eta of successive halving; ``init``: what a candidate starts from, one
    of :data:`INITS` (see the module docstring).

    Raises:
        ValueError: a negative ``top``, ``epochs`` < 1, ``lr`` <= 0, ``reduction_factor`` < 2 or
            an unknown ``init``.
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

    @property
    def first_rung(self) -> int:
        """The first epoch successive halving compares at: 1 for a fine-tune; from scratch the end
        of the retrain recipe's warm-up (capped at ``epochs``), before which top-1 is near chance."""
        if self.init == "inherited":
            return 1
        return max(1, min(self.epochs, scratch_recipe(self.epochs, 0).warmup_epochs))

    @property
    def rungs(self) -> tuple[int, ...]:
        """The epochs successive halving compares at: r, r*eta, r*eta^2, ... below ``epochs``
        (r = :attr:`first_rung`). E.g. 6 epochs from scratch, eta 2: (2, 4)."""
        out, r = [], self.first_rung
        while r < self.epochs:
            out.append(r)
            r *= self.reduction_factor
        return tuple(out)

    def planned_epochs(self, n: int) -> int:
        """Epochs trained in all by :func:`successive_halving` over ``n`` candidates (for a progress
        bar): every candidate to the first rung, then the best ``max(1, k // eta)`` of the ``k``
        still in to the next one, and so on to ``epochs``. 0 for ``n`` < 1."""
        if n < 1:
            return 0
        total, at, k = 0, 0, n
        for r in (*self.rungs, self.epochs):
            total += k * (r - at)
            at, k = r, max(1, k // self.reduction_factor)
        return total


def scratch_recipe(epochs: int, seed: int):
    """The recipe a from-scratch candidate trains with: ``search.retrain``'s (lr 0.05, batch 128,
    a warm-up of ``min(2, epochs - 1)`` epochs, then cosine) over ``epochs`` epochs, a complete
    short schedule."""
    from search.retrain import retrain_recipe

    return retrain_recipe(epochs, seed, 0.05, 128)


def successive_halving(
    archs: Sequence[Arch],
    step: Callable[[int, int], float],
    cfg: FinetuneConfig,
    *,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> list[dict]:
    """Train ``archs`` under synchronous successive halving (module docstring).

    At each rung of ``cfg.rungs`` every candidate still in has trained up to it, and the best
    ``max(1, k // eta)`` of the ``k`` in go on (ties: the earlier in ``archs``, the better
    one-shot score). The survivors of the last rung train to ``cfg.epochs``.

    Resuming relies on ``step`` being resumable (the real one checkpoints every candidate
    after every epoch and returns the recorded figure without training again): the decisions
    are replayed on the same values, so an interrupted pick ends exactly as an uninterrupted one.

    Args:
        archs: the candidates, best one-shot score first.
        step: ``step(k, epoch) -> val top-1 (%)`` trains candidate ``k`` up to ``epoch``
            (1-based; called with 1, 2, ... in turn for each candidate) and returns its accuracy then.
        cfg: the schedule (``epochs``), eta (``reduction_factor``) and the rungs (``rungs``).
        on_epoch: progress callback ``(k, epoch, acc)``.

    Returns:
        One record per candidate, in input order: ``arch``, ``finetune_acc`` (per epoch, %),
        ``epochs`` (run), ``pruned`` (stopped at a rung before ``cfg.epochs``) and ``final``
        (its last accuracy, %).

    Raises:
        ValueError: no candidates.
    """
    if not archs:
        raise ValueError("finetune: no candidates")
    accs: list[list[float]] = [[] for _ in archs]
    alive = list(range(len(archs)))
    for r in (*cfg.rungs, cfg.epochs):
        for k in alive:
            for epoch in range(len(accs[k]) + 1, r + 1):
                accs[k].append(float(step(k, epoch)))
                if on_epoch is not None:
                    on_epoch(k, epoch, accs[k][-1])
        if r < cfg.epochs:
            keep = max(1, len(alive) // cfg.reduction_factor)
            alive = sorted(sorted(alive, key=lambda k: -accs[k][r - 1])[:keep])
    return [{"arch": str(a), "finetune_acc": accs[k], "epochs": len(accs[k]), "pruned": len(accs[k]) < cfg.epochs,
             "final": accs[k][-1]} for k, a in enumerate(archs)]


def winner_index(records: Sequence[dict]) -> int:
    """The candidate to ship: the most accurate of those that ran every epoch (ties: the first,
    the better one-shot score). Raises ``ValueError`` on no records."""
    if not records:
        raise ValueError("finetune: no candidates")
    return max(range(len(records)), key=lambda k: (not records[k]["pruned"], records[k]["final"]))


def checkpoint_folder(cfg: FinetuneConfig) -> str:
    """The run-folder subfolder of a final pick's checkpoints, named by what they hold (from scratch:
    the schedule; both: the BN re-estimation), so that a run folder of an older version (a
    15-epoch schedule cut short, in ``finetune-scratch/``; candidates validated with running BN
    statistics, in ``finetune/`` or ``finetune-scratch-e6/``) or another ``--finetune-epochs`` on
    resume starts afresh instead of being refused by :func:`finetune_step`'s checkpoints."""
    what = "finetune" if cfg.init == "inherited" else f"finetune-{cfg.init}-e{cfg.epochs}"
    return f"{what}-bn{BN_CALIB_BATCHES}"


def finetune_step(supernet, archs: Sequence[Arch], data, cfg: FinetuneConfig, *, device, seed: int,
                  ckpt_dir: Path, supernet_id: str, calib=None) -> tuple[Callable[[int, int], float], dict]:
    """The real ``step`` for :func:`successive_halving`, checkpointed in ``ckpt_dir/<sha1 of the
    arch>.pt`` after every epoch, with the supernet recipe's augmentation.

    ``cfg.init == "inherited"`` (``supernet`` required): candidate k starts from its inherited weights (BN recalibrated,
    as scored) and trains a short cosine schedule of ``cfg.epochs`` epochs at ``cfg.lr`` (no
    warm-up). ``supernet_id`` names the supernet the weights come from; a checkpoint of another
    supernet, arch or schedule is refused, not reused.

    ``cfg.init == "scratch"``: candidate k starts from the initialisation ``ShuffleNet(arch)``
    draws under ``torch.manual_seed(seed)`` and trains with :func:`scratch_recipe` over
    ``cfg.epochs`` (it needs no supernet; its checkpoints do not depend on one, but record the
    recipe, so a checkpoint of another schedule is refused, not read at the wrong epoch).

    Either way, after every epoch the candidate's BN statistics are re-estimated on the first
    :data:`BN_CALIB_BATCHES` of the one-shot score's batches (``calib``, made here when None:
    :func:`search.evaluate.calibration_batches`) before validation and the checkpoint (module
    docstring); each history entry records ``bn_recalibrated`` (batches used).

    Returns ``(step, models)``: ``models[k]`` is candidate k's model as last trained (eval mode).

    Raises (from ``step``):
        ValueError: a checkpoint of another supernet, arch, init or schedule in ``ckpt_dir``.
    """
    import torch

    from nas_common import resolve_device
    from nas_training.engine import Recipe
    from search.evaluate import EvalConfig, calibration_batches, evaluate_arch
    from supernet import ShuffleNet, recalibrate_bn
    from supernet.train import train_model

    models: dict[int, object] = {}
    dev = resolve_device(device)
    batches = {"calib": calib}

    def get_calib() -> list:
        """The one-shot score's batches, made once when first needed (from scratch only the
        :data:`BN_CALIB_BATCHES` it uses; a finished pick needs none)."""
        if batches["calib"] is None:
            n = EvalConfig().calib_batches if cfg.init == "inherited" else BN_CALIB_BATCHES
            batches["calib"] = calibration_batches(data, EvalConfig(calib_batches=n), dev, channels_last=dev.type == "cpu")
        return batches["calib"]

    def recalibrate(model) -> dict:
        return {"bn_recalibrated": recalibrate_bn(model, get_calib()[:BN_CALIB_BATCHES])}

    # the checkpoints record the BN re-estimation: one validated with running statistics (before
    # session 21) is refused, not compared at a rung with re-estimated ones (pipeline folders: :func:`checkpoint_folder`)
    if cfg.init == "scratch":
        recipe = scratch_recipe(cfg.epochs, seed)
        origin = {"init": "scratch", "bn_calib_batches": BN_CALIB_BATCHES}
    else:
        recipe = Recipe(epochs=cfg.epochs, lr=cfg.lr, warmup_epochs=0, seed=seed)
        origin = {"finetune": {"epochs": cfg.epochs, "lr": cfg.lr}, "supernet": supernet_id,
                  "bn_calib_batches": BN_CALIB_BATCHES}

    def start(k: int):
        if cfg.init == "scratch":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return ShuffleNet(archs[k])
        return evaluate_arch(supernet, archs[k], data, EvalConfig(), device=device, calib=get_calib())[1]

    def step(k: int, epoch: int) -> float:
        if k not in models:
            models[k] = start(k)
        name = hashlib.sha1(str(archs[k]).encode()).hexdigest()[:16]
        # one epoch more per call: the checkpoint carries optimizer and schedule across calls
        hist = train_model(models[k], data, recipe, device=device, progress=False, desc=f"{cfg.init} {k}",
                           checkpoint=Path(ckpt_dir) / f"{name}.pt", resume=True,
                           config={"arch": str(archs[k]), **origin}, stop_after_epoch=epoch,
                           after_epoch=recalibrate)
        models[k].eval()
        return float(hist[epoch - 1]["val_acc"])  # a resumed candidate may already be past ``epoch``

    return step, models
