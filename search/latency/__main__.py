"""``python -m search.latency build|check``: build the latency predictor, or check it on held-out archs."""

from __future__ import annotations

import argparse
import logging
import statistics
import sys

import numpy as np

from search_space import SearchSpace, Task
from supernet import ShuffleNet

from . import RUNTIMES, Conditions, LatencyPredictor, measure_many

STEMS = {"no": False, "yes": True, "both": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.latency", description="Build or check the latency predictor.")
    ap.add_argument("command", choices=["build", "check"])
    ap.add_argument("--space", default="default")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: GPU when present)")
    ap.add_argument("--runtime", default="eager", help=f"one of {list(RUNTIMES)}")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--small-input", choices=list(STEMS), default="both",
                    help="stem variants in the table: ImageNet stem, small-input stem, or both (the search's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--calib-archs", type=int, default=100)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--archs", type=int, default=20, help="check: held-out random archs to measure")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        space = SearchSpace.load(args.space)
        task = Task(args.num_classes, args.input_size, STEMS[args.small_input])
        cond = Conditions(task.input_shape(), device=args.device, runtime=args.runtime, threads=args.threads,
                          dtype=args.dtype)
        p = LatencyPredictor.build(space, cond, task, calib_archs=args.calib_archs, rebuild=args.rebuild)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"predictor: {len(p.lut)} table entries, {p.fit_summary()}")
    if args.command == "check":
        rng = np.random.default_rng(args.seed + 10_000)
        archs = [space.sample(rng, num_classes=task.num_classes, small_input=task.small_input) for _ in range(args.archs)]
        meas = measure_many([ShuffleNet(a) for a in archs], cond)
        err = [abs(p.predict(a) - m.median_ms) / m.median_ms * 100 for a, m in zip(archs, meas)]
        print(f"check on {len(archs)} held-out archs: MAPE {statistics.mean(err):.2f}%, "
              f"within 10%: {100 * sum(e <= 10 for e in err) / len(err):.0f}%, worst {max(err):.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
