"""What the latency predictor's calibration costs, and what a cheaper measurement of it loses.

The calibration (``LatencyPredictor.build``) measures ``--calib-archs`` random architectures end to
end with ``measure_many`` and fits its coefficients on their medians; on a 2-core machine that is
about half of a cold predictor build (126 of 237 s in session 21). This script keeps the lookup
table (built or loaded from the cache as ``search.run`` does) and, for each measurement protocol
given (``ROUNDSxPER_ROUND/REWARM``: ``measure_many``'s rounds, timed runs per turn and untimed
re-warm runs per turn), measures the same calibration architectures, fits the calibration on
them (all of them, and the first ``--subset``) and scores the fit on ``--heldout`` fresh
architectures measured with a long reference protocol before and after (10 rounds, twice: the
two reference sessions against each other are the yardstick). Sessions run one after another:

    reference 1, protocol 1, protocol 2, ..., reference 2

    python benchmarks/calibration_cost.py --protocols 6x10/20 3x10/20 3x10/10 --out benchmarks/results/calibration_cost.json
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from pathlib import Path

import numpy as np

from search.latency import Conditions, LatencyPredictor, measure_many
from search_space import SearchSpace, Task
from supernet import ShuffleNet


def parse_protocol(text: str) -> tuple[int, int, int]:
    """``"6x10/20"`` -> (rounds 6, per_round 10, rewarm 20). Raises ``ValueError`` on another form."""
    m = re.fullmatch(r"(\d+)x(\d+)/(\d+)", text)
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise ValueError(f"protocol: expected ROUNDSxPER_ROUND/REWARM with positive rounds and per_round, "
                         f"e.g. 6x10/20, got {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def scores(pred: np.ndarray, meas: np.ndarray) -> dict:
    """MAPE (%), share within +-10% (%), worst relative error (%) of ``pred`` against ``meas``."""
    err = np.abs(pred - meas) / meas * 100
    return {"mape": float(err.mean()), "within_10": float(100 * np.mean(err <= 10)), "worst": float(err.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", nargs="+", default=["6x10/20", "3x10/20", "3x10/10"])
    ap.add_argument("--space", default="default")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib-archs", type=int, default=100)
    ap.add_argument("--subset", type=int, default=60, help="also fit on the first N calibration archs")
    ap.add_argument("--heldout", type=int, default=50)
    ap.add_argument("--seed", type=int, default=12345, help="seed of the held-out archs (the calibration's is 0)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        protocols = [parse_protocol(p) for p in args.protocols]
    except ValueError as e:
        ap.error(str(e))
    space = SearchSpace.load(args.space)
    task = Task(10, args.input_size, None)
    cond = Conditions(task.input_shape(), threads=args.threads)
    base = LatencyPredictor.build(space, cond, task, calib_archs=args.calib_archs)
    stems = task.stem_variants(space.small_input)
    rng = np.random.default_rng(0)  # the calibration's own draw (LatencyPredictor.build, seed 0)
    calib = [space.sample(rng, num_classes=10, small_input=stems[i % len(stems)]) for i in range(args.calib_archs)]
    rng = np.random.default_rng(args.seed)
    fresh = [space.sample(rng, num_classes=10, small_input=stems[i % len(stems)]) for i in range(args.heldout)]
    calib_models, fresh_models = [ShuffleNet(a) for a in calib], [ShuffleNet(a) for a in fresh]

    def reference(k: int) -> np.ndarray:
        t = time.perf_counter()
        ms = measure_many(fresh_models, cond, rounds=10, per_round=10, seed=100 + k)
        print(f"reference session {k}: {len(fresh)} held-out archs, 10x10/20, {time.perf_counter() - t:.0f} s", flush=True)
        return np.array([m.median_ms for m in ms])

    ref1 = reference(1)
    runs = []
    for text, (rounds, per_round, rewarm) in zip(args.protocols, protocols):
        t = time.perf_counter()
        ms = measure_many(calib_models, cond, rounds=rounds, per_round=per_round, rewarm_runs=rewarm, seed=0)
        secs = time.perf_counter() - t
        print(f"protocol {text}: {len(calib)} calibration archs in {secs:.0f} s", flush=True)
        runs.append({"protocol": text, "seconds": secs, "measured_ms": [m.median_ms for m in ms],
                     "rel_iqr": float(np.median([m.rel_iqr for m in ms]))})
    ref2 = reference(2)
    ref = (ref1 + ref2) / 2
    out = {"args": vars(args), "conditions": cond.env(), "table_entries": len(base.lut),
           "reference": {"session_1": ref1.tolist(), "session_2": ref2.tolist(),
                         "session_2_vs_1": scores(ref2, ref1)}, "protocols": runs}
    print(f"\nthe measurement against itself (reference 2 vs 1, {len(fresh)} held-out archs): "
          f"{out['reference']['session_2_vs_1']}")
    print(f"{'protocol':<10} {'seconds':>8} {'archs':>6} {'median rel IQR':>15} {'vs 1st protocol MAPE':>21} "
          f"{'held-out MAPE':>14} {'within 10%':>11} {'worst':>7}")
    first = np.array(runs[0]["measured_ms"])
    for r in runs:
        y = np.array(r["measured_ms"])
        r["fits"] = {}
        for n in (len(calib), min(args.subset, len(calib))):
            p = copy.deepcopy(base)
            p.fit_calibration(calib[:n], y[:n])
            pred = np.array([p.predict(a) for a in fresh])
            s = {**scores(pred, ref), "vs_session_1": scores(pred, ref1), "vs_session_2": scores(pred, ref2),
                 "model": p.fit["model"]}
            r["fits"][str(n)] = s
            agree = scores(y, first)["mape"]
            print(f"{r['protocol']:<10} {r['seconds']:8.0f} {n:6d} {r['rel_iqr']:15.3f} {agree:21.2f} "
                  f"{s['mape']:14.2f} {s['within_10']:10.1f}% {s['worst']:6.1f}%")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
