"""Does the supernet rank architectures? Short SPOS training, then inherited accuracy.

Trains a supernet on ``--data`` (SPOS, default recipe), then for every preset
and ``--archs`` random architectures of the space: top-1 on the held-out split
with inherited weights + BN recalibration. For ``--standalone`` of those
architectures (spread over the FLOPs range) it also trains the static model
from scratch with the same recipe and epochs and reports Kendall tau /
Spearman rho between inherited and stand-alone accuracy: the honest test of
whether the supernet separates good from bad architectures.

    python benchmarks/supernet_quality.py --data digits --epochs 100
    # the main job's supernet (digits at 32x32, both stems, 25 epochs); presets only:
    python benchmarks/supernet_quality.py --data digits --image-size 32 --small-input both --epochs 25 \
        --archs 0 --standalone 0 [--batch-size 32] [--lr 0.2] [--update path]
    python benchmarks/supernet_quality.py --data imagefolder:../shared/data/cifar10/train@500 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from nas_data import load_data
from nas_training.engine import Recipe
from search.evaluate import EvalConfig, calibration_batches, evaluate_arch
from search_space import SearchSpace, count_flops, count_params, get_preset, list_presets
from supernet import ShuffleNet
from supernet.train import train_model, train_supernet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--space", default="default")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--standalone-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--standalone", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=None, help="resize the images (search.run: 32); default the data's own")
    ap.add_argument("--small-input", choices=["no", "both"], default="no",
                    help="stem variants trained: ImageNet stem (no) or both, as search.run trains (every preset is "
                         "then scored with each stem)")
    ap.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    ap.add_argument("--lr", type=float, default=Recipe.lr)
    ap.add_argument("--update", choices=["full", "path"], default=None,
                    help="the supernet's optimizer update (train_supernet's update; default its default)")
    ap.add_argument("--out", default=None, help="JSON with every figure (default results/bench_supernet_<data>.json)")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    data = load_data(args.data, image_size=args.image_size)
    both = args.small_input == "both"
    space = SearchSpace.load(args.space)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    print(f"data {data.describe()}\nrecipe {recipe}")
    t0 = time.perf_counter()
    sup, state = train_supernet(space, data, recipe, device="cpu", progress=False, small_input=None if both else False,
                                update=args.update)
    train_s = time.perf_counter() - t0
    print(f"supernet: {args.epochs} epochs in {train_s:.0f} s ({train_s / args.epochs:.1f} s/epoch), "
          f"last-epoch train loss {state['metrics']['train_loss']:.3f} acc {state['metrics']['train_acc']:.1f}%")
    sup.eval()
    cfg = EvalConfig()
    calib = calibration_batches(data, cfg, torch.device("cpu"), True)
    rng = np.random.default_rng(args.seed + 1)
    stems = (False, True) if both else (False,)
    cands = [(n + (":small" if v else ""), get_preset(n, data.num_classes, small_input=v))
             for v in stems for n in list_presets()]
    n_presets = len(cands)
    cands += [(f"random{k}", space.sample(rng, num_classes=data.num_classes, small_input=None if both else False))
              for k in range(args.archs)]  # the supernet's stems
    rows = []
    print(f"\n{'name':<20} {'MFLOPs':>8} {'params':>9} {'inherited top-1':>16}  arch")
    for name, arch in cands:
        acc, _ = evaluate_arch(sup, arch, data, cfg, device="cpu", calib=calib)
        row = {"name": name, "arch": str(arch), "mflops": count_flops(arch, data.image_size) / 1e6,
               "params": count_params(arch), "inherited": acc}
        rows.append(row)
        print(f"{name:<20} {row['mflops']:8.2f} {row['params']:9d} {acc:15.2f}%  {arch}")
    inh = np.array([r["inherited"] for r in rows])
    pre = inh[:n_presets]
    print(f"\ninherited top-1: {n_presets} presets min {pre.min():.2f}%, mean {pre.mean():.2f}%, max {pre.max():.2f}% "
          f"({int((pre < 80).sum())} below 80%)"
          + (f"; random mean {inh[n_presets:].mean():.2f}%" if args.archs else "")
          + f"; supernet {train_s:.0f} s, last-epoch train top-1 {state['metrics']['train_acc']:.1f}%")
    result = {"args": vars(args), "data": data.describe(),
              "recipe": vars(recipe) if hasattr(recipe, "__dict__") else str(recipe),
              "supernet_seconds": train_s, "rows": rows}
    if args.standalone:
        order = np.argsort([r["mflops"] for r in rows])
        pick = [int(order[int(round(i))]) for i in np.linspace(0, len(rows) - 1, args.standalone)]
        sa_recipe = Recipe(epochs=args.standalone_epochs or args.epochs, seed=args.seed)
        print(f"\nstand-alone training of {len(pick)} archs, {sa_recipe.epochs} epochs each:")
        sa = []
        for i in pick:
            t = time.perf_counter()
            hist = train_model(ShuffleNet(rows[i]["arch"]), data, sa_recipe, device="cpu", progress=False)
            rows[i]["standalone"] = hist[-1]["val_acc"]
            sa.append((rows[i]["inherited"], hist[-1]["val_acc"]))
            print(f"  {rows[i]['name']:<20} inherited {rows[i]['inherited']:6.2f}%  stand-alone {hist[-1]['val_acc']:6.2f}%"
                  f"  ({time.perf_counter() - t:.0f} s)")
        a, b = zip(*sa)
        tau, rho = kendalltau(a, b).statistic, spearmanr(a, b).statistic
        result.update(kendall_tau=tau, spearman_rho=rho)
        print(f"Kendall tau {tau:.3f}, Spearman rho {rho:.3f} (inherited vs stand-alone, n={len(sa)})")
    out = Path(args.out or f"results/bench_supernet_{args.data.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
