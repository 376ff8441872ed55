"""Does the search beat random sampling at its own objective? Two-objective TPE, one-objective
TPE and uniform random draws, each given the same number of trials on one supernet and budget.

Every arm scores architectures with the main job's objective (:class:`search.evaluate.Scorer`:
inherited weights, recalibrated BN, the validation split; the latency predictor, and a
measurement near the budget, decide feasibility). The TPE arms are the Optuna backend itself
(:func:`search.backends.optuna.run`, the presets in budget enqueued first, with the main job's rejection sampling)
with ``pareto`` on and off, each one study over both stems (the main job's ``stem_search: joint``; since
session 22 the main job searches each stem variant on its own by default); the random arm draws from the space uniformly (both stems; a draw predicted over the budget is
drawn again, as the TPE arms' suggestions are, up to ``max_rejections`` in a row), the
random-search control of Li and Talwalkar (UAI 2019). Each arm gets its own scorer, so its
seconds include every evaluation it asked for. The figure of merit is the one-shot top-1 of the
best feasible networks: the best one and the mean of the ``--top`` best (the final pick's
shortlist). It says how well the search optimises the score it is given, not whether the score
ranks (``supernet_ranking.py``) or the winner retrains well (``nas_vs_baseline.py``).

The supernet and the data are the main job's: the same flags as ``nas_vs_baseline.py`` reuse
its cached supernet (trained here otherwise)::

    python benchmarks/search_objective.py --per-class 1000 --val-fraction 0.52 --supernet-epochs 20 \\
        --latency-ms 5 --trials 60 --seeds 0 1 --out benchmarks/results/search_objective_5ms_s14.json
    python benchmarks/search_objective.py --data digits --val-fraction 0.1 --supernet-epochs 25 --trials 40  # the main job's
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARMS = ("pareto", "accuracy", "random")


def summarize(records: Sequence[Any], top: int) -> dict[str, Any]:
    """The one-shot figures of one arm's trial records (``search.records.TrialRecord``).

    ``feasible``: distinct evaluated architectures within the budget; ``best`` and ``top_mean``:
    top-1 % of the best one and mean of the ``top`` best of them (None when there are none);
    ``top_latency_ms`` and ``top_small_stem``: their latencies (ms) and how many use the small
    stem; ``median_latency_ms``: over all trials that count (scored or not), feasible or not;
    ``rejected``: the draws rejection sampling drew again (predicted over the budget)."""
    from search.pipeline import by_score
    from search_space import Arch

    rejected = sum(r.rejected for r in records)
    records = [r for r in records if not r.rejected]
    ranked = by_score([r for r in records if r.evaluated and r.feasible])  # the final pick's order
    best = ranked[:top]
    return {"trials": len(records), "rejected": rejected, "feasible": len(ranked), "best": best[0].acc if best else None,
            "top_mean": statistics.fmean(r.acc for r in best) if best else None,
            "top_latency_ms": [round(r.latency_ms, 3) for r in best],
            "top_small_stem": sum(Arch.parse(r.arch).small_input for r in best),
            "median_latency_ms": statistics.median(r.latency_ms for r in records) if records else None}


def _arm(kind: str, seed: int, run, supernet, n_trials: int) -> list:
    import numpy as np

    from search.backends.optuna import run as optuna_run
    from search.evaluate import Scorer
    from search.pipeline import _seeds

    scorer = Scorer(supernet, run.data, run.predictor, run.conditions, budget_ms=run.config.latency_ms)
    cap = run.config.max_rejections  # rejection sampling as the main job does it (0: every draw counts)
    if kind == "random":
        rng = np.random.default_rng([seed, 99])
        out, in_a_row = [], 0
        while sum(not r.rejected for r in out) < n_trials:
            arch = run.space.sample(rng, num_classes=run.task.num_classes)
            rec = scorer.reject(arch) if in_a_row < cap else None
            out.append(scorer(arch) if rec is None else rec.replace(rejected=True))
            in_a_row = in_a_row + 1 if rec is not None else 0
        return out
    with tempfile.TemporaryDirectory() as d:
        return optuna_run(scorer, run.space, run_dir=Path(d), n_trials=n_trials, seed=seed, task=run.task,
                          seeds=_seeds(run, scorer.margin), pareto=kind == "pareto", reject=scorer.reject,
                          max_rejections=cap)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"),
                    help="ImageFolder root (default ../shared/data/cifar10/train)")
    ap.add_argument("--per-class", type=int, default=1000, help="images per class (0: all)")
    ap.add_argument("--data", default=None, metavar="SPEC",
                    help="search.run's --data instead of --root/--per-class (e.g. digits, the main job's data)")
    ap.add_argument("--val-fraction", type=float, default=0.52)
    ap.add_argument("--supernet-epochs", type=int, default=20)
    ap.add_argument("--latency-ms", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=60, help="trials per arm and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one round of every arm per seed")
    ap.add_argument("--top", type=int, default=8, help="the shortlist whose mean one-shot top-1 is reported")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for latency")
    ap.add_argument("--out", default=None, help="write the figures to this JSON")
    args = ap.parse_args(argv)

    from search.config import SearchConfig
    from search.pipeline import prepare, supernet_stage

    data = args.data or f"imagefolder:{args.root}" + (f"@{args.per_class}" if args.per_class else "")
    with tempfile.TemporaryDirectory() as out:
        config = SearchConfig.resolve({"latency_ms": args.latency_ms, "data": data, "epochs": args.supernet_epochs,
                                       "threads": args.threads, "val_fraction": args.val_fraction, "out": out})
        run = prepare(config)
        supernet, ckpt = supernet_stage(run)
    print(f"supernet {ckpt} ({args.supernet_epochs} epochs); budget {args.latency_ms:g} ms; {args.trials} trials "
          f"per arm; data {run.data.describe()}", flush=True)
    rows = []
    for seed in args.seeds:  # the arms interleaved within each seed: machine drift hits them alike
        for kind in args.arms:
            t = time.perf_counter()
            recs = _arm(kind, seed, run, supernet, args.trials)
            row = {"arm": kind, "seed": seed, **summarize(recs, args.top), "seconds": time.perf_counter() - t}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| arm | seeds | best one-shot top-1 % | mean of the top {args.top} % | feasible | small stem in the top "
          f"{args.top} | s per arm |\n| --- | --- | --- | --- | --- | --- | --- |")
    def fmt(rs: list[dict], key: str, spec: str = ".2f") -> str:
        return " / ".join("-" if r[key] is None else format(r[key], spec) for r in rs)

    for kind in args.arms:
        rs = [r for r in rows if r["arm"] == kind]
        print(f"| {kind} | {' / '.join(str(r['seed']) for r in rs)} | {fmt(rs, 'best')} | {fmt(rs, 'top_mean')} | "
              f"{fmt(rs, 'feasible', 'd')} | {fmt(rs, 'top_small_stem', 'd')} | {fmt(rs, 'seconds', '.0f')} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "supernet": str(ckpt), "data": run.data.describe(),
                                              "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
