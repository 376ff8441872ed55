"""Does a latency-table entry need a minimum warm-up time? Two passes with and without it.

``search.latency``'s table measures each of its entries (stem, block at a site, head) with
``measure(samples=25, warmup_runs=5, ...)``. This script takes every ``--stride``-th entry of the
default space's table (both stems, 32x32), and measures each one four times in a row, alternating
the setting: with ``warmup_s`` 0.02 (a 20-ms warm-up minimum, the rule until session 21), without,
without again, with again. It prints, for each setting, how well its two passes agree (MAPE, the
share of entries more than 10% apart) and how the settings compare (the median ratio of their
medians), with the seconds per entry of each.

    python benchmarks/table_warmup.py --entries 200 --out benchmarks/results/table_warmup_s21.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from search.latency import Conditions
from search.latency._measure import measure
from search.latency._table import build_entry, table_specs
from search_space import SearchSpace, Task


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Median ratio b/a, MAPE of b against a (%), share of entries more than 10% apart (%)."""
    r = b / a
    return {"median_ratio": float(np.median(r)), "mape": float(np.mean(np.abs(r - 1)) * 100),
            "over_10": float(np.mean(np.abs(r - 1) > 0.1) * 100)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200)
    ap.add_argument("--stride", type=int, default=12, help="take every N-th entry of the table (start 5)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.entries < 2 or args.stride < 1:
        ap.error("--entries must be >= 2 and --stride >= 1")
    space, task = SearchSpace.load("default"), Task(10, 32, None)
    specs = table_specs(space, task)
    keys = list(specs)[5::args.stride][:args.entries]
    cond = Conditions(task.input_shape(), threads=args.threads)
    order = ("with_1", "without_1", "without_2", "with_2")
    ms: dict[str, list[float]] = {k: [] for k in order}
    secs = dict.fromkeys(order, 0.0)
    for key in keys:
        spec, shape = specs[key]
        module, c = build_entry(spec), cond.replace(input_shape=shape)
        for k in order:
            t = time.perf_counter()
            ms[k].append(measure(module, c, samples=25, warmup_runs=5, warmup_s=0.02 if k.startswith("with_") else 0.0,
                                 retries=1, max_rel_iqr=0.2).median_ms)
            secs[k] += time.perf_counter() - t
    m = {k: np.array(v) for k, v in ms.items()}
    out = {"entries": len(keys), "conditions": cond.env(),
           "with_repeat": agreement(m["with_1"], m["with_2"]),
           "without_repeat": agreement(m["without_1"], m["without_2"]),
           "without_vs_with": [agreement(m["with_1"], m["without_1"]), agreement(m["with_2"], m["without_2"])],
           "ms_per_entry": {k: 1000 * v / len(keys) for k, v in secs.items()},
           "median_ms": {k: v for k, v in ms.items()}, "keys": keys}
    print(f"{len(keys)} entries, 1 thread; median entry {np.median(m['with_1']):.3f} ms")
    for name in ("with_repeat", "without_repeat"):
        a = out[name]
        print(f"{name:<15} two passes: MAPE {a['mape']:.2f}%, {a['over_10']:.1f}% of entries >10% apart, "
              f"median ratio {a['median_ratio']:.3f}")
    for i, a in enumerate(out["without_vs_with"], 1):
        print(f"without / with, pass {i}: median ratio {a['median_ratio']:.3f}, MAPE {a['mape']:.2f}%")
    print("time per entry: " + ", ".join(f"{k} {v:.1f} ms" for k, v in out["ms_per_entry"].items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
