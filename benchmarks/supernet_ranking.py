"""Which supernet ranks the retrained networks best? Tau against a fixed ground truth.

``benchmarks/nas_vs_baseline.py`` leaves networks retrained from scratch (its
``nas_vs_baseline.json``). This script takes their retrained top-1 as ground
truth, trains a supernet on the same data with a sampling variant, scores every
network with inherited weights + BN recalibration, and prints Kendall tau /
Spearman rho against the ground truth: overall, for the presets alone and for
the searched/sampled networks alone. ``--supernet PATH`` scores an existing
supernet checkpoint instead of training one (the nas_vs_baseline run's own).

Sampling variants (``--sampling``):
  uniform        SPOS: every decision uniform (the default of supernet.train)
  homogeneous:P  with probability P, each stage repeats one unit choice for all its
                 blocks (as the hand-designed networks do); otherwise uniform

    python benchmarks/supernet_ranking.py --truth results/nas_vs_baseline/nas_vs_baseline.json \\
        --sampling homogeneous:0.5 --epochs 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def homogeneous_sampler(space, p: float, num_classes: int, small_input: bool):
    """Uniform SPOS sampling, except that with probability ``p`` each stage reuses one block choice."""
    from search_space import Arch, Stage

    def sample(rng: np.random.Generator):
        a = space.sample(rng, num_classes=num_classes, small_input=small_input)
        if rng.random() >= p:
            return a
        stages, cin = [], a.stem
        for i, st in enumerate(a.stages):
            first = space.valid_blocks(cin, st.channels, 2, first_grouped=i > 0)
            rest = space.valid_blocks(st.channels, st.channels, 1)
            both = [b for b in rest if b in first]
            b = both[int(rng.integers(len(both)))] if both else None
            if b is None:
                stages.append(st)
            else:
                stages.append(Stage(st.channels, (b,) * len(st.blocks)))
            cin = st.channels
        return Arch(stem=a.stem, stages=tuple(stages), last_conv=a.last_conv, num_classes=num_classes,
                    small_input=a.small_input)

    return sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", nargs="+", required=True, help="nas_vs_baseline.json file(s) with retrained rows")
    ap.add_argument("--sampling", default="uniform")
    ap.add_argument("--supernet", default=None, help="score this supernet checkpoint instead of training one")
    ap.add_argument("--conv0-head", default="shared", choices=["shared", "per_width"],
                    help="classifier of conv0 networks (SuperNet conv0_head)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="checkpoint path (default results/supernet_<sampling>.pt)")
    args = ap.parse_args()

    import torch
    from scipy.stats import kendalltau, spearmanr

    import supernet.train as st
    from search.evaluate import EvalConfig, calibration_batches, evaluate_arch
    from search_space import Arch, SearchSpace
    from supernet.data import load_data

    rows: dict[str, dict] = {}
    spec = None
    for f in args.truth:
        res = json.loads(Path(f).read_text())
        spec = spec or res["data"]["spec"]
        if res["data"]["spec"] != spec:
            raise SystemExit(f"{f}: data {res['data']['spec']} differs from {spec}")
        for r in res["rows"]:
            rows.setdefault(r["arch"], r)
    data = load_data(spec)
    space = SearchSpace.load("default")
    if args.supernet:
        sup, _ = st.load_supernet(args.supernet, device="cpu")
        label = f"checkpoint {args.supernet}"
    else:
        recipe = st.Recipe(epochs=args.epochs, seed=args.seed)
        if args.sampling.startswith("homogeneous:"):
            p = float(args.sampling.split(":", 1)[1])
            st.make_sampler = lambda space, recipe, *, num_classes, small_input, image_size: homogeneous_sampler(
                space, p, num_classes, small_input)
        elif args.sampling != "uniform":
            raise SystemExit(f"--sampling: unknown variant {args.sampling!r}")
        ckpt = Path(args.out or f"results/supernet_{args.sampling.replace(':', '_')}_{args.conv0_head}.pt")
        t = time.perf_counter()
        sup, state = st.train_supernet(space, data, recipe, checkpoint=ckpt, resume=True, device="cpu", progress=False,
                                       conv0_head=args.conv0_head)
        label = (f"{args.sampling}, conv0 head {args.conv0_head}, {args.epochs} epochs in {time.perf_counter() - t:.0f} s, last train acc "
                 f"{state['history'][-1]['train_acc']:.1f}%")
    sup.eval()
    cfg = EvalConfig()
    calib = calibration_batches(data, cfg, torch.device("cpu"), True)
    print(f"supernet: {label}\n{'name':<22} {'retrained':>9} {'inherited':>9}")
    for r in rows.values():
        r["inh_new"], _ = evaluate_arch(sup, Arch.parse(r["arch"]), data, cfg, device="cpu", calib=calib)
        print(f"{r['name']:<22} {r['retrained']:8.2f}% {r['inh_new']:8.2f}%")

    def corr(sel):
        a = [r["inh_new"] for r in sel]
        b = [r["retrained"] for r in sel]
        return kendalltau(a, b).statistic, spearmanr(a, b).statistic, len(sel)

    allr = list(rows.values())
    for name, sel in (("all", allr), ("presets", [r for r in allr if r["role"] == "preset"]),
                      ("searched + sampled", [r for r in allr if r["role"] != "preset"])):
        tau, rho, n = corr(sel)
        print(f"{name:<20} n={n:2d}  Kendall tau {tau:6.3f}  Spearman rho {rho:6.3f}")


if __name__ == "__main__":
    main()
