"""Latency predictor accuracy on this machine: predicted vs measured end to end.

Builds (or loads) the predictor for the default space, then measures N random
architectures that were never used for fitting plus every preset, all
interleaved (round-robin, shuffled each round) so machine drift hits them
alike, and prints MAPE, the share within +-10%, Spearman rho and the worst
case, for the calibrated predictor and for the raw per-block table sum.

With ``--sessions 2`` (the default) every architecture is measured in two
independent interleaved sessions, one after the other. The predictor is scored
against each, and the second session against the first: how often the
measurement agrees with itself within +-10% (its repeatability: the noise of
both sessions and the drift between them), the yardstick for the predictor's
figure. ``--out`` writes every figure as JSON and, beside it, a plot of
predicted (and re-measured) against measured latency.

    python benchmarks/latency_predictor.py --archs 50 --threads 2 --out benchmarks/results/latency_predictor_t2.json

``--drift A.json B.json ...`` measures nothing: for each written result and
session, it prints the random archs within +-10% as predicted and after
rescaling every prediction by the one factor (0.80-1.25) that puts the most of
them within +-10% of that session: how much of the miss a drift of the whole
machine explains, the upper bound of re-anchoring the predictor at run time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from search.latency import Conditions, LatencyPredictor, measure_many
from search_space import SearchSpace, Task, get_preset, list_presets
from supernet import ShuffleNet


def report(name: str, pred: np.ndarray, meas: np.ndarray) -> dict:
    """Print and return MAPE (%), the share within +-10% (%), Spearman rho and the worst error (%)."""
    err = np.abs(pred - meas) / meas * 100
    r = {"n": len(meas), "mape": float(err.mean()), "within_10": float(100 * np.mean(err <= 10)),
         "rho": float(spearmanr(pred, meas).statistic), "worst": float(err.max())}
    print(f"{name:<34} MAPE {r['mape']:5.2f}%  within 10%: {r['within_10']:5.1f}%  "
          f"Spearman rho {r['rho']:.3f}  worst {r['worst']:5.1f}%")
    return r


def drift_check(result: dict) -> list[dict]:
    """Per session of a ``--out`` result: the random archs within +-10% (%) as predicted, and
    the factor in [0.80, 1.25] (steps of 0.001, the smallest change from 1 among equals) that
    puts the most predictions within +-10% once every prediction is scaled by it, with that
    share. The factor is fitted on the measurements it is scored against: the second figure is
    an upper bound for any single run-time rescale of the predictor.

    Raises:
        ValueError: a result without random archs or without per-session measurements.
    """
    archs = [a for a in result.get("archs", []) if a["name"].startswith("random")]
    if not archs or not isinstance(archs[0].get("measured_ms"), list):
        raise ValueError("--drift: the result holds no random archs measured per session (benchmarks/latency_predictor.py --out)")
    pred = np.array([a["predicted_ms"] for a in archs])
    meas = np.array([a["measured_ms"] for a in archs])
    out = []
    grid = sorted(np.round(np.arange(0.80, 1.2505, 0.001), 3), key=lambda f: (abs(f - 1.0), f))
    for s in range(meas.shape[1]):
        within = lambda p, m=meas[:, s]: float(100 * np.mean(np.abs(p - m) / m * 100 <= 10))  # as report()  # noqa: E731
        scale = max(grid, key=lambda f: within(pred * f))  # max keeps the first best: the one nearest 1
        out.append({"session": s + 1, "n": len(archs), "within_10": within(pred), "scale": float(scale),
                    "within_10_rescaled": within(pred * scale)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drift", nargs="+", default=None, metavar="RESULT",
                    help="measure nothing: how much a single rescale per session would fix in these results (above)")
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
    ap.add_argument("--sessions", type=int, default=2,
                    help="independent interleaved measurement sessions (2: also the measurement's own agreement)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--out", default=None, help="write the settings, per-arch figures and scores here (JSON)")
    ap.add_argument("--seed", type=int, default=12345, help="seed of the held-out archs (fitting uses seed 0)")
    args = ap.parse_args()
    if args.drift:
        for path in args.drift:
            try:
                rows = drift_check(json.loads(Path(path).read_text()))
            except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
                raise SystemExit(f"error: {path}: not a latency_predictor result ({type(e).__name__}: {e})") from None
            for r in rows:
                print(f"{path} session {r['session']}: {r['n']} random archs within 10% {r['within_10']:5.1f}%; "
                      f"best single factor x {r['scale']:.3f}: {r['within_10_rescaled']:5.1f}%")
        return
    if args.sessions < 1:
        ap.error("--sessions: must be at least 1")
    if args.out and not args.out.endswith(".json"):
        ap.error(f"--out: a .json path (the plot goes beside it as .png), got {args.out}")
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
          f"{p.fit_summary()}")
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng, num_classes=args.num_classes, small_input=small) for _ in range(args.archs)]
    names = [f"random{k}" for k in range(args.archs)]
    for n in list_presets():
        for v in ((False, True) if small is None else (small,)):
            a = get_preset(n, args.num_classes, small_input=v)
            if v in space.small_input and space.contains(a):
                archs.append(a)
                names.append(n + (":small" if v else ""))
    models = [ShuffleNet(a) for a in archs]
    sessions = []
    for k in range(args.sessions):
        t1 = time.perf_counter()
        sessions.append(measure_many(models, cond, rounds=args.rounds, per_round=10, seed=args.seed + k))
        print(f"session {k + 1}: measured {len(archs)} archs interleaved ({args.rounds} rounds x 10 samples each) "
              f"in {time.perf_counter() - t1:.0f} s")
    meds = np.array([[m.median_ms for m in ms] for ms in sessions])
    med = meds[0]
    pred = np.array([p.predict(a) for a in archs])
    raw = np.array([p.raw(a) for a in archs])
    print(f"\n{'name':<20} {'measured ms':>12} {'IQR':>7} {'predicted':>10} {'err %':>7} {'raw sum':>8}"
          + "".join(f" {f'session {k + 1}':>10}" for k in range(1, args.sessions)))
    for i, (n, m, pr, rw) in enumerate(zip(names, sessions[0], pred, raw)):
        print(f"{n:<20} {m.median_ms:12.3f} {m.iqr_ms:7.3f} {pr:10.3f} {100 * (pr - m.median_ms) / m.median_ms:7.1f} "
              f"{rw:8.3f}" + "".join(f" {meds[k][i]:10.3f}" for k in range(1, args.sessions)))
    print()
    k = args.archs
    scores = {}
    for s in range(args.sessions):
        tag = f", session {s + 1}" if args.sessions > 1 else ""
        scores[f"calibrated, random{tag}"] = report(f"calibrated, random{tag}", pred[:k], meds[s][:k])
        if len(archs) > k:
            scores[f"calibrated, presets{tag}"] = report(f"calibrated, presets{tag}", pred[k:], meds[s][k:])
        scores[f"calibrated, all{tag}"] = report(f"calibrated, all{tag}", pred, meds[s])
    tag = ", session 1" if args.sessions > 1 else ""
    scores[f"raw table sum, all{tag}"] = report(f"raw table sum, all{tag}", raw, med)
    if args.sessions > 1:
        print("the measurement against itself (its repeatability: both sessions' noise and the drift between them):")
        for s in range(1, args.sessions):
            scores[f"session {s + 1} vs 1, random"] = report(f"session {s + 1} vs 1, random", meds[s][:k], meds[0][:k])
            scores[f"session {s + 1} vs 1, all"] = report(f"session {s + 1} vs 1, all", meds[s], meds[0])
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "args": vars(args), "predictor": {"key": p.key, "fit": p.fit}, "conditions": cond.env(),
            "scores": scores,
            "archs": [{"name": n, "arch": str(a), "predicted_ms": float(pr), "raw_ms": float(rw),
                       "measured_ms": [float(x) for x in meds[:, i]],
                       "iqr_ms": [float(ms[i].iqr_ms) for ms in sessions]}
                      for i, (n, a, pr, rw) in enumerate(zip(names, archs, pred, raw))],
        }
        out.write_text(json.dumps(result, indent=1))
        plot(result, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(result: dict, path: Path) -> None:
    """Predicted vs measured (session 1) latency, with the +-10% band; the second session's
    measurement of the same networks in grey (the measurement against itself)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = result["archs"]
    meas = np.array([a["measured_ms"][0] for a in archs])
    fig, ax = plt.subplots(figsize=(6, 5.5))
    hi = 1.1 * max(max(max(a["measured_ms"]) for a in archs), max(a["predicted_ms"] for a in archs))
    ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="tab:green", alpha=0.12, label="within +-10%")
    ax.plot([0, hi], [0, hi], color="tab:green", lw=0.8)
    if len(archs[0]["measured_ms"]) > 1:
        ax.scatter(meas, [a["measured_ms"][1] for a in archs], marker="x", s=18, color="0.55",
                   label="session 2 measurement (the measurement against itself)")
    for role, color in (("random", "tab:blue"), ("preset", "tab:red")):
        sel = [(m, a["predicted_ms"]) for m, a in zip(meas, archs) if a["name"].startswith("random") == (role == "random")]
        if sel:
            ax.scatter(*zip(*sel), s=16, color=color, label=f"predicted, {role} ({len(sel)})")
    sc = result["scores"]
    key = next(k for k in sc if k.startswith("calibrated, random"))
    c = result["conditions"]
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="measured, session 1 (ms)", ylabel="predicted / re-measured (ms)",
           title=f"{c['device_name']}, {c['runtime']}, {c['threads']} thread(s), input {c['input_shape']}\n"
                 f"random archs: {sc[key]['within_10']:.0f}% within 10% (MAPE {sc[key]['mape']:.1f}%)"
                 + (f"; the measurement vs itself: {sc['session 2 vs 1, random']['within_10']:.0f}%"
                    if "session 2 vs 1, random" in sc else ""))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
