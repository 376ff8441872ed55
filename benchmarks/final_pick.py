"""Does the final pick choose the best network of its shortlist? Replayed on retrained shortlists.

``benchmarks/nas_vs_baseline.py`` (without ``--no-retrain-shortlist``) retrains every candidate of
the search's final pick with the benchmark's recipe, so each of its result JSONs holds a shortlist
whose true order is known. This script runs the final pick again on those shortlists, with the
settings given here (``--epochs``, ``--reduction-factor``, ``--init``), through the search's own
code (``search.pipeline``'s per-stem successive halving, ``search.finetune``'s training step), on
the search's own data split and seed, and reports per shortlist:

- the network it picks and that network's retrained top-1 (from the JSON, not retrained here);
- its regret: the shortlist's best retrained top-1 minus the pick's, points;
- the pick's rank in its shortlist by retrained top-1 (1 = best);
- Kendall tau, over the shortlist, between the first rung's top-1 (every candidate has it) and
  the retrained top-1;
- epochs trained and seconds (summed over the invocations that trained it);
- the pick against the run's random-search control (best of its random networks) and against
  the best preset within its budget (points, and the ratio of their latencies measured in the
  benchmark's interleaved session);

beside the same figures for the pick the search made (recorded in the JSON). A mean row ends
the table. Checkpoints are kept in ``--out`` (one folder per shortlist), so an interrupted run
resumes where it stopped and a finished one reprints its table without training.

    python benchmarks/final_pick.py benchmarks/results/nas_vs_baseline_5ms_s15_seed{0,1,2}.json \\
        benchmarks/results/nas_vs_baseline_v1g8_s15_seed{0,1,2}.json --epochs 6 \\
        --out results/final_pick --json benchmarks/results/final_pick_s16_e6.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["load_shortlist", "score_pick", "main"]


def load_shortlist(path: str | Path) -> dict[str, Any]:
    """The final-pick shortlist of a ``nas_vs_baseline.py`` result, with each candidate's retrained top-1.

    Returns ``{"label", "config" (the search's settings), "candidates": [{"arch", "acc" (one-shot
    score, %), "latency_ms" (the final pick's measurement, ms), "bench_ms" (the benchmark's
    interleaved session, ms), "retrained" (%)}] in the search's order (best one-shot score first),
    "picked" (the search's own pick, an arch string), "random_best", "baseline" (the best preset
    within the budget), "baseline_acc", "baseline_ms", "budget_ms"}``.

    Raises:
        ValueError: not a ``nas_vs_baseline.py`` result with a final pick, or a shortlist whose
            candidates were not all retrained (re-run it without ``--no-retrain-shortlist``).
    """
    p = Path(path)
    d = json.loads(p.read_text())
    ft = (d.get("search") or {}).get("finetune") or []
    if not ft or "rows" not in d:
        raise ValueError(f"{p}: not a nas_vs_baseline.py result with a final pick (no search.finetune records)")
    retrained = {r["arch"]: r["retrained"] for r in d["rows"] if r.get("retrained") is not None}
    bench_ms = {r["arch"]: r.get("latency_ms") for r in d["rows"]}
    missing = [c["arch"] for c in ft if c["arch"] not in retrained]
    if missing:
        raise ValueError(f"{p}: {len(missing)} of the {len(ft)} shortlisted candidates were not retrained; run "
                         f"nas_vs_baseline.py again without --no-retrain-shortlist")
    picked = next((r["arch"] for r in d["rows"] if r["role"] == "searched"), None)
    if picked not in {c["arch"] for c in ft}:
        raise ValueError(f"{p}: the searched network is not in its final pick's shortlist")
    s = d["summary"]
    base = next((r for r in d["rows"] if r["name"] == s.get("baseline")), None)
    return {"label": p.stem, "config": d["search"]["config"],
            "candidates": [{"arch": c["arch"], "acc": c["acc_inherited"], "latency_ms": c["latency_ms"],
                            "bench_ms": bench_ms.get(c["arch"]), "retrained": retrained[c["arch"]]} for c in ft],
            "picked": picked,
            "random_best": s.get("random_best"), "baseline": s.get("baseline"),
            "baseline_acc": None if base is None else base["retrained"],
            "baseline_ms": None if base is None else base.get("latency_ms"),
            "budget_ms": (d.get("budget") or {}).get("budget_ms", d["search"]["config"]["latency_ms"])}


def score_pick(shortlist: dict[str, Any], picked: str, first_rung: Sequence[float] | None = None) -> dict[str, Any]:
    """How good ``picked`` is within ``shortlist`` (from :func:`load_shortlist`).

    Returns ``retrained`` (%), ``best`` (the shortlist's best retrained, %), ``regret_pts``,
    ``rank`` (1 = best by retrained top-1; ties share the better rank), ``vs_random_best_pts``,
    ``vs_baseline_pts``, ``latency_ms`` (the benchmark's session), ``vs_baseline_latency`` (its
    ratio to the best preset's; None where the run has none), ``over_budget`` (that session
    measured it over the budget; the search's own measurement had it within) and, given
    ``first_rung`` (one score per candidate, in order), ``tau_first_rung``: Kendall tau against
    the retrained top-1 (None when undefined).

    Raises:
        ValueError: ``picked`` is not in the shortlist.
    """
    import math

    from scipy.stats import kendalltau

    ret = [c["retrained"] for c in shortlist["candidates"]]
    c = next((c for c in shortlist["candidates"] if c["arch"] == picked), None)
    if c is None:
        raise ValueError(f"score_pick: {picked} is not in the shortlist {shortlist['label']}")
    acc, ms, base_ms = c["retrained"], c.get("bench_ms"), shortlist.get("baseline_ms")
    out = {"retrained": acc, "best": max(ret), "regret_pts": max(ret) - acc, "rank": 1 + sum(r > acc for r in ret),
           "vs_random_best_pts": None if shortlist["random_best"] is None else acc - shortlist["random_best"],
           "vs_baseline_pts": None if shortlist["baseline_acc"] is None else acc - shortlist["baseline_acc"],
           "latency_ms": ms, "vs_baseline_latency": None if ms is None or not base_ms else ms / base_ms,
           "over_budget": ms is not None and ms > shortlist["budget_ms"]}
    if first_rung is not None:
        tau = float(kendalltau(first_rung, ret)[0])
        out["tau_first_rung"] = None if math.isnan(tau) else tau  # constant scores: undefined
    return out


def _replay(shortlist: dict[str, Any], ft, out: Path, progress: bool) -> dict[str, Any]:
    """The final pick of ``search.pipeline`` on ``shortlist`` under ``ft``; its records and score."""
    from nas_data import load_data
    from search import pipeline
    from search.config import SearchConfig
    from search.records import TrialRecord

    cfg = SearchConfig.from_dict({**shortlist["config"], "finetune_top": ft.top, "finetune_epochs": ft.epochs,
                                  "finetune_init": ft.init, "out": str(out), "backend": "optuna"})  # in process
    data = load_data(cfg.data, image_size=cfg.input_size, val_fraction=cfg.val_fraction)
    run = SimpleNamespace(config=cfg, data=data, device="cpu", run_dir=out, sn_key="none", progress=progress)
    picks = [TrialRecord(number=i, arch=c["arch"], acc=c["acc"], measured_ms=c["latency_ms"], evaluated=True,
                         feasible=True) for i, c in enumerate(shortlist["candidates"])]
    spent = out / "seconds.json"  # over every invocation: a resumed or reprinted pick keeps its training time
    seconds = json.loads(spent.read_text())["seconds"] if spent.is_file() else 0.0
    t0 = time.perf_counter()
    try:
        sh, k, _ = pipeline._finetune(run, None, picks, ft, {c["arch"]: c["latency_ms"] for c in shortlist["candidates"]})
    finally:  # an interrupted pick keeps the time it trained
        seconds += time.perf_counter() - t0
        spent.write_text(json.dumps({"seconds": seconds}))
    r0 = ft.first_rung
    first = [r["finetune_acc"][r0 - 1] for r in sh]
    return {"records": sh, "picked": picks[k].arch, "epochs_trained": sum(r["epochs"] for r in sh),
            "seconds": seconds, **score_pick(shortlist, picks[k].arch, first)}


def _fmt(v: float | None, spec: str = "+.2f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="nas_vs_baseline.py result JSONs with retrained shortlists")
    ap.add_argument("--epochs", type=int, default=6, help="each candidate's schedule (--finetune-epochs; default 6)")
    ap.add_argument("--reduction-factor", type=int, default=2,
                    help="eta of successive halving (default 2, the search's, which has no flag for it)")
    ap.add_argument("--init", default="scratch", choices=("scratch",),
                    help="what candidates start from (scratch: inherited weights need the run's supernet)")
    ap.add_argument("--out", default="results/final_pick", help="checkpoints, one folder per shortlist")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    from search.finetune import FinetuneConfig

    try:
        shortlists = [load_shortlist(p) for p in args.results]
        ft = FinetuneConfig(top=max(len(s["candidates"]) for s in shortlists), epochs=args.epochs,
                            reduction_factor=args.reduction_factor, init=args.init)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"final pick replayed: {args.init}, {ft.epochs}-epoch schedule, rungs {list(ft.rungs)}, eta "
          f"{ft.reduction_factor}; {len(shortlists)} shortlists", flush=True)
    rows = []
    for s in shortlists:
        out = Path(args.out) / f"{s['label']}-{args.init}-e{ft.epochs}-eta{ft.reduction_factor}"
        out.mkdir(parents=True, exist_ok=True)
        try:
            new = _replay(s, ft, out, progress=not args.quiet)
        except ValueError as e:  # e.g. a checkpoint of other settings in --out: nothing is lost, say so
            print(f"error: {s['label']}: {e}", file=sys.stderr)
            return 2
        old = score_pick(s, s["picked"])
        rows.append({"label": s["label"], "budget_ms": s["budget_ms"], "n": len(s["candidates"]),
                     "baseline": s["baseline"], "search_pick": old, "replayed": new})
        print(f"  {s['label']}: picks {new['retrained']:.2f}%{' (over budget in the benchmark)' if new['over_budget'] else ''} (rank {new['rank']}/{len(s['candidates'])}, regret "
              f"{new['regret_pts']:.2f}) in {new['epochs_trained']} epochs, {new['seconds']:.0f} s; the search "
              f"picked {old['retrained']:.2f}% (rank {old['rank']}, regret {old['regret_pts']:.2f})", flush=True)
    head = ("| shortlist | n | best retrained | search's pick: top-1 / rank / regret | replayed pick: top-1 / rank / "
            "regret | tau, first rung | vs best random: search / replayed | vs best preset: search / replayed | "
            "epochs | s |")
    print("\n" + head + "\n|" + " --- |" * (head.count("|") - 1))
    for r in rows:
        o, n = r["search_pick"], r["replayed"]
        print(f"| {r['label']} | {r['n']} | {n['best']:.2f}% | {o['retrained']:.2f}% / {o['rank']} / {o['regret_pts']:.2f} "
              f"| {n['retrained']:.2f}% / {n['rank']} / {n['regret_pts']:.2f} | {_fmt(n['tau_first_rung'], '.3f')} "
              f"| {_fmt(o['vs_random_best_pts'])} / {_fmt(n['vs_random_best_pts'])} "
              f"| {_fmt(o['vs_baseline_pts'])} at {_fmt(o['vs_baseline_latency'], '.2f')}x / {_fmt(n['vs_baseline_pts'])} at {_fmt(n['vs_baseline_latency'], '.2f')}x | {n['epochs_trained']} | {n['seconds']:.0f} |")
    hits = {w: sum(r[w]["vs_random_best_pts"] is not None and r[w]["vs_random_best_pts"] >= 0 for r in rows)
            for w in ("search_pick", "replayed")}
    print(f"\nmean regret: the search's pick {sum(r['search_pick']['regret_pts'] for r in rows) / len(rows):.2f} pts, "
          f"replayed {sum(r['replayed']['regret_pts'] for r in rows) / len(rows):.2f} pts; at or above the best random "
          f"network: {hits['search_pick']} / {hits['replayed']} of {len(rows)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "finetune": {
            "epochs": ft.epochs, "reduction_factor": ft.reduction_factor, "init": ft.init, "rungs": list(ft.rungs),
            "first_rung": ft.first_rung}, "shortlists": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
