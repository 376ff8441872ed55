"""Supernet training steps per second with 1 and N Ray Train workers (``--train-workers``).

Trains the default space's supernet (fair sampling, both stems as in the main job) on the
given data for a few epochs, once in this process (1 worker, all of this machine's threads)
and once on N Ray Train workers (CPUs / N torch threads each on a local cluster), and prints steps per
second from the per-epoch times in the checkpoint (the first epoch, with its warm-up, left out),
plus the Ray Train start-up cost (wall time minus training time). The two runs see the same
global batch and the same paths, so their losses agree up to float rounding grown over the steps
(the final line shows both).

    python benchmarks/train_workers.py --workers 2 --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args(argv)

    import torch

    from nas_data import load_data
    from nas_training.engine import Recipe
    from search_space import SearchSpace
    from supernet.train import train_supernet

    space = SearchSpace.load("default")
    data = load_data(args.data)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, seed=0)
    steps = data.num_batches("train", batch_size=args.batch_size, min_last=max(2, args.workers))
    out = Path(tempfile.mkdtemp(prefix="shufflenas-workers-"))
    rows = {}
    for n in (1, args.workers):
        t = time.perf_counter()
        _, state = train_supernet(space, data, recipe, checkpoint=out / f"w{n}.pt", device="cpu", progress=False,
                                  small_input=None, workers=n)
        wall = time.perf_counter() - t
        secs = [h["seconds"] for h in state["history"]]
        per_epoch = statistics.median(secs[1:] if len(secs) > 1 else secs)
        rows[n] = {"steps_per_s": steps / per_epoch, "wall": wall, "train": sum(secs),
                   "loss": state["history"][-1]["train_loss"]}
        print(f"{n} worker(s): {steps / per_epoch:.2f} steps/s (median epoch {per_epoch:.1f} s, {steps} steps of "
              f"{args.batch_size}); wall {wall:.0f} s of which training {sum(secs):.0f} s", flush=True)
    one, many = rows[1], rows[args.workers]
    print(f"\n{data.spec}, default space, {args.epochs} epochs, torch threads in this process "
          f"{torch.get_num_threads()}:")
    print(f"  steps/s: 1 worker {one['steps_per_s']:.2f}, {args.workers} workers {many['steps_per_s']:.2f} "
          f"({many['steps_per_s'] / one['steps_per_s']:.2f}x)")
    print(f"  Ray Train start-up and teardown: {many['wall'] - many['train']:.0f} s")
    print(f"  last-epoch train loss: 1 worker {one['loss']:.5f}, {args.workers} workers {many['loss']:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
