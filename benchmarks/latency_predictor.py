"""Latency predictor accuracy on this machine: predicted vs measured end to end.

Builds (or loads) the predictor for the default space, then measures N random
architectures that were never used for fitting plus every preset, all
interleaved (round-robin, shuffled each round) so machine drift hits them
alike, and prints MAPE, the share within +-10%, Spearman rho and the worst
case, for the calibrated predictor and for the raw per-block table sum.

    python benchmarks/latency_predictor.py --archs 50 --input-size 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from search.latency import Conditions, LatencyPredictor, measure_many
from search_space import SearchSpace, Task, get_preset, list_presets
from supernet import ShuffleNet


def report(name: str, pred: np.ndarray, meas: np.ndarray) -> None:
    err = np.abs(pred - meas) / meas * 100
    print(f"{name:<22} MAPE {err.mean():5.2f}%  within 10%: {100 * np.mean(err <= 10):5.1f}%  "
          f"Spearman rho {spearmanr(pred, meas).statistic:.3f}  worst {err.max():5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="default")
    ap.add_argument("--archs", type=int, default=50)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--small-input", choices=["no", "yes", "both"], default="both",
                    help="stem variant: ImageNet stem (no), small-input stem (yes), or both as search.run covers (default)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib-archs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--seed", type=int, default=12345, help="seed of the held-out archs (fitting uses seed 0)")
    args = ap.parse_args()
    space = SearchSpace.load(args.space)
    small = {"no": False, "yes": True, "both": None}[args.small_input]
    task = Task(args.num_classes, args.input_size, small)
    shape = task.input_shape()
    cond = Conditions(shape, device=args.device, runtime=args.runtime, threads=args.threads)
    t0 = time.perf_counter()
    p = LatencyPredictor.build(space, cond, task, calib_archs=args.calib_archs, rebuild=args.rebuild)
    print(f"device {p.key['device_name']} | runtime {p.key['runtime']} | input {shape} | threads {p.key['threads']} "
          f"| torch {p.key['torch']}")
    print(f"predictor: {len(p.lut)} table entries; table {p.fit.get('table_seconds', float('nan')):.0f} s, "
          f"total build {p.fit.get('total_seconds', float('nan')):.0f} s (this call {time.perf_counter() - t0:.0f} s); "
          f"calibration {p.fit.get('coef')}; on its {p.fit.get('n')} fitting archs MAPE raw "
          f"{p.fit.get('raw_mape', float('nan')):.2f}% -> calibrated {p.fit.get('calibrated_mape', float('nan')):.2f}%")
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng, num_classes=args.num_classes, small_input=small) for _ in range(args.archs)]
    names = [f"random{k}" for k in range(args.archs)]
    for n in list_presets():
        for v in ((False, True) if small is None else (small,)):
            a = get_preset(n, args.num_classes, small_input=v)
            if v in space.small_input and space.contains(a):
                archs.append(a)
                names.append(n + (":small" if v else ""))
    t1 = time.perf_counter()
    meas = measure_many([ShuffleNet(a) for a in archs], cond, rounds=args.rounds, per_round=10, seed=args.seed)
    med = np.array([m.median_ms for m in meas])
    pred = np.array([p.predict(a) for a in archs])
    raw = np.array([p.raw(a) for a in archs])
    print(f"measured {len(archs)} archs interleaved ({args.rounds} rounds x 10 samples each) in {time.perf_counter() - t1:.0f} s\n")
    print(f"{'name':<20} {'measured ms':>12} {'IQR':>7} {'predicted':>10} {'err %':>7} {'raw sum':>8}")
    for n, m, pr, rw in zip(names, meas, pred, raw):
        print(f"{n:<20} {m.median_ms:12.3f} {m.iqr_ms:7.3f} {pr:10.3f} {100 * (pr - m.median_ms) / m.median_ms:7.1f} {rw:8.3f}")
    print()
    k = args.archs
    report("calibrated, random", pred[:k], med[:k])
    if len(archs) > k:
        report("calibrated, presets", pred[k:], med[k:])
    report("calibrated, all", pred, med)
    report("raw table sum, all", raw, med)


if __name__ == "__main__":
    main()
