"""Which supernet ranks the retrained networks best? Kendall tau against the committed ground truth.

``benchmarks/ground_truth.json`` (written by ``benchmarks/ground_truth.py``)
holds networks of the space retrained from scratch: the 9 presets and sampled
networks spanning unit mix, stems and FLOPs, with the data spec they were
trained on. This script trains a supernet on the same data with one variant
(``--sampler``, ``--update``, ``--conv0-head``), scores every network of the
truth with inherited weights + BN recalibration, and prints Kendall tau /
Spearman rho against the retrained top-1 (mean over seeds): overall, within
the presets and within the sampled networks. ``--supernet PATH`` scores an
existing checkpoint instead of training one.

    python benchmarks/supernet_ranking.py --epochs 40                      # uniform SPOS
    python benchmarks/supernet_ranking.py --epochs 40 --update path        # path-only optimizer update
    python benchmarks/supernet_ranking.py --epochs 40 --sampler fair       # FairNAS strict fairness
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", default=str(Path(__file__).with_name("ground_truth.json")),
                    help="ground-truth JSON (benchmarks/ground_truth.py)")
    ap.add_argument("--sampler", default="uniform", choices=["uniform", "fair"])
    ap.add_argument("--update", default="full", choices=["full", "path"])
    ap.add_argument("--supernet", default=None, help="score this supernet checkpoint instead of training one")
    ap.add_argument("--conv0-head", default="shared", choices=["shared", "per_width"],
                    help="classifier of conv0 networks (SuperNet conv0_head)")
    ap.add_argument("--v1-sharing", default="dense", choices=["dense", "labels", "per_group"],
                    help="how V1 group counts share weights (SuperNet v1_sharing)")
    ap.add_argument("--small-input", action="store_true", help="train the supernet on small-stem paths")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="checkpoint path (default results/ranking/<variant>.pt)")
    args = ap.parse_args()

    import torch
    from ground_truth import load_truth, truth_accuracy
    from scipy.stats import kendalltau, spearmanr

    import supernet.train as st
    from search.evaluate import EvalConfig, calibration_batches, evaluate_arch
    from search_space import Arch, SearchSpace
    from supernet.data import load_data

    try:
        truth = load_truth(args.truth)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    rows = [dict(n, retrained=truth_accuracy(n)) for n in truth["networks"] if n["runs"]]
    data = load_data(truth["data"]["spec"], val_fraction=truth["data"]["val_fraction"])
    space = SearchSpace.load("default")
    if args.supernet:
        sup, _ = st.load_supernet(args.supernet, device="cpu")
        label = f"checkpoint {args.supernet}"
    else:
        recipe = st.Recipe(epochs=args.epochs, seed=args.seed)
        variant = (f"{args.sampler}_{args.update}_{args.conv0_head}_v1{args.v1_sharing}"
                   f"{'_small' if args.small_input else ''}_e{args.epochs}")
        ckpt = Path(args.out or f"results/ranking/{variant}.pt")
        t = time.perf_counter()
        sup, state = st.train_supernet(space, data, recipe, checkpoint=ckpt, resume=True, device="cpu",
                                       progress=False, conv0_head=args.conv0_head, sampler=args.sampler,
                                       update=args.update, small_input=args.small_input, v1_sharing=args.v1_sharing)
        label = (f"{variant}, {args.epochs} epochs in {time.perf_counter() - t:.0f} s, last train acc "
                 f"{state['history'][-1]['train_acc']:.1f}%")
    sup.eval()
    cfg = EvalConfig()
    calib = calibration_batches(data, cfg, torch.device("cpu"), True)
    print(f"supernet: {label}\n{'name':<22} {'retrained':>9} {'inherited':>9}")
    for r in rows:
        r["inh_new"], _ = evaluate_arch(sup, Arch.parse(r["arch"]), data, cfg, device="cpu", calib=calib)
        print(f"{r['name']:<22} {r['retrained']:8.2f}% {r['inh_new']:8.2f}%")

    def corr(sel):
        a = [r["inh_new"] for r in sel]
        b = [r["retrained"] for r in sel]
        return kendalltau(a, b).statistic, spearmanr(a, b).statistic, len(sel)

    allr = rows
    for name, sel in (("all", allr), ("presets", [r for r in allr if r["role"] == "preset"]),
                      ("searched + sampled", [r for r in allr if r["role"] != "preset"])):
        tau, rho, n = corr(sel)
        print(f"{name:<20} n={n:2d}  Kendall tau {tau:6.3f}  Spearman rho {rho:6.3f}")


if __name__ == "__main__":
    main()
