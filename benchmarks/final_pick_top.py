"""How many candidates should the final pick train? Replayed on recorded curves, training nothing.

``benchmarks/final_pick.py`` trains a shortlist's candidates through the search's own final pick
and records every candidate's validation top-1 after each epoch it trained. A candidate's curve
does not depend on which others train beside it, so the pick with only the first ``N`` of the
shortlist (by one-shot score, as ``--finetune-top N`` would take them) can be replayed on the
same curves: successive halving within each stem variant (``search.finetune``), each stem's most
accurate a finalist, the finalist with the best one-shot score the pick (``search.pipeline``'s
rule). A replay that needs an epoch the recorded run did not train is reported as such. Each pick is scored by its retrained top-1 (from the ``nas_vs_baseline.py`` result).

    python benchmarks/final_pick_top.py benchmarks/results/final_pick_s16_e6.json --top 8 6 4 \\
        --out benchmarks/results/final_pick_top_s21.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from final_pick import load_shortlist  # noqa: E402

__all__ = ["replay_top"]


class _Unrecorded(Exception):
    """The replay needs an epoch the recorded run did not train."""


def replay_top(candidates: list[dict], curves: dict[str, list[float]], top: int, epochs: int = 6,
               reduction_factor: int = 2) -> dict | None:
    """The final pick over ``candidates[:top]`` (``arch``, ``acc`` one-shot %, ``latency_ms``,
    ``retrained`` %) replayed on ``curves`` (arch -> validation top-1 per epoch trained, %).

    Returns ``{"picked", "retrained", "best" (the first ``top``'s best retrained), "epochs"
    (candidate-epochs the pick trains)}``, or None when it needs an unrecorded epoch.
    """
    from search.finetune import FinetuneConfig, successive_halving, winner_index
    from search_space import Arch

    picks = candidates[:top]
    ft = FinetuneConfig(top=top, epochs=epochs, init="scratch", reduction_factor=reduction_factor)
    groups: dict[bool, list[dict]] = {}
    for c in picks:
        groups.setdefault(Arch.parse(c["arch"]).small_input, []).append(c)
    finalists, spent = [], 0
    for group in groups.values():
        def step(k: int, epoch: int, group=group) -> float:
            curve = curves[group[k]["arch"]]
            if epoch > len(curve):
                raise _Unrecorded
            return curve[epoch - 1]
        try:
            sh = successive_halving([Arch.parse(c["arch"]) for c in group], step, ft)
        except _Unrecorded:
            return None
        spent += sum(r["epochs"] for r in sh)
        finalists.append(group[winner_index(sh)])
    w = max(finalists, key=lambda c: (c["acc"], -c["latency_ms"]))
    return {"picked": w["arch"], "retrained": w["retrained"], "best": max(c["retrained"] for c in picks),
            "epochs": spent}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("replays", nargs="+", help="final_pick.py --json results (their shortlists' curves)")
    ap.add_argument("--top", type=int, nargs="+", default=[8, 6, 4])
    ap.add_argument("--out", default=None, help="write the figures here (JSON)")
    args = ap.parse_args(argv)
    if any(t < 1 for t in args.top):
        ap.error(f"--top: every value must be >= 1, got {args.top}")
    rows, results = [], Path(__file__).resolve().parent / "results"
    for path in args.replays:
        d = json.loads(Path(path).read_text())
        epochs, eta = d["args"]["epochs"], d["args"].get("reduction_factor", 2)
        for s in d["shortlists"]:
            sl = load_shortlist(results / f"{s['label']}.json")
            curves = {r["arch"]: r["finetune_acc"] for r in s["replayed"]["records"]}
            row = {"label": s["label"], "shortlist_best": max(c["retrained"] for c in sl["candidates"]),
                   "picks": {str(t): replay_top(sl["candidates"], curves, t, epochs, eta) for t in args.top}}
            rows.append(row)
    print(f"{'shortlist':<34} {'its best':>9} " + " ".join(f"{f'top {t}: pick (epochs)':>24}" for t in args.top))
    for r in rows:
        cells = []
        for t in args.top:
            p = r["picks"][str(t)]
            cells.append(f"{'needs an unrecorded epoch':>24}" if p is None else
                         f"{p['retrained']:>14.2f} ({p['epochs']:>2d} ep)".rjust(24))
        print(f"{r['label']:<34} {r['shortlist_best']:>9.2f} " + " ".join(cells))
    means = {}
    for t in args.top:
        ps = [r["picks"][str(t)] for r in rows]
        if all(p is not None for p in ps):
            means[str(t)] = {"retrained": sum(p["retrained"] for p in ps) / len(ps),
                             "regret_pts": sum(r["shortlist_best"] - p["retrained"] for r, p in zip(rows, ps)) / len(ps),
                             "epochs": sum(p["epochs"] for p in ps) / len(ps)}
    print("mean: " + "; ".join(f"top {t}: pick {m['retrained']:.2f}%, {m['regret_pts']:.2f} pts below the shortlist's best, "
                               f"{m['epochs']:.1f} candidate-epochs" for t, m in means.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "shortlists": rows, "mean": means}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
