"""Search trials per minute: Optuna (in process) against Ray Tune with 1 and 2 concurrent trials.

Every configuration runs the main job's search on the embedded digits data with warm caches
(the latency table and the supernet are built once, before any timing), and the figure is
``trials / search seconds`` from the typed result of :func:`search.pipeline.run_search` (the search phase only: no supernet,
final measurement or export). The Ray cluster is started once, before the first timing, as a
user's cluster would be. Configurations are interleaved over ``--rounds`` and the medians printed.

    python benchmarks/search_throughput.py --trials 40 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency-ms", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=None, help="supernet epochs (default: the main job's)")
    args = ap.parse_args(argv)

    from nas_training.cluster import init_ray
    from search.config import SearchConfig
    from search.pipeline import run_search

    out = Path(tempfile.mkdtemp(prefix="shufflenas-throughput-"))
    # one joint study, as the committed throughput figures were measured (the default since session 22,
    # stratified, runs two studies of half the trials each)
    base = SearchConfig.resolve({"latency_ms": args.latency_ms, "finetune_top": 0, "epochs": args.epochs,
                                 "stem_search": "joint"})
    t = time.perf_counter()
    run_search(base.replace(trials=2, out=str(out / "warmup")))
    print(f"warm-up (latency table, supernet, if not cached): {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    init_ray(None)
    print(f"ray.init: {time.perf_counter() - t:.1f} s", flush=True)
    configs = {"optuna": {"backend": "optuna"},
               "ray, 1 concurrent": {"backend": "ray", "concurrency": 1},
               "ray, 2 concurrent": {"backend": "ray", "concurrency": 2}}
    rates: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(args.rounds):
        for name, flags in configs.items():
            d = out / f"{name.replace(' ', '').replace(',', '_')}-{r}"
            res = run_search(base.replace(trials=args.trials, out=str(d), **flags))
            s, n = res.timings["search"], len(res.counted)  # rejected suggestions cost ~nothing and do not count
            rates[name].append(n / s * 60)
            print(f"round {r + 1} {name}: {n} trials in {s:.1f} s = {rates[name][-1]:.1f} trials/min", flush=True)
    print(f"\nmedian trials per minute over {args.rounds} round(s), {args.trials} trials each, warm caches:")
    for name, v in rates.items():
        print(f"  {name:18s} {statistics.median(v):7.1f}   ({', '.join(f'{x:.1f}' for x in v)})")
    opt = statistics.median(rates["optuna"])
    for name in list(configs)[1:]:
        print(f"  {name} / optuna: {statistics.median(rates[name]) / opt:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
