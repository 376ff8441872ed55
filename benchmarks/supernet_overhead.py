"""Training cost of weight sharing: supernet step time / static ShuffleNet step time.

For each of N random architectures of the space, one SGD step (forward,
backward, update) of ``supernet(x, arch)`` and of the static ``ShuffleNet(arch)``
(extracted with the same weights) on the same batch, interleaved A/B/B/A,
same process, same threads, channels_last on CPU. Prints per-arch medians and
the median ratio over architectures (target <= 1.2x) and images/s.

    python benchmarks/supernet_overhead.py --archs 20 --batch 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from nas_training.engine import Recipe, make_optimizer
from search_space import SearchSpace
from supernet import SuperNet, extract


def step_fn(model, opt, x, y, arch=None):
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        out = model(x, arch) if arch is not None else model(x)
        loss = crit(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

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
    ap.add_argument("--reps", type=int, default=4, help="A/B pairs per architecture")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.load(args.space)
    torch.manual_seed(args.seed)
    sup = SuperNet(space, num_classes=10).to(memory_format=torch.channels_last).train()
    opt_s = make_optimizer(sup, Recipe())
    rng = np.random.default_rng(args.seed)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    ratios, s_times, m_times = [], [], []
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch}, "
          f"{args.image_size}x{args.image_size}, small_input={args.small_input}, channels_last, CPU")
    print(f"{'#':>3} {'supernet ms':>12} {'static ms':>10} {'ratio':>6}  arch")
    for k in range(args.archs):
        arch = space.sample(rng, num_classes=10, small_input=args.small_input)
        model = extract(sup, arch).to(memory_format=torch.channels_last).train()
        opt_m = make_optimizer(model, Recipe())
        a, b = step_fn(sup, opt_s, x, y, arch), step_fn(model, opt_m, x, y)
        a(), b(), a(), b()  # warm-up (first calls build templates, allocate)
        ta, tb = [], []
        for _ in range(args.reps):
            ta.append(timed(a))
            tb.append(timed(b))
            tb.append(timed(b))
            ta.append(timed(a))
        sa, sb = statistics.median(ta), statistics.median(tb)
        ratios.append(sa / sb)
        s_times.append(sa)
        m_times.append(sb)
        print(f"{k:3d} {1e3 * sa:12.1f} {1e3 * sb:10.1f} {sa / sb:6.2f}  {arch}")
    med = statistics.median(ratios)
    print(f"\nmedian step ratio supernet/static over {args.archs} archs: {med:.3f}x "
          f"(IQR {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f}; target <= 1.2x)")
    print(f"images/s: supernet {args.batch / statistics.median(s_times):.0f}, static {args.batch / statistics.median(m_times):.0f} "
          f"(median step {1e3 * statistics.median(s_times):.1f} ms vs {1e3 * statistics.median(m_times):.1f} ms)")


if __name__ == "__main__":
    main()
