"""Training cost of weight sharing: supernet step time / static ShuffleNet step time.

For each of N random architectures of the space, one SGD step (forward,
backward, update) of the supernet on that path and of the static
``ShuffleNet(arch)`` (extracted with the same weights) on the same batch,
interleaved (each arm, then the same arms in reverse order), same process,
same threads, channels_last on CPU. The supernet arms (``--updates``):

* ``full``: plain SGD on the shared tensors (``update="full"``);
* ``path``: the path-only update on path-sized gradients
  (``supernet.path_update.PathOnlyUpdate``, what ``update="path"`` trains with);
* ``masked``: the path-only update by masks (``MaskedPathUpdate``, the sandwich
  rule's), for comparison.

Prints per-arch medians, the median ratio to the static step over architectures
(issue 10's target: <= 1.2x) and images/s; ``--out`` writes them as JSON.

    python benchmarks/supernet_overhead.py --archs 20 --batch 128 [--updates full path masked]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas_training.engine import Recipe, make_optimizer
from search_space import SearchSpace
from supernet import SuperNet, extract
from supernet.path_update import MaskedPathUpdate, PathOnlyUpdate

CRIT = nn.CrossEntropyLoss(label_smoothing=0.1)


def static_step(model, opt, x, y):
    def step():
        loss = CRIT(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def supernet_step(sup, opt, upd, x, y, arch):
    def step():
        opt.zero_grad(set_to_none=True)
        if isinstance(upd, PathOnlyUpdate):
            CRIT(upd.forward(x, arch), y).backward()
            upd.step()
            return
        saved = upd.freeze([arch]) if upd is not None else None
        CRIT(sup(x, arch), y).backward()
        opt.step()
        if saved is not None:
            upd.restore(saved)
    return step


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="default")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--small-input", action="store_true")
    ap.add_argument("--reps", type=int, default=4, help="interleaved rounds per architecture")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--updates", nargs="+", choices=["full", "path", "masked"], default=["full", "path"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.load(args.space)
    torch.manual_seed(args.seed)
    arms = {}
    for u in args.updates:  # one supernet per arm: each update moves its own weights
        torch.manual_seed(args.seed)
        sup = SuperNet(space, num_classes=10).to(memory_format=torch.channels_last).train()
        opt = make_optimizer(sup, Recipe())
        upd = {"full": None, "path": PathOnlyUpdate, "masked": MaskedPathUpdate}[u]
        arms[u] = (sup, opt, None if upd is None else upd(sup, opt))
    rng = np.random.default_rng(args.seed)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    names = [*args.updates, "static"]
    times: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {u: [] for u in args.updates}
    rows = []
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch}, "
          f"{args.image_size}x{args.image_size}, small_input={args.small_input}, channels_last, CPU")
    print(f"{'#':>3} " + " ".join(f"{n + ' ms':>10}" for n in names) + "  " +
          " ".join(f"{u + '/static':>12}" for u in args.updates) + "  arch")
    for k in range(args.archs):
        arch = space.sample(rng, num_classes=10, small_input=args.small_input)
        sup0 = arms[args.updates[0]][0]
        model = extract(sup0, arch).to(memory_format=torch.channels_last).train()
        opt_m = make_optimizer(model, Recipe())
        fns = {u: supernet_step(*arms[u], x, y, arch) for u in args.updates}
        fns["static"] = static_step(model, opt_m, x, y)
        for fn in fns.values():  # warm-up (first calls build templates, allocate)
            fn()
        t: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.reps):
            for n in (names if r % 2 == 0 else names[::-1]):
                t[n].append(timed(fns[n]))
        med = {n: statistics.median(v) for n, v in t.items()}
        for n in names:
            times[n].append(med[n])
        for u in args.updates:
            ratios[u].append(med[u] / med["static"])
        rows.append({"arch": str(arch), "ms": {n: 1e3 * med[n] for n in names}})
        print(f"{k:3d} " + " ".join(f"{1e3 * med[n]:10.1f}" for n in names) + "  " +
              " ".join(f"{med[u] / med['static']:12.2f}" for u in args.updates) + f"  {arch}")
    summary = {}
    print()
    for u in args.updates:
        r = ratios[u]
        summary[u] = {"median_ratio": statistics.median(r), "iqr": [float(np.percentile(r, 25)), float(np.percentile(r, 75))],
                      "images_per_s": args.batch / statistics.median(times[u])}
        print(f"median step ratio {u}/static over {args.archs} archs: {summary[u]['median_ratio']:.3f}x "
              f"(IQR {summary[u]['iqr'][0]:.3f}-{summary[u]['iqr'][1]:.3f}; target <= 1.2x); "
              f"{summary[u]['images_per_s']:.0f} images/s (median step {1e3 * statistics.median(times[u]):.1f} ms)")
    static_ips = args.batch / statistics.median(times["static"])
    print(f"static: {static_ips:.0f} images/s (median step {1e3 * statistics.median(times['static']):.1f} ms)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "torch": torch.__version__, "summary": summary,
                                   "static_images_per_s": static_ips, "rows": rows}, indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
