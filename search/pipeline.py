"""The main job as a library call: ``run_search(config) -> SearchResult``.

Five stages, each a function over the run's shared state (anchors: NNI's
``RetiariiExperiment(model, evaluator, strategy).run()``, Optuna's
``create_study().optimize()``):

1. :func:`prepare`: space, data, device, latency predictor, the budget's floor check, run folder;
2. :func:`supernet_stage`: train the supernet, or reuse the cached one of the same identity;
3. :func:`search_stage`: the backend searches with the objective -> ``list[TrialRecord]``;
4. :func:`select`: the best candidates measured end to end, interleaved; the best preset in
   budget (the baseline); the multi-fidelity final pick (successive halving over a few epochs
   from scratch, or fine-tunes, within each stem) and, with ``finetune_winner``, the winner's fine-tune;
5. :func:`publish`: export, every shipped artefact re-measured, ``trials.csv``, ``pareto.png``,
   ``result.json``, ``report.md``, the ``latest`` link.

``search.run.main`` parses flags and makes one call; benchmarks call :func:`run_search` and
read the typed :class:`SearchResult` (or :meth:`SearchResult.load` a finished run folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas_common import cache_root
from search.config import SearchConfig, run_settings
from search.records import TrialRecord, read_trials_csv, write_trials_csv

__all__ = ["run_search", "SearchResult", "SearchInterrupted", "prepare", "supernet_stage", "search_stage", "select",
           "publish", "supernet_key", "by_score", "SHIPPED_BY_RUNTIME", "NOISY_REL_IQR"]

log = logging.getLogger("search.run")

# the artefact the budget is re-checked on after export; model.pt runs with the search's runtime
SHIPPED_BY_RUNTIME = {"eager": "model", "compile": "model", "torchscript": "model", "onnxruntime": "onnx"}
NOISY_REL_IQR = 0.10  # a latency whose IQR exceeds this share of its median is flagged unreliable


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: finished trials are kept in ``run_dir``; ``run_search(config, resume=run_dir)``
    (``python -m search.run --resume RUN_DIR``) continues it."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = Path(run_dir)


@dataclass(frozen=True)
class SearchResult:
    """What a run found and wrote (the contents of its folder, typed).

    ``winner``: the exported network (``arch``, ``acc`` inherited top-1 %; when the final pick
    trained: ``acc_finetuned`` % after its fine-tune from inherited weights (``finetune_init=
    "inherited"``, or ``finetune_winner``), ``acc_scratch`` % after its from-scratch training
    (``finetune_init="scratch"``), and ``weights``, the ones that
    ship: the most accurate of ``fine-tuned``, ``scratch`` and (from scratch) ``inherited``;
    ``latency`` = the final interleaved measurement in ms with its
    conditions, ``shipped`` = each artefact's latency as shipped, params, mflops, mac).
    ``baseline``: the best preset measured under the budget, or None. ``trials``: every trial,
    failed ones with ``state="failed"`` and the suggestions rejection sampling drew again with
    ``rejected=True`` (never scored; :attr:`counted` leaves them out). ``finetune``: the
    successive-halving records.
    """

    run_dir: Path
    config: SearchConfig
    trials: tuple[TrialRecord, ...]
    winner: dict[str, Any]
    baseline: dict[str, Any] | None
    finetune: tuple[dict[str, Any], ...]
    files: dict[str, str]
    timings: dict[str, float]
    supernet: Path

    @property
    def completed(self) -> list[TrialRecord]:
        """Finished trials, rejected ones included."""
        return [r for r in self.trials if r.state == "complete"]

    @property
    def counted(self) -> list[TrialRecord]:
        """Finished trials that count towards ``config.trials`` (rejected suggestions left out)."""
        return [r for r in self.completed if not r.rejected]

    @property
    def failed(self) -> list[TrialRecord]:
        return [r for r in self.trials if r.state == "failed"]

    @classmethod
    def load(cls, run_dir: str | Path) -> "SearchResult":
        """The result of a finished run folder (``result.json``, ``trials.csv``, ``run.yaml``).

        Raises:
            ValueError: ``run_dir`` holds no finished run (names the missing file).
        """
        run_dir = Path(run_dir)
        for f in ("result.json", "trials.csv", "run.yaml"):
            if not (run_dir / f).is_file():
                raise ValueError(f"{run_dir}: no finished ShuffleNAS run here (missing {f})")
        res = json.loads((run_dir / "result.json").read_text())
        cfg = SearchConfig.from_dict(run_settings(yaml.safe_load((run_dir / "run.yaml").read_text())))
        supernet = res.get("supernet")
        if supernet is None:  # runs before result.json recorded it: model.pt's metadata has it
            import torch

            supernet = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["meta"]["supernet"]
        return cls(run_dir=run_dir, config=cfg, trials=tuple(read_trials_csv(run_dir / "trials.csv")),
                   winner=res["winner"], baseline=res["baseline"], finetune=tuple(res.get("finetune") or ()),
                   files=res.get("files", {}), timings=res["timings"], supernet=Path(supernet))


@dataclass
class _Run:
    """State the stages share: what :func:`prepare` resolved, and the timings so far."""

    config: SearchConfig
    space: Any
    data: Any
    task: Any  # search_space.Task: the data's classes and image side, both stem variants
    conditions: Any  # search.latency.Conditions: what every latency of the run is measured under
    predictor: Any
    recipe: Any
    sn_key: str
    run_dir: Path
    fastest_ms: float
    meta: dict[str, Any]
    progress: bool
    resume: bool
    t_start: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def device(self):
        return self.conditions.torch_device

    @property
    def floor_ms(self) -> float:
        return float(self.config.min_latency_frac) * self.config.latency_ms


def run_search(config: SearchConfig, *, resume: str | Path | None = None, progress: bool = False) -> SearchResult:
    """Search ``config``'s space for the most accurate network under its latency budget and export it.

    ``resume``: a run folder to continue (finished trials are kept; build ``config`` with
    ``SearchConfig.resolve(resume=...)`` to keep its settings). ``progress``: tqdm bars.

    Raises:
        ValueError: bad settings or data, a budget below the space's fastest network, a resume
            with another supernet, every trial failed, or no candidate measured under the budget.
        SearchInterrupted: Ctrl-C after the run folder exists (its ``run_dir`` can be resumed).
    """
    run = prepare(config, resume=resume, progress=progress)
    try:
        supernet, ckpt = supernet_stage(run)
        records = search_stage(run, supernet)
        picked = select(run, supernet, records)
        return publish(run, supernet, ckpt, records, picked)
    except KeyboardInterrupt as e:
        if isinstance(e, SearchInterrupted):
            raise
        raise SearchInterrupted(run.run_dir) from e


def supernet_key(space, data, recipe, device, sandwich: int = 0) -> str:
    """Identity of the supernet a run searches with: space, data and split, recipe, device kind,
    the stem variants it trains (both: the stem is searched), the sandwich rule (a key without
    it, as before the setting existed, when off) and the optimizer update
    (``supernet.train.resolve_update``; absent when ``full``, the update before the setting)."""
    from supernet.train import resolve_update

    update = resolve_update(None, sandwich, device)
    return hashlib.sha1(json.dumps({"space": space.to_dict(), "data": data.spec, "size": data.image_size,
                                    "recipe": asdict(recipe), "device": device.type, "small_input": "searched",
                                    "v1_sharing": "labels", "sampler": "fair",
                                    **({"update": update} if update != "full" else {}),
                                    "split": [int(data.train_y.numel()), int(data.val_y.numel())],
                                    **({"sandwich": sandwich} if sandwich else {})},
                                   sort_keys=True).encode()).hexdigest()[:16]


def _check_cluster(config: SearchConfig, device) -> None:
    if (config.backend == "ray" or config.train_workers > 1) and config.address and config.address != "auto":
        from nas_training.cluster import check_reachable

        check_reachable(config.address)  # before any training: fail in seconds, not after minutes
    from nas_training.cluster import check_workers

    check_workers(config.train_workers, address=config.address, use_gpu=device.type == "cuda")


def prepare(config: SearchConfig, *, resume: str | Path | None = None, progress: bool = False) -> _Run:
    """Stage 1: device, cluster checks, space, data, the latency predictor, the budget's floor check
    and the run folder (with its ``run.yaml``). Raises ``ValueError`` before writing anything."""
    import torch

    from nas_common import resolve_device
    from nas_data import load_data
    from nas_training.engine import Recipe
    from search.latency import Conditions, LatencyPredictor
    from search_space import SearchSpace

    t_start = time.perf_counter()
    if resume is not None:
        config.check_resume(resume)  # also for library callers that did not build it with resolve()
    device = resolve_device(config.device)
    _check_cluster(config, device)
    space = SearchSpace.load(config.space)
    data = load_data(config.data, image_size=config.input_size, val_fraction=config.val_fraction)
    if data.image_size != config.input_size:
        raise ValueError(f"input_size: {config.data} images are {data.image_size}px; use --input-size {data.image_size}")
    recipe = Recipe(epochs=config.epochs, seed=config.seed)
    sn_key = supernet_key(space, data, recipe, device, config.sandwich)
    if resume is not None:  # trials scored by two different supernets must not mix
        before = (yaml.safe_load((Path(resume) / "run.yaml").read_text()) or {}).get("supernet_key")
        if before != sn_key:
            raise ValueError(
                f"resume: {resume} was searched with another supernet ({before or 'an older ShuffleNAS'}; "
                f"now {sn_key}: space, data, split, recipe, stem variants, sandwich rule or the supernet's "
                f"optimizer update differ); start a new run")
    t = time.perf_counter()
    task = data.task(small_input=None)  # the stem is searched
    conditions = Conditions(task.input_shape(), device=device, runtime=config.runtime, threads=config.threads)
    predictor = LatencyPredictor.build(space, conditions, task, calib_archs=config.calib_archs, progress=progress)
    timings = {"latency predictor": time.perf_counter() - t}
    fastest_ms = _check_budget_floor(config, space, predictor, conditions)
    if resume is not None:
        run_dir = Path(resume)
    else:
        run_dir = Path(config.out) / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.latency_ms:g}ms"
        run_dir.mkdir(parents=True, exist_ok=False)
    meta = {"config": config.to_dict(), "recipe": asdict(recipe), "space": space.to_dict(), "data": data.describe(),
            "torch": str(torch.__version__), "supernet_key": sn_key}
    (run_dir / "run.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return _Run(config=config, space=space, data=data, task=task, conditions=conditions, predictor=predictor, recipe=recipe,
                sn_key=sn_key, run_dir=run_dir, fastest_ms=fastest_ms, meta=meta, progress=progress,
                resume=resume is not None, t_start=t_start, timings=timings)


def _check_budget_floor(config: SearchConfig, space, predictor, conditions) -> float:
    """The fastest predicted network's latency (ms); near or below it, one measurement decides
    whether the budget is reachable at all (``ValueError`` naming the network and its figure)."""
    from search.latency import measure
    from supernet import ShuffleNet

    fastest, fastest_ms = predictor.fastest(space)
    budget, size = config.latency_ms, config.input_size
    if fastest_ms <= 0 or budget < fastest_ms * 1.5:  # near or below the floor: measure, the prediction only guides
        m = measure(ShuffleNet(fastest), conditions, samples=100, warmup_s=0.2)
        if budget < m.median_ms:
            raise ValueError(
                f"latency budget {budget:g} ms is below the fastest architecture of space '{space.name}' on "
                f"{predictor.key['device_name']} ({config.runtime}, {size}x{size}, {predictor.key['threads']} "
                f"thread(s)): {m.median_ms:.2f} ms measured ({fastest_ms:.2f} ms predicted) for {fastest}")
    return fastest_ms


def supernet_stage(run: _Run):
    """Stage 2: the supernet (eval mode) and its checkpoint path: the cached one trained with the
    same space, data, recipe, seed and sandwich rule (:func:`supernet_key`), else trained now
    (both stem variants: the stem is searched; N Ray Train workers train what 1 does, so they
    share the cache key)."""
    from supernet.train import load_supernet, train_supernet

    t = time.perf_counter()
    ckpt = cache_root("supernets") / run.sn_key / "supernet.pt"
    net = None
    if ckpt.is_file():
        try:
            net, state = load_supernet(ckpt, device=run.device)
            if state["epoch"] < run.recipe.epochs:
                net = None
            else:
                log.info("supernet: reusing %s (%d epochs)", ckpt, state["epoch"])
        except ValueError as e:
            log.warning("supernet cache %s unusable (%s); training again", ckpt, e)
            ckpt.unlink()
            net = None
    reused = net is not None
    if net is None:
        net, _ = train_supernet(run.space, run.data, run.recipe, checkpoint=ckpt, resume=True, device=run.device,
                                progress=run.progress, small_input=None, workers=run.config.train_workers,
                                address=run.config.address, sandwich=run.config.sandwich)
    net.eval()
    run.timings["supernet" + (" (cached)" if reused else " training")] = time.perf_counter() - t
    return net, ckpt


def _seeds(run: _Run, margin: float):
    """The presets (both stems where the space has them) predicted within the budget: seed trials."""
    from search_space import get_preset, list_presets

    seeds = [(n + (":small" if small else ""), get_preset(n, run.task.num_classes, small_input=small))
             for small in run.task.stem_variants(run.space.small_input) for n in list_presets()]
    return [(n, a) for n, a in seeds
            if run.space.contains(a) and run.predictor.predict(a) <= run.config.latency_ms * (1 + margin)]


def stem_strata(run: _Run, margin: float = 0.0) -> list[tuple[Any, int, Path]]:
    """How the search covers the stem variants: ``[(task, trials, folder)]``, one search each.

    ``stem_search="joint"`` (or a space with one stem variant): one search of ``run.task``
    (the variant a parameter of the study) with every trial, in the run folder.
    ``"stratified"``: one search per stem variant whose fastest network (by the predictor)
    fits the budget (+ ``margin``, the scorer's feasibility margin), each with that variant
    fixed, in ``search-<imagenet|small>/`` of the run folder, the trials split evenly (the
    first variant, ImageNet, takes the remainder; the variants searched are kept in
    ``stem_strata.json`` so a resumed run searches the same ones), every study under the run's seed (so their
    random startup trials draw the same blocks and widths in both stems). Why: the one-shot score does not compare
    networks across stems (it scores the small-input stem's networks mid-pack while they
    retrain among the best, README "Which supernet ranks"), so one study drifts to the stem
    the supernet favours (session 15 at 4.0 ms: 8-9 of 60 trials small-stem, 1-4 of them in
    budget) and the final pick never sees the other; stratified sampling gives each stem its
    share. Measured on three search seeds (sessions 17-18, CIFAR-10 at v1_g8's 4.009 ms,
    ``benchmarks/nas_vs_baseline.py``): the winner retrained above joint's on all three (58.25 /
    56.05 / 53.63% against 55.53 / 55.69 / 53.53%); session 22, seed 0 on one supernet with the
    6-candidate final pick: 54.84% against 52.05%. The default since session 22: the final pick
    then trains at most half its shortlist with the small stem unless the ImageNet stem has too
    few candidates under the budget (about 4x the compute of an
    ImageNet-stem candidate at 32x32), so the main job on digits took 542 s cold, where a joint
    shortlist of six small-stem candidates would have taken about 659 s."""
    cfg = run.config
    stems = sorted(set(run.task.stem_variants(run.space.small_input)))  # False (ImageNet) first
    if cfg.stem_search == "joint" or len(stems) < 2:
        return [(run.task, cfg.trials, run.run_dir)]
    kept = run.run_dir / "stem_strata.json"  # a resumed run keeps its strata, whatever the predictor says now
    if kept.is_file():
        fits = [bool(v) for v in json.loads(kept.read_text())["small_input"]]
    else:
        fits = [v for v in stems
                if run.predictor.fastest(run.space, small_input=v)[1] <= cfg.latency_ms * (1 + margin)]
        fits = fits or stems  # none predicted to fit: the budget floor check measured one that does
        kept.write_text(json.dumps({"small_input": fits}) + "\n")
    out = []
    for v, n in zip(fits, _split_evenly(cfg.trials, len(fits))):
        if n:
            folder = run.run_dir / f"search-{'small' if v else 'imagenet'}"
            folder.mkdir(exist_ok=True)
            out.append((dataclasses.replace(run.task, small_input=v), n, folder))
    return out


def _split_evenly(n: int, k: int) -> list[int]:
    """``n`` split into ``k`` parts that differ by at most one, the first ones larger."""
    share, extra = divmod(n, k)
    return [share + (1 if i < extra else 0) for i in range(k)]


def search_stage(run: _Run, supernet) -> list[TrialRecord]:
    """Stage 3: the backend searches with the shared objective; every trial's record.

    Raises ``ValueError`` when every trial failed."""
    from search.backends import get_backend
    from search.evaluate import Scorer

    cfg = run.config
    objective = Scorer(supernet, run.data, run.predictor, run.conditions, budget_ms=cfg.latency_ms,
                       min_latency_ms=run.floor_ms)
    bar, best = None, [-1.0]
    if run.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.trials, desc="search", unit="trial", dynamic_ncols=True)

    def on_trial(rec: TrialRecord) -> None:
        if rec.feasible:
            best[0] = max(best[0], rec.acc)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best=f"{best[0]:.1f}%", last=f"{rec.acc:.1f}%@{rec.latency_ms:.2f}ms")

    options = ({"concurrency": cfg.concurrency, "address": cfg.address, "verbose": 1 if run.progress else 0}
               if cfg.backend == "ray" else {})
    t = time.perf_counter()
    seeds = _seeds(run, objective.margin)
    records: list[TrialRecord] = []
    for task, n_trials, folder in stem_strata(run, objective.margin):
        own = [(n, a) for n, a in seeds if task.small_input is None or a.small_input is task.small_input]
        got = get_backend(cfg.backend)(objective, run.space, run_dir=folder, n_trials=n_trials, seed=cfg.seed,
                                       task=task, seeds=own, on_trial=on_trial, resume=run.resume,
                                       pareto=cfg.objective == "pareto", reject=objective.reject,
                                       max_rejections=cfg.max_rejections, **options)
        offset = max((r.number for r in records), default=-1) + 1  # one numbering over the strata
        records += [r.replace(number=r.number + offset) for r in got]
    if bar is not None:
        bar.close()
    run.timings["search"] = time.perf_counter() - t
    failed = [r for r in records if r.state == "failed"]
    if failed and len(failed) == sum(not r.rejected for r in records):  # rejected suggestions never ran
        raise ValueError(f"search: every trial failed (first: {failed[0].arch}: {failed[0].error})")
    if failed:  # now, not in the summary: a final pick that fails must not hide them
        print(f"warning: {len(failed)} trial(s) failed and are recorded in trials.csv (state 'failed'); "
              f"first: {failed[0].arch}: {failed[0].error}", file=sys.stderr)
    return records


@dataclass
class _Picked:
    """What :func:`select` decided: the winner, the final pick's records, and every end-to-end
    measurement."""

    winner: TrialRecord
    measured: dict[str, Any]  # arch -> Measurement
    baseline: TrialRecord | None
    finetune: list[dict]
    # the winner's trained weights that may ship: kind ("fine-tuned", "scratch") -> (val top-1 %,
    # ShuffleNet); empty when the one-shot score decided (its inherited weights ship)
    trained: dict[str, tuple[float, Any]]
    ft_config: Any


def _candidates(run: _Run, records: list[TrialRecord]) -> list[TrialRecord]:
    """Evaluated feasible trials, one per arch, best one-shot score first (ties: the faster one)."""
    pool = [r for r in records if r.state == "complete" and r.evaluated and r.feasible]
    if not pool and run.floor_ms > 0:  # nothing between floor and budget: fall back to the budget alone
        log.warning("no trial between %.3g and %.3g ms; picking among all under the budget", run.floor_ms,
                    run.config.latency_ms)
        pool = [r for r in records if r.state == "complete" and r.evaluated and r.latency_ms <= run.config.latency_ms]
    return by_score(pool)


def by_score(records) -> list[TrialRecord]:
    """``records`` one per arch, best one-shot score first (ties: the faster one): the order the
    final pick takes its shortlist in."""
    uniq: dict[str, TrialRecord] = {}
    for r in sorted(records, key=lambda r: (-r.acc, r.latency_ms)):
        uniq.setdefault(r.arch, r)
    return list(uniq.values())


def _shortlist(run: _Run, records: list[TrialRecord], presets: list[TrialRecord], want: int):
    """The final pick's shortlist: the best candidates by one-shot score that measure under the
    budget (:func:`_measure_candidates`). A stratified stem search (:func:`stem_strata`) shares the
    ``want`` places evenly between the stem variants (ImageNet first takes the remainder), the best
    of each by its one-shot score, and a variant with too few under the budget leaves its places to
    the others (with ``want`` < 2, as for ``finetune_top`` 0 or 1, the best by one-shot score
    across the variants, as a joint search). Returns (arch -> Measurement, the shortlist: ``want`` or fewer, variant by variant)."""
    from search_space import Arch

    cands = _candidates(run, records)
    by_stem: dict[bool, list[TrialRecord]] = {}
    for r in cands:
        by_stem.setdefault(Arch.parse(r.arch).small_input, []).append(r)
    if run.config.stem_search != "stratified" or len(by_stem) < 2 or want < 2:
        measured, under = _measure_candidates(run, cands, presets, want)
        return measured, under[:max(want, 1)]
    stems = sorted(by_stem)  # False (ImageNet) first
    places = dict(zip(stems, _split_evenly(want, len(stems))))
    measured: dict[str, Any] = {}
    under = {}
    for k, s in enumerate(stems):
        _, under[s] = _measure_candidates(run, by_stem[s], presets if k == 0 else [], places[s], measured)
    left = sum(max(0, places[s] - len(under[s])) for s in stems)
    for s in stems:  # a variant short of places leaves them to the others
        if left and len(under[s]) >= places[s]:
            _, under[s] = _measure_candidates(run, by_stem[s], [], places[s] + left, measured)
            gained = min(left, len(under[s]) - places[s])
            places[s] += gained
            left -= gained
    return measured, [r for s in stems for r in under[s][:places[s]]]


def _measure_candidates(run: _Run, cands: list[TrialRecord], presets: list[TrialRecord], want: int,
                        measured: dict[str, Any] | None = None):
    """Measure candidates ``top_k`` at a time (the presets with the first chunk), interleaved, until
    ``want`` measure under the budget. ``measured``: earlier measurements (extended in place; those
    archs are not measured again). Returns (arch -> Measurement, those under the budget in order)."""
    from search.latency import measure_many
    from supernet import ShuffleNet

    cfg = run.config
    measured = {} if measured is None else measured
    under: list[TrialRecord] = []
    for start in range(0, len(cands), cfg.top_k):
        chunk = cands[start:start + cfg.top_k]
        todo = [r for r in chunk + (presets if start == 0 else []) if r.arch not in measured]
        todo = list({r.arch: r for r in todo}.values())
        if todo:
            ms = measure_many([ShuffleNet(r.arch) for r in todo], run.conditions, rounds=10, per_round=10,
                              seed=cfg.seed)
            measured.update({r.arch: m for r, m in zip(todo, ms)})
        under += [r for r in chunk if measured[r.arch].median_ms <= cfg.latency_ms]
        if len(under) >= want:
            break
    return measured, under


def select(run: _Run, supernet, records: list[TrialRecord]) -> _Picked:
    """Stage 4: the final pick. The best candidates by one-shot score are measured end to end
    (interleaved, with every evaluated preset); the best preset under the budget is the baseline;
    with ``finetune_top`` > 0 the best ones under the budget train (``finetune_init``: from scratch
    or from their inherited weights, :mod:`search.finetune`) by successive halving (ASHA on Ray)
    within each stem variant, and of the stems' most accurate the one with the best one-shot
    score wins (:func:`_finetune` says why). From scratch with ``finetune_winner``, the winner is
    then also fine-tuned from its inherited weights for ``finetune_epochs`` (checkpointed in
    ``finetune-bn2/``); the most accurate of its trained and inherited weights ships
    (:func:`_export_winner`).

    Raises ``ValueError`` when no candidate measures under the budget."""
    from search.finetune import FinetuneConfig

    cfg = run.config
    t = time.perf_counter()
    ft = FinetuneConfig(top=cfg.finetune_top, epochs=cfg.finetune_epochs, init=cfg.finetune_init)
    presets = [r for r in records if r.state == "complete" and r.source != "sampled" and r.evaluated]
    measured, under = _shortlist(run, records, presets, max(1, ft.top))
    if not under:
        raise ValueError(f"no candidate measured under {cfg.latency_ms:g} ms end to end; try more --trials or a "
                         f"larger budget")
    in_budget = [r for r in presets if measured[r.arch].median_ms <= cfg.latency_ms]
    baseline = max(in_budget, key=lambda r: r.acc) if in_budget else None
    run.timings["final measurement"] = time.perf_counter() - t
    if not ft.top:
        return _Picked(winner=under[0], measured=measured, baseline=baseline, finetune=[], trained={}, ft_config=ft)
    t = time.perf_counter()
    picks = under[:ft.top]
    sh, best, model = _finetune(run, supernet, picks, ft, {r.arch: measured[r.arch].median_ms for r in picks})
    for r, rec in zip(picks, sh):
        rec.update(acc_inherited=r.acc, latency_ms=measured[r.arch].median_ms, init=ft.init)
    run.timings["final pick"] = time.perf_counter() - t
    trained = {"fine-tuned" if ft.init == "inherited" else ft.init: (sh[best]["final"], model)}
    if ft.init != "inherited" and cfg.finetune_winner:
        t = time.perf_counter()
        trained["fine-tuned"] = _finetune_winner(run, supernet, picks[best], ft)
        run.timings["winner fine-tune"] = time.perf_counter() - t
    return _Picked(winner=picks[best], measured=measured, baseline=baseline, finetune=sh, trained=trained,
                   ft_config=ft)


def _finetune_winner(run: _Run, supernet, winner: TrialRecord, ft) -> tuple[float, Any]:
    """The winner of a from-scratch pick fine-tuned from its inherited weights for ``ft.epochs``
    (the fine-tune of :func:`search.finetune.finetune_step`, in ``finetune-bn2/``, so it resumes):
    (val top-1 %, model)."""
    from search.finetune import FinetuneConfig, checkpoint_folder, finetune_step
    from search_space import Arch

    cfg = FinetuneConfig(top=1, epochs=ft.epochs, init="inherited")
    step, models = finetune_step(supernet, [Arch.parse(winner.arch)], run.data, cfg, device=run.device,
                                 seed=run.config.seed, ckpt_dir=run.run_dir / checkpoint_folder(cfg),
                                 supernet_id=run.sn_key)
    acc = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        acc = step(0, epoch)
    return acc, models[0]


def _finetune(run: _Run, supernet, picks: list[TrialRecord], ft, latency_ms: dict[str, float] | None = None):
    """The multi-fidelity final pick, within each stem variant, then across them.

    Successive halving over short trainings (fine-tunes or from scratch, ``ft.init``) runs
    separately for the candidates of each stem (synchronous in process; ASHA on Ray), and
    each stem's most accurate candidate is a finalist; the finalist with the best one-shot score
    ships (ties: the faster by ``latency_ms``, the final pick's end-to-end measurement; default
    the trials' latency). Why (``benchmarks/supernet_ranking.py`` against the committed truth,
    README "Which supernet ranks"): a short fine-tune (tau 0.38-0.48 over the ImageNet-stem
    truth) or 2 epochs from scratch (0.70-0.72) rank networks well within a stem, but both put
    the small-stem networks, three of the four best retrained, below the best ImageNet-stem ones
    (they learn slower in the first epochs), while the one-shot score places them mid-pack.
    A complete 6-epoch schedule from scratch (the default candidates' training) ranks the
    24-network truth at tau 0.737 (0.807 within the ImageNet stem) yet still puts three of the
    four small-stem networks 7th-11th. Which score should choose between stems is not settled:
    on shortlists drawn uniformly from that truth this rule leaves 0.59 / 0.94 points of regret
    (4 / 8 candidates) against 1.67 / 2.63 for the 6-epoch score, on the shortlists the search
    would build 0.87 / 2.94 against 0.05 / 1.68
    (``benchmarks/results/supernet_ranking_pick_k{4,8}_complete6.json``), and in one stratified
    ``nas_vs_baseline.py`` run it chose the worse finalist (README "Session 17").
    ``--pick`` there replays this rule on random shortlists of the truth; ``benchmarks/final_pick.py``
    replays the whole pick on the retrained shortlists of ``benchmarks/nas_vs_baseline.py``.

    Returns (records in ``picks`` order, each with its ``stem``; the winner's index in ``picks``;
    its trained model)."""
    from search_space import Arch

    groups: dict[bool, list[int]] = {}
    for k, r in enumerate(picks):
        groups.setdefault(Arch.parse(r.arch).small_input, []).append(k)
    sh: list[dict] = [{} for _ in picks]
    finalists = []
    for small, idx in groups.items():
        recs, best, model = _halving(run, supernet, [picks[k] for k in idx], ft)
        for k, rec in zip(idx, recs):
            sh[k] = dict(rec, stem="small" if small else "imagenet", finalist=k == idx[best])
        finalists.append((idx[best], model))
    lat = latency_ms or {r.arch: r.latency_ms for r in picks}
    k, model = max(finalists, key=lambda f: (picks[f[0]].acc, -lat[picks[f[0]].arch]))
    return sh, k, model


def _halving(run: _Run, supernet, picks: list[TrialRecord], ft):
    """Successive halving over short trainings of ``picks`` (synchronous in process; ASHA on
    Ray). Returns (records in ``picks`` order, the winner's index, its trained model)."""
    from search.finetune import checkpoint_folder, finetune_step, successive_halving, winner_index
    from search_space import Arch

    cfg = run.config
    archs = [Arch.parse(r.arch) for r in picks]
    ckpt_dir = run.run_dir / checkpoint_folder(ft)
    step, models = finetune_step(supernet, archs, run.data, ft, device=run.device, seed=cfg.seed,
                                 ckpt_dir=ckpt_dir, supernet_id=run.sn_key)
    if cfg.backend == "ray":  # ASHA in Ray Tune: the candidates fine-tune in parallel trials
        from search.backends.ray import finetune_asha

        sh = finetune_asha(supernet, archs, run.data, ft, device=run.device, seed=cfg.seed,
                           ckpt_dir=ckpt_dir, supernet_id=run.sn_key, run_dir=run.run_dir,
                           address=cfg.address, concurrency=cfg.concurrency, verbose=1 if run.progress else 0)
    else:
        bar = None
        if run.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=ft.planned_epochs(len(picks)), desc=f"final pick, {ft.init} (successive halving)", unit="epoch",
                       dynamic_ncols=True)

        def on_epoch(k: int, epoch: int, acc: float) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(cand=k, acc=f"{acc:.1f}%")

        sh = successive_halving(archs, step, ft, on_epoch=on_epoch)
        if bar is not None:
            bar.close()
    best = winner_index(sh)
    step(best, ft.epochs)  # the winner's trained weights (a resumed pick loads its checkpoint)
    return sh, best, models[best]


def _measure_shipped(run: _Run, files: dict[str, str]) -> dict[str, Any]:
    """Every exported artefact loaded back and timed interleaved (issue 11); the one the budget is
    checked on is measured again once when its IQR is over :data:`NOISY_REL_IQR` of its median."""
    from search.export import load_artefact, measure_artefacts
    from search.latency import measure

    cfg = run.config
    primary = SHIPPED_BY_RUNTIME[cfg.runtime]
    try:
        shipped = measure_artefacts(run.run_dir, files, run.conditions, seed=cfg.seed,
                                    model_runtime="eager" if primary == "onnx" else cfg.runtime)
    except Exception as e:  # noqa: BLE001 - the run's results are written even if a shipped artefact cannot run
        log.warning("the shipped artefacts could not be measured: %s", e)
        print(f"warning: the shipped artefacts could not be measured after export ({str(e).splitlines()[0]})")
        return {}
    if primary in shipped and shipped[primary].rel_iqr > NOISY_REL_IQR:  # one re-measurement, then a flag
        again = measure(load_artefact(run.run_dir, primary) if primary != "onnx" else run.run_dir / files[primary],
                        shipped[primary].conditions, max_rel_iqr=NOISY_REL_IQR)
        if again.rel_iqr < shipped[primary].rel_iqr:
            shipped[primary] = again
    return {k: {"file": files[k], "median_ms": m.median_ms, "iqr_ms": m.iqr_ms, "runtime": m.env["runtime"],
                "memory_format": m.env["memory_format"], "threads": m.env["threads"], "batch": m.env["batch"],
                "noisy": m.rel_iqr > NOISY_REL_IQR, "primary": k == primary} for k, m in shipped.items()}


SHIP_ORDER = ("fine-tuned", "scratch", "inherited")  # the weights that ship on a tie of top-1


def _ship_choice(accs: dict[str, float]) -> str:
    """The weights to ship: the kind (of :data:`SHIP_ORDER`) with the highest validation top-1 (%),
    ties going to the earlier kind. Raises ``ValueError`` on an empty or unknown kind."""
    unknown = sorted(set(accs) - set(SHIP_ORDER))
    if not accs or unknown:
        raise ValueError(f"weights: nothing to ship or unknown kind(s) {unknown}; known: {list(SHIP_ORDER)}")
    return max((k for k in SHIP_ORDER if k in accs), key=lambda k: (accs[k], -SHIP_ORDER.index(k)))


def _export_winner(run: _Run, supernet, ckpt: Path, picked: _Picked):
    """The winner's record for ``result.json`` and the exported files (name -> file)."""
    from search.evaluate import EvalConfig, evaluate_arch
    from search.export import export_model
    from search_space import Arch, count_flops, count_mac, count_params

    size = run.config.input_size
    arch = Arch.parse(picked.winner.arch)
    acc, inherited = evaluate_arch(supernet, arch, run.data, EvalConfig(), device=run.device)
    lat = picked.measured[picked.winner.arch]
    winner = dict(picked.winner.replace(acc=acc, measured_ms=lat.median_ms).to_dict(),
                  latency=lat.to_dict(samples=False), mac=count_mac(arch, size))
    ft, model = {}, inherited
    if picked.trained:
        # the most accurate on the validation split ships: the fine-tuned weights, else the
        # from-scratch ones, else (from scratch only) the inherited ones; ties in that order
        options = dict(picked.trained)
        if picked.ft_config.init != "inherited":
            options["inherited"] = (acc, inherited)
        weights = _ship_choice({k: v[0] for k, v in options.items()})
        model = options[weights][1]
        winner.update({f"acc_{k.replace('-', '')}": v[0] for k, v in picked.trained.items()}, weights=weights)
        ft = {"finetune": asdict(picked.ft_config), "weights": weights}
        if "acc_finetuned" in winner:
            ft["val_acc_finetuned"] = winner["acc_finetuned"]
        if "scratch" in picked.trained:
            from search.finetune import scratch_recipe

            recipe = asdict(scratch_recipe(picked.ft_config.epochs, run.config.seed))
            ft.update(val_acc_scratch=winner["acc_scratch"], scratch_recipe=recipe)
    meta = {"arch": str(arch), "val_acc_inherited": acc, "latency": lat.to_dict(), "params": count_params(arch), **ft,
            "mflops": count_flops(arch, size) / 1e6, "mac": count_mac(arch, size), "input_size": size,
            "data": run.data.describe(), "supernet": str(ckpt), **run.meta}
    files = export_model(model, run.run_dir, input_size=size,
                         meta=meta, data=run.data)
    return winner, files


def publish(run: _Run, supernet, ckpt: Path, records: list[TrialRecord], picked: _Picked) -> SearchResult:
    """Stage 5: export the winner, measure what ships, write the run folder, point ``latest`` at it."""
    from search.report import plot_pareto, write_report

    cfg = run.config
    winner, files = _export_winner(run, supernet, ckpt, picked)
    t = time.perf_counter()
    winner["shipped"] = _measure_shipped(run, files)
    run.timings["shipped artefacts"] = time.perf_counter() - t
    baseline = None
    if picked.baseline is not None:
        bl = picked.measured[picked.baseline.arch]
        baseline = dict(picked.baseline.replace(measured_ms=bl.median_ms).to_dict(), latency=bl.to_dict(samples=False))
    records = [r.replace(measured_ms=picked.measured[r.arch].median_ms) if r.arch in picked.measured else r
               for r in records]
    write_trials_csv(records, run.run_dir / "trials.csv")
    plot_pareto([r for r in records if r.state == "complete"], run.run_dir / "pareto.png", budget_ms=cfg.latency_ms,
                winner=winner, floor_ms=run.floor_ms,
                title=f"{cfg.data} | {run.predictor.key['device_name']} | {cfg.runtime} | {cfg.input_size}x{cfg.input_size}")
    run.timings["total"] = time.perf_counter() - run.t_start
    n_done = sum(r.state == "complete" and not r.rejected for r in records)
    n_rejected = sum(r.rejected for r in records)
    (run.run_dir / "result.json").write_text(json.dumps(
        {"winner": winner, "baseline": baseline, "timings": run.timings, "n_trials": n_done, "n_rejected": n_rejected,
         "n_failed": sum(r.state == "failed" for r in records), "fastest_predicted_ms": run.fastest_ms,
         "finetune": picked.finetune,
         "files": files, "supernet": str(ckpt)}, indent=1, default=str))
    from supernet.train import resolve_update

    write_report(run.run_dir / "report.md", config=cfg.to_dict(), winner=winner, baseline=baseline, n_trials=n_done,
                 n_rejected=n_rejected, update=resolve_update(None, cfg.sandwich, run.device),
                 timings=run.timings, files=files, finetune=picked.finetune)
    latest = Path(cfg.out) / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run.run_dir.resolve(), target_is_directory=True)
    return SearchResult(run_dir=run.run_dir, config=cfg, trials=tuple(records), winner=winner, baseline=baseline,
                        finetune=tuple(picked.finetune), files=files, timings=dict(run.timings), supernet=ckpt)
