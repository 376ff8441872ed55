"""The main job's settings: one frozen, validated :class:`SearchConfig`, built in one place from
defaults, a ``--config`` YAML, a resumed run's ``run.yaml`` and explicit flags (in that order of
precedence, the last winning)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["SearchConfig", "DEFAULTS", "validate_config", "FINETUNE_INITS", "LEGACY_FINETUNE_INIT", "OBJECTIVES",
           "LEGACY_OBJECTIVE", "STEM_SEARCHES", "LEGACY_STEM_SEARCH", "LEGACY_MAX_REJECTIONS",
           "LEGACY_FINETUNE_WINNER", "run_settings"]


_POSITIVE_INTS = ("trials", "epochs", "input_size", "threads", "calib_archs", "top_k", "concurrency", "finetune_epochs",
                  "train_workers")
_STRINGS = ("data", "space", "out")
# what a final-pick candidate starts from (as ``search.retrain --init``); search.finetune trains it
FINETUNE_INITS = ("inherited", "scratch")
# the final pick of runs written before ``finetune_init`` existed: they fine-tuned inherited weights
LEGACY_FINETUNE_INIT = "inherited"
# what the search optimises: top-1 alone under the hard budget (MnasNet's hard constraint, Tan et al.,
# CVPR 2019, sec. 3: no reward for latency below the target), or top-1 and latency as two objectives
OBJECTIVES = ("accuracy", "pareto")
# the search of runs written before ``objective`` existed: a two-objective study
LEGACY_OBJECTIVE = "pareto"
# how the stem variant is searched when the space declares both: each variant its own search with its
# share of the trials and of the final pick's shortlist (stratified, the default since session 22: the
# one-shot score does not compare networks across stems, so one study drifts to one stem; at matched
# latency on CIFAR-10 above joint on four of four runs, two within the retrains' seed noise: +2.72/+0.36/
# +0.10 points in sessions 17-18, +2.79 in session 22 on one supernet; the main job 542 s cold, its final
# pick at most half small-stem candidates unless the ImageNet stem has too few under the budget), or one
# more parameter of one study (joint, the default before)
STEM_SEARCHES = ("stratified", "joint")
# the stem search of runs written before ``stem_search`` existed: one study over both stems
LEGACY_STEM_SEARCH = "joint"
# runs written before ``max_rejections`` existed counted every suggestion as a trial, the ones the
# predictor put over the budget (never scored) included (also the default)
LEGACY_MAX_REJECTIONS = 0
# runs written before ``finetune_winner`` existed fine-tuned a from-scratch pick's winner from its inherited
# weights too (the default until session 21: on digits those weights never shipped, 96.38 / 87.74% against
# 97.77 / 98.05% from scratch, sessions 16 and 21, and cost 54 s of the default main job's 805 s in session 21)
LEGACY_FINETUNE_WINNER = True
_CHOICES = {"runtime": ("eager", "torchscript", "compile", "onnxruntime"), "backend": ("optuna", "ray"),
            "finetune_init": FINETUNE_INITS, "objective": OBJECTIVES, "stem_search": STEM_SEARCHES}


def validate_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check every setting, whether it came from a flag, a ``--config`` YAML or a resumed run.

    Returns a copy with numbers normalised (``latency_ms`` as float). Raises ``ValueError``
    with one line naming the setting, the rule and the value.
    """
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    v = out["latency_ms"]
    if v is None:
        raise ValueError("latency_ms: a budget is required: --latency-ms MS (or latency_ms in --config)")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"latency_ms: must be a positive finite number of milliseconds, got {v!r}")
    out["latency_ms"] = float(v)
    for k in _POSITIVE_INTS:
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{k}: must be a positive integer, got {v!r}")
    for k in ("seed", "finetune_top", "sandwich", "max_rejections"):
        if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < 0:
            raise ValueError(f"{k}: must be an integer >= 0, got {out[k]!r}")
    for k in _STRINGS:
        if not isinstance(out[k], str) or not out[k].strip():
            raise ValueError(f"{k}: must be a non-empty string, got {out[k]!r}")
    for k in ("device", "address"):
        if out[k] is not None and (not isinstance(out[k], str) or not out[k].strip()):
            raise ValueError(f"{k}: must be a non-empty string or unset, got {out[k]!r}")
    for k, choices in _CHOICES.items():
        if out[k] not in choices:
            raise ValueError(f"{k}: unknown {k} {out[k]!r}; available: {list(choices)}")
    if out["runtime"] == "onnxruntime":
        from search.latency import check_runtime  # the package must be importable before any work starts

        check_runtime("onnxruntime")
    v = out["val_fraction"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ValueError(f"val_fraction: must be a number in (0, 1), got {v!r}")
    if not isinstance(out["finetune_winner"], bool):
        raise ValueError(f"finetune_winner: must be true or false, got {out['finetune_winner']!r}")
    f = out["min_latency_frac"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
        raise ValueError(f"min_latency_frac: must be a number in [0, 1), got {f!r}")
    return out


@dataclass(frozen=True)
class SearchConfig:
    """Every setting of a search run (the flags of ``python -m search.run``; defaults in :data:`DEFAULTS`).

    ``latency_ms``: the hard budget, ms (batch 1, ``runtime`` on ``device`` with ``threads``).
    ``epochs``: supernet epochs; ``sandwich``: the supernet's BigNAS sandwich rule with that many
    sampled paths a step (0 = one fair-sampled path a step); ``trials``: search trials;
    ``objective``: ``"accuracy"`` maximises the one-shot top-1 under the hard budget (one
    objective, the budget an Optuna constraint), ``"pareto"`` also minimises latency (two
    objectives: trials spread over the accuracy/latency front, most of them far below the budget);
    ``finetune_top``/``finetune_epochs``/``finetune_init``: the multi-fidelity final pick (0 = the
    one-shot score decides; ``finetune_init``: candidates start from their inherited weights or
    from scratch, :mod:`search.finetune`; 6 candidates since session 21, 8 before: replayed on
    session 16's curves of six retrained CIFAR-10 shortlists, recorded before the final pick
    re-estimated BN, 6 picked 56.02% on average against 56.03% for 8 at 20 candidate-epochs
    instead of 28, ``benchmarks/final_pick_top.py``); ``finetune_winner``: a from-scratch pick's
    winner is also fine-tuned from its inherited weights for ``finetune_epochs`` and the most
    accurate of its fine-tuned, from-scratch and inherited weights ships (off by default,
    :data:`LEGACY_FINETUNE_WINNER`); ``stem_search``: ``"stratified"`` (default since
    session 22) searches each stem variant the space declares on its own (its share of ``trials``
    and of ``finetune_top``; :func:`search.pipeline.stem_strata`), ``"joint"`` makes the stem
    variant one more parameter of one study (the default before; a run folder records its own); ``max_rejections``: rejection sampling, a suggestion the
    latency predictor puts over the budget (+5%) is told to the sampler as infeasible and drawn again
    instead of counting as a trial, up to that many times in a row (0, the default: every suggestion
    is a trial, scored or not; :mod:`search.backends`; session 18 at matched latency: twice the
    networks scored, retrained winners -3.87 / +2.77 / -2.19 points against the runs without it, and
    up to 4.4x the search time, so it is opt-in). Build one with
    :meth:`from_dict` or :meth:`resolve`: both validate (``ValueError`` naming the setting).
    """

    latency_ms: float
    trials: int = 40
    epochs: int = 25
    data: str = "digits"
    space: str = "default"
    input_size: int = 32
    runtime: str = "eager"
    device: str | None = None
    threads: int = 1
    seed: int = 0
    backend: str = "optuna"
    out: str = "results"
    calib_archs: int = 100
    top_k: int = 5
    address: str | None = None
    concurrency: int = 2
    min_latency_frac: float = 0.0
    finetune_top: int = 6
    finetune_epochs: int = 6
    finetune_init: str = "scratch"
    finetune_winner: bool = False
    val_fraction: float = 0.1
    train_workers: int = 1
    sandwich: int = 0
    objective: str = "accuracy"
    stem_search: str = "stratified"
    max_rejections: int = 0

    def __post_init__(self) -> None:
        validate_config(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchConfig":
        """From a mapping of settings (missing ones take :data:`DEFAULTS`). Raises ``ValueError``."""
        return cls(**validate_config(d))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "SearchConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(cls, flags: Mapping[str, Any] | None = None, *, config_file: str | Path | None = None,
                resume: str | Path | None = None) -> "SearchConfig":
        """defaults < ``resume``'s ``run.yaml`` < ``config_file`` < ``flags`` (``None`` values unset).

        A resumed run keeps its backend and objective (its study has them), and a Ray run its trial
        count and ``max_rejections`` (``Tuner.restore`` keeps them).

        Raises:
            ValueError: not a run folder, an unreadable or unknown-keyed YAML, a changed backend,
                objective, Ray trial count or Ray max_rejections on resume, or any invalid setting (one line naming it).
        """
        cfg: dict[str, Any] = dict(DEFAULTS)
        before: dict[str, Any] = {}
        if resume is not None:
            f = Path(resume) / "run.yaml"
            if not Path(resume).is_dir() or not f.is_file():
                raise ValueError(f"resume: {str(resume)!r} is not a ShuffleNAS run folder (no run.yaml)")
            before = run_settings(yaml.safe_load(f.read_text()))
            cfg.update(before)
        if config_file is not None:
            cfg.update(_read_yaml(Path(config_file)))
        cfg.update({k: v for k, v in (flags or {}).items() if v is not None and k in DEFAULTS})
        config = cls.from_dict(cfg)
        if resume is not None:
            config.check_resume(resume)
        return config

    def check_resume(self, resume: str | Path) -> None:
        """A run folder continues only with its own backend and objective (its study has them), and
        a Ray run with its own trial count and ``max_rejections`` (``Tuner.restore`` keeps them). Raises ``ValueError``
        naming the setting and the fix."""
        f = Path(resume) / "run.yaml"
        if not f.is_file():
            raise ValueError(f"resume: {str(resume)!r} is not a ShuffleNAS run folder (no run.yaml)")
        before = run_settings(yaml.safe_load(f.read_text()) or {})
        if before.get("backend", "optuna") != self.backend:
            raise ValueError(f"backend: {resume} was searched with {before.get('backend', 'optuna')!r}; "
                             f"resume it with the same backend (drop --backend {self.backend})")
        if before.get("stem_search", LEGACY_STEM_SEARCH) != self.stem_search:
            raise ValueError(f"stem_search: {resume} was searched with stem_search "
                             f"{before.get('stem_search', LEGACY_STEM_SEARCH)!r}; resume it with the same one "
                             f"(drop --stem-search {self.stem_search}, or stem_search: in --config)")
        if before.get("objective", LEGACY_OBJECTIVE) != self.objective:
            raise ValueError(f"objective: {resume} was searched with objective {before.get('objective', LEGACY_OBJECTIVE)!r}; "
                             f"resume it with the same objective (drop --objective {self.objective}, or objective: in --config)")
        if self.backend == "ray" and before.get("max_rejections", LEGACY_MAX_REJECTIONS) != self.max_rejections:
            raise ValueError(f"max_rejections: a Ray run resumes with its own "
                             f"{before.get('max_rejections', LEGACY_MAX_REJECTIONS)} (Tune restores its searcher); "
                             f"drop --max-rejections {self.max_rejections}")
        if self.backend == "ray" and before.get("trials") != self.trials:
            raise ValueError(f"trials: a Ray run resumes with its own {before.get('trials')} trials; "
                             f"drop --trials {self.trials}")


DEFAULTS: dict[str, Any] = {f.name: None if f.default is dataclasses.MISSING else f.default
                             for f in dataclasses.fields(SearchConfig)}  # latency_ms: None, required


def _read_yaml(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise ValueError(f"config: {str(p)!r} does not exist")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"config: {p} is not valid YAML ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"config: {p} must hold a mapping of settings")
    d = {str(k).replace("-", "_"): v for k, v in d.items()}
    unknown = sorted(set(d) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown key(s) {unknown} in {p}; known: {sorted(DEFAULTS)}")
    return d


def run_settings(run_yaml: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a run folder's ``run.yaml`` (parsed) records, with what older runs left
    implicit made explicit: a run written before ``finetune_init`` existed fine-tuned its
    final pick from inherited weights (:data:`LEGACY_FINETUNE_INIT`), one written before
    ``objective`` existed searched two objectives (:data:`LEGACY_OBJECTIVE`), and one written
    before ``stem_search`` existed searched the stem in one study (:data:`LEGACY_STEM_SEARCH`),
    and one written before ``max_rejections`` existed counted every suggestion as a trial
    (:data:`LEGACY_MAX_REJECTIONS`), and one written before ``finetune_winner`` existed fine-tuned
    a from-scratch pick's winner (:data:`LEGACY_FINETUNE_WINNER`); each keeps doing so when it is
    loaded or resumed."""
    cfg = dict((run_yaml or {}).get("config", {}))
    if cfg:
        cfg.setdefault("finetune_init", LEGACY_FINETUNE_INIT)
        cfg.setdefault("objective", LEGACY_OBJECTIVE)
        cfg.setdefault("stem_search", LEGACY_STEM_SEARCH)
        cfg.setdefault("max_rejections", LEGACY_MAX_REJECTIONS)
        cfg.setdefault("finetune_winner", LEGACY_FINETUNE_WINNER)
    return cfg
