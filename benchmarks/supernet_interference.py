"""Which choice of the space keeps the supernet from learning? One dimension at a time.

The default supernet learns `digits` slowly (issue 10): about 17% train accuracy after
12 epochs, where one fixed path reaches 98%. This trains the supernet of the default
space with the ImageNet stem for a few epochs while only some choices vary per step,
the others fixed to torchvision's shufflenet_v2_x1_0, and prints the train loss and
accuracy of each variant (one after another, same seed, data and schedule):

    python benchmarks/supernet_interference.py --epochs 10
    python benchmarks/supernet_interference.py --epochs 10 --variants fixed units full

Variants: ``fixed`` (one path), ``depth``, ``width``, ``split`` (V2 split ratio per
block), ``last_conv``, ``units`` (V1 group count or V2 split per block, the V1/V2 mix),
``v1_units`` (V1 group counts only), ``depth_width_last`` (those three), ``full``
(uniform SPOS paths) and ``fair`` (FairNAS paths, the default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from nas_data import load_data
from nas_training.engine import TRAIN_MIN_BATCH, Recipe, epoch_generators, sgd_step, training_setup
from search_space import Arch, SearchSpace, Site, Stage, get_preset
from supernet import SuperNet
from supernet.sampling import make_path_sampler

VARIANTS = {  # which choices vary per step; the rest come from shufflenet_v2_x1_0
    "fixed": (), "depth": ("depth",), "width": ("width",), "split": ("split",), "last_conv": ("last_conv",),
    "units": ("units",), "v1_units": ("v1_units",), "depth_width_last": ("depth", "width", "last_conv"),
    "full": None, "fair": None,
}


def _project(space: SearchSpace, base: Arch, drawn: Arch, vary: tuple[str, ...], rng: np.random.Generator) -> Arch:
    """``base`` with the choices in ``vary`` taken from ``drawn`` (units and splits drawn afresh)."""
    stages, cin = [], base.stem
    for i, (b, d) in enumerate(zip(base.stages, drawn.stages)):
        depth = d.depth if "depth" in vary else b.depth
        width = d.channels if "width" in vary else b.channels
        blocks = []
        for j in range(depth):
            unit = b.blocks[min(j, b.depth - 1)]
            if "units" in vary or "v1_units" in vary:
                opts = [o for o in space.unit_options if "units" in vary or o.unit == "v1"]
                unit = opts[int(rng.integers(len(opts)))]
            elif "split" in vary:
                unit = [o for o in space.unit_options if o.unit == "v2"][int(rng.integers(len(space.splits)))]
            blocks.append(space.repair_block(unit, Site(i, j, cin if j == 0 else width, width)))
        stages.append(Stage(width, tuple(blocks)))
        cin = width
    return base.replace(stages=tuple(stages), last_conv=drawn.last_conv if "last_conv" in vary else base.last_conv)


def run(variant: str, space: SearchSpace, data, epochs: int, seed: int) -> dict:
    recipe = Recipe(epochs=epochs, seed=seed)
    torch.manual_seed(seed)
    net = SuperNet(space, num_classes=data.num_classes)
    dev = torch.device("cpu")
    channels_last, steps, opt, sched, amp, scaler = training_setup(net, data, recipe, dev)
    crit = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    base = get_preset("shufflenet_v2_x1_0", data.num_classes)
    sample = make_path_sampler("fair" if variant == "fair" else "uniform", space, data.task(False), seed=seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        rng, gen = epoch_generators(seed, epoch)
        loss_sum = correct = n = 0.0
        for k, (x, y) in enumerate(data.batches("train", batch_size=recipe.batch_size, shuffle=True, augment=True,
                                                generator=gen, device=dev, channels_last=channels_last,
                                                min_last=TRAIN_MIN_BATCH)):
            drawn = sample(rng, epoch * steps + k)
            vary = VARIANTS[variant]
            arch = drawn if vary is None else _project(space, base, drawn, vary, rng)
            out, loss = sgd_step(lambda x=x, a=arch: net(x, a), y, crit, net, opt, sched, scaler, recipe, amp)
            loss_sum += float(loss.detach()) * y.numel()
            correct += int((out.argmax(1) == y).sum())
            n += y.numel()
    return {"variant": variant, "loss": loss_sum / n, "acc": 100 * correct / n, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.load("default")
    data = load_data("digits")
    print(f"supernet of the default space, ImageNet stem, digits ({data.train_y.numel()} train images), "
          f"{args.epochs} epochs, batch 128, {args.threads} thread(s); train loss/accuracy of the last epoch "
          f"(chance: loss 2.30, 10%)")
    print(f"{'variant':<18} {'loss':>6} {'train acc':>10} {'seconds':>8}")
    for v in args.variants:
        r = run(v, space, data, args.epochs, args.seed)
        print(f"{r['variant']:<18} {r['loss']:6.3f} {r['acc']:9.1f}% {r['seconds']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
