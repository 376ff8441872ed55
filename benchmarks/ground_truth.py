"""Ground truth for ranking: networks of the space retrained from scratch, committed as JSON.

A supernet is judged by how well its one-shot scores rank networks that were
trained on their own (Kendall tau; SPOS section 4, FairNAS section 4). This
script trains that reference set once, with the one recipe of
``search.retrain``, and writes ``benchmarks/ground_truth.json``:

* every preset of the registry (torchvision's ShuffleNetV2 x0.5-x2.0 and
  ShuffleNet V1 g=1,2,3,4,8, as ``list_presets()`` gives them);
* ``--sampled`` networks drawn from the space to span the unit mix (all-V1,
  all-V2, mixed, in turn), both stems (``--small-stem`` of them with the
  small-input stem) and the FLOPs range (slot k takes the network of its
  family nearest the ((k + 0.5) / n)-quantile of FLOPs of its stem's pool);
* ``--repeat`` of them retrained again with seed ``seed + 1`` (the truth's own
  noise: the spread between two seeds, next to the gaps the ranking has to tell).

Each network records its arch string, params, MFLOPs, the latency of the
static model (batch 1, eager, channels_last, 1 thread, all networks measured
interleaved in one session) and one entry per seed with the recipe, the final
and best validation top-1 (%) and the per-epoch history. The data spec, the
split rule and sizes are recorded once at the top; :func:`load_truth` checks
all of it and refuses unknown keys.

Resumable: every retrain keeps a checkpoint in ``--work`` and the JSON is
rewritten (atomically) after each network, so running the same command again
continues where it stopped. Changing a flag that changes the truth (data,
epochs, the network list) is refused instead of mixing two truths.

    python benchmarks/ground_truth.py                      # the committed truth (hours on 2 cores)
    python benchmarks/ground_truth.py --per-class 60 --epochs 1 --sampled 3 --small-stem 1 --repeat 1 \\
        --out /tmp/gt.json --work /tmp/gt                  # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["FORMAT", "load_truth", "validate_truth", "select_sampled", "sample_family", "main"]

FORMAT = "shufflenas.ground_truth/1"
FAMILIES = ("v1", "v2", "mixed")
_TOP = {"format", "data", "latency", "networks", "settings"}
_NET = {"name", "role", "arch", "family", "params", "mflops", "latency_ms", "latency_iqr_ms", "runs"}
_RUN = {"seed", "recipe", "val_acc", "best_val_acc", "train_seconds", "history"}
_DATA = {"spec", "split", "val_fraction", "image_size", "num_classes", "train", "val"}


# ----------------------------------------------------------------------------- file format
def validate_truth(d: Any, where: str = "ground truth") -> dict[str, Any]:
    """Check a ground-truth mapping; ``ValueError`` names the offending key and entry.

    Raises:
        ValueError: wrong format tag, unknown or missing keys at any level, a run
            without its recipe, a network listed twice, accuracies outside [0, 100].
    """
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    if d.get("format") != FORMAT:
        raise ValueError(f"{where}: format {d.get('format')!r} is not {FORMAT!r}")
    _check_keys(d, _TOP, _TOP, where)
    _check_keys(d["data"], _DATA, _DATA, f"{where}: data")
    if not isinstance(d["networks"], list):
        raise ValueError(f"{where}: networks: expected a list")
    seen: set[str] = set()
    for k, n in enumerate(d["networks"]):
        w = f"{where}: networks[{k}]"
        _check_keys(n, _NET, _NET, w)
        if n["role"] not in ("preset", "sampled"):
            raise ValueError(f"{w}.role: expected 'preset' or 'sampled', got {n['role']!r}")
        if n["arch"] in seen:
            raise ValueError(f"{w}.arch: {n['arch']!r} is listed twice")
        seen.add(n["arch"])
        if not isinstance(n["runs"], list):
            raise ValueError(f"{w}.runs: expected a list")
        for j, r in enumerate(n["runs"]):
            wr = f"{w}.runs[{j}]"
            if isinstance(r, dict) and "recipe" not in r:
                raise ValueError(f"{wr}: missing recipe (every run records the recipe it was trained with)")
            _check_keys(r, _RUN, _RUN, wr)
            for key in ("val_acc", "best_val_acc"):
                v = r[key]
                if not isinstance(v, (int, float)) or not 0 <= v <= 100:
                    raise ValueError(f"{wr}.{key}: expected a top-1 in [0, 100] %, got {v!r}")
    return d


def _check_keys(d: Any, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {extra}; allowed {sorted(allowed)}")
    missing = sorted(required - set(d))
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")


def load_truth(path: str | Path) -> dict[str, Any]:
    """Read and validate a ground-truth JSON file (see :func:`validate_truth`)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"ground truth: {str(p)!r} does not exist (python benchmarks/ground_truth.py writes it)")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"ground truth: {str(p)!r} is not valid JSON ({e})") from None
    return validate_truth(d, f"ground truth {p}")


def truth_accuracy(net: dict[str, Any]) -> float:
    """The network's retrained top-1 (%): the mean final validation top-1 over its seeds."""
    return float(np.mean([r["val_acc"] for r in net["runs"]]))


def _write_json(d: dict[str, Any], path: Path) -> None:
    from nas_common import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(d, indent=1) + "\n"))


# ----------------------------------------------------------------------------- selection
def sample_family(space, rng: np.random.Generator, family: str, *, num_classes: int, small_input: bool):
    """One architecture of ``space`` whose blocks are all of ``family`` (``v1``/``v2``) wherever
    that unit type is buildable (a V1 downsampling unit cannot narrow the network: there the
    V2 unit is kept), or a uniform SPOS sample for ``mixed``."""
    from search_space import Arch, Site, Stage

    a = space.sample(rng, num_classes=num_classes, small_input=small_input)
    if family == "mixed":
        return a
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {list(FAMILIES)}, got {family!r}")
    stages, cin = [], a.stem
    for i, st in enumerate(a.stages):
        blocks = []
        for j in range(st.depth):
            valid = space.valid_blocks(Site(i, j, cin if j == 0 else st.channels, st.channels))
            fam = [b for b in valid if b.unit == family] or list(valid)
            blocks.append(fam[int(rng.integers(len(fam)))])
        stages.append(Stage(st.channels, tuple(blocks)))
        cin = st.channels
    return Arch(stem=a.stem, stages=tuple(stages), last_conv=a.last_conv, num_classes=num_classes,
                small_input=a.small_input)


def family_of(arch) -> str:
    units = {b.unit for st in arch.stages for b in st.blocks}
    return units.pop() if len(units) == 1 else "mixed"


def select_sampled(space, n: int, n_small: int, *, num_classes: int, image_size: int, seed: int,
                   pool: int = 300, exclude: set[str] = frozenset(),
                   small_max_mflops: float | None = None) -> list[tuple[str, Any]]:
    """``n`` sampled networks (``n_small`` with the small-input stem) spanning unit mix and FLOPs.

    ``small_max_mflops`` caps the small-stem pool (at ``image_size``): the small stem
    keeps 4x the spatial size of the ImageNet stem, so its large networks cost
    minutes per epoch here and lie far outside any budget the search meets.
    Returns ``[(family, arch), ...]``; deterministic in ``seed``.
    """
    from search_space import count_flops

    if not 0 <= n_small <= n:
        raise ValueError(f"small_stem: must lie in [0, {n}], got {n_small}")
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Any]] = []
    taken = set(exclude)
    for small, k in ((False, n - n_small), (True, n_small)):
        if k == 0:
            continue
        if small not in space.small_input:
            raise ValueError(f"small_stem: the space {space.name!r} has no small-input stem")
        cap = math.inf if not small or small_max_mflops is None else small_max_mflops * 1e6
        cands: dict[str, list] = {}
        for f in FAMILIES:
            cands[f] = []
            for _ in range(100 * pool):
                a = sample_family(space, rng, f, num_classes=num_classes, small_input=small)
                if count_flops(a, image_size) <= cap:
                    cands[f].append(a)
                    if len(cands[f]) == pool:
                        break
            if not cands[f]:
                raise ValueError(f"small_max_mflops: no {f} network of the space under {small_max_mflops} MFLOPs")
        flops = {f: np.array([count_flops(a, image_size) for a in cands[f]]) for f in FAMILIES}
        every = np.concatenate(list(flops.values()))
        for slot in range(k):
            f = FAMILIES[slot % len(FAMILIES)]
            target = np.quantile(every, (slot + 0.5) / k)
            for i in np.argsort(np.abs(flops[f] - target)):
                a = cands[f][int(i)]
                if str(a) not in taken:
                    taken.add(str(a))
                    out.append((family_of(a), a))
                    break
    return out


# ----------------------------------------------------------------------------- the run
def _networks(args, space, data) -> list[dict[str, Any]]:
    from search_space import count_flops, count_params, get_preset, list_presets

    nets = []
    for name in list_presets():
        a = get_preset(name, data.num_classes)
        nets.append({"name": name, "role": "preset", "arch": a})
    cap = args.small_max_mflops
    if cap is None:  # default: the cost of torchvision's x1.0 network with the small stem
        cap = count_flops(get_preset("shufflenet_v2_x1_0", data.num_classes).replace(small_input=True),
                          data.image_size) / 1e6
    sampled = select_sampled(space, args.sampled, args.small_stem, num_classes=data.num_classes,
                             image_size=data.image_size, seed=args.seed, exclude={str(n["arch"]) for n in nets},
                             small_max_mflops=cap)
    for k, (fam, a) in enumerate(sampled):
        nets.append({"name": f"sampled{k:02d}_{fam}{'_small' if a.small_input else ''}", "role": "sampled", "arch": a})
    for n in nets:
        a = n["arch"]
        n.update(family=family_of(a), params=count_params(a), mflops=count_flops(a, data.image_size) / 1e6)
    return nets


def _repeat_names(nets: list[dict[str, Any]], k: int) -> list[str]:
    """The networks retrained with a second seed: the strongest-known preset of each unit family
    (shufflenet_v1_g1, shufflenet_v2_x1_0), then sampled ones in order."""
    order = [n["name"] for n in nets if n["name"] in ("shufflenet_v1_g1", "shufflenet_v2_x1_0")]
    order += [n["name"] for n in nets if n["role"] == "sampled"]
    return order[:k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="../shared/data/cifar10/train", help="ImageFolder root")
    ap.add_argument("--per-class", type=int, default=1500, help="images per class taken from ROOT")
    ap.add_argument("--val-fraction", type=float, default=0.35, help="hash-based held-out share per class")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--sampled", type=int, default=15, help="networks sampled from the space")
    ap.add_argument("--small-stem", type=int, default=4, help="how many sampled networks use the small stem")
    ap.add_argument("--small-max-mflops", type=float, default=None,
                    help="cap on the small-stem networks' MFLOPs (default: shufflenet_v2_x1_0 with the small stem)")
    ap.add_argument("--repeat", type=int, default=3, help="networks retrained with a second seed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("ground_truth.json")))
    ap.add_argument("--work", default="results/ground_truth", help="checkpoints of the retrains")
    ap.add_argument("--remeasure", action="store_true",
                    help="measure every network's latency again (interleaved) on a quiet machine, keep the retrains")
    ap.add_argument("--stem", choices=["all", "imagenet", "small"], default="all",
                    help="retrain only the networks with this stem in this invocation (the file keeps all; "
                         "run such invocations one after the other, never two at once: each rewrites the file)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=sys.stderr)
        return 130


def _run(args) -> int:
    import torch

    from nas_data import load_data
    from search.latency import Conditions, measure_many
    from search.retrain import retrain_recipe
    from search_space import SearchSpace
    from supernet import ShuffleNet
    from supernet.train import train_model

    if args.epochs < 1 or args.per_class < 1 or args.sampled < 0 or args.repeat < 0:
        raise ValueError("epochs and per-class must be >= 1; sampled and repeat >= 0")
    root = Path(args.root)
    if not root.is_dir():
        raise ValueError(f"root: {str(root)!r} is not an ImageFolder directory")
    spec = f"imagefolder:{root}@{args.per_class}"
    data = load_data(spec, val_fraction=args.val_fraction)
    space = SearchSpace.load("default")
    nets = _networks(args, space, data)
    out, work = Path(args.out), Path(args.work)
    data_rec = {"spec": spec, "split": "per image: sha1('<class>/<file name>') / 2**64 < val_fraction "
                "(nas_data, imagefolder)", "val_fraction": args.val_fraction, "image_size": data.image_size,
                "num_classes": data.num_classes, "train": int(data.train_y.numel()), "val": int(data.val_y.numel())}
    settings = {k: getattr(args, k) for k in ("per_class", "val_fraction", "epochs", "sampled", "small_stem",
                                              "small_max_mflops", "repeat", "seed")}
    if out.is_file():
        truth = load_truth(out)
        # the split's text names the module that drew it, which moved (supernet.data -> nas_data); the rule did not
        differ = sorted(k for k in set(truth["data"]) | set(data_rec) if k != "split"
                        and truth["data"].get(k) != data_rec.get(k))
        differ += sorted(k for k in set(truth["settings"]) | set(settings)
                         if truth["settings"].get(k) != settings.get(k))
        if differ:
            raise ValueError(f"out: {out} holds a truth made with another {', '.join(differ)} "
                             f"({truth['settings']}); use another --out or the same flags")
        if [n["arch"] for n in truth["networks"]] != [str(n["arch"]) for n in nets]:
            raise ValueError(f"out: {out} lists other networks; use another --out")
    else:
        truth = {"format": FORMAT, "settings": settings, "data": data_rec, "latency": {}, "networks": [
            {"name": n["name"], "role": n["role"], "arch": str(n["arch"]), "family": n["family"],
             "params": n["params"], "mflops": round(n["mflops"], 4), "latency_ms": None, "latency_iqr_ms": None,
             "runs": []} for n in nets]}
    print(f"ground truth: {len(nets)} networks on {spec} ({data_rec['train']} train / {data_rec['val']} val, "
          f"{data.image_size}x{data.image_size}), {args.epochs} epochs, {args.repeat} with a second seed -> {out}")
    if args.remeasure or any(n["latency_ms"] is None for n in truth["networks"]):
        t = time.perf_counter()
        ms = measure_many([ShuffleNet(n["arch"]) for n in nets], Conditions(data.task().input_shape(), device="cpu"),
                          rounds=10, per_round=10)
        for n, m in zip(truth["networks"], ms):
            n["latency_ms"], n["latency_iqr_ms"] = round(m.median_ms, 4), round(m.iqr_ms, 4)
        env = dict(ms[0].env)
        env.pop("stable", None)
        truth["latency"] = {**env, "protocol": "search.latency.measure_many: 10 interleaved rounds of 10 runs, "
                            "20 re-warm runs per turn; median and IQR"}
        _write_json(truth, out)
        print(f"latency of {len(nets)} networks measured interleaved in {time.perf_counter() - t:.0f} s")
    jobs = [(n, args.seed) for n in truth["networks"]]
    jobs += [(n, args.seed + 1) for n in truth["networks"] if n["name"] in _repeat_names(truth["networks"], args.repeat)]
    # the ImageNet-stem retrains (minutes each) before the small-stem ones (4-10x longer), so an
    # interrupted run holds the most networks; --stem trains one kind only
    jobs.sort(key=lambda j: ":small" in j[0]["arch"])
    if args.stem != "all":
        jobs = [j for j in jobs if (":small" in j[0]["arch"]) == (args.stem == "small")]
    for k, (n, seed) in enumerate(jobs):
        if any(r["seed"] == seed for r in n["runs"]):
            continue
        recipe = retrain_recipe(args.epochs, seed, 0.05, 128)
        torch.manual_seed(seed)
        model = ShuffleNet(n["arch"])
        t = time.perf_counter()
        print(f"[{k + 1}/{len(jobs)}] {n['name']} seed {seed}: {n['arch']} ({n['mflops']:.1f} MFLOPs)", flush=True)
        hist = train_model(model, data, recipe, device="cpu", progress=not args.quiet, desc=n["name"],
                           checkpoint=work / f"{n['name']}-s{seed}" / "checkpoint.pt", resume=True,
                           config={"arch": n["arch"], "init": "scratch"})
        n["runs"].append({"seed": seed, "recipe": asdict(recipe), "val_acc": round(hist[-1]["val_acc"], 4),
                          "best_val_acc": round(max(h["val_acc"] for h in hist), 4),
                          "train_seconds": round(time.perf_counter() - t, 1), "history": hist})
        n["runs"].sort(key=lambda r: r["seed"])
        _write_json(validate_truth(truth), out)
        print(f"    val top-1 {hist[-1]['val_acc']:.2f}% in {time.perf_counter() - t:.0f} s", flush=True)
    _print_summary(truth)
    return 0


def _print_summary(truth: dict[str, Any]) -> None:
    print(f"\n{'name':<28} {'family':<6} {'MFLOPs':>7} {'ms':>6}  top-1 per seed")
    for n in truth["networks"]:
        accs = ", ".join(f"s{r['seed']} {r['val_acc']:.2f}%" for r in n["runs"])
        print(f"{n['name']:<28} {n['family']:<6} {n['mflops']:7.1f} {n['latency_ms']:6.3f}  {accs}")
    pairs = [n for n in truth["networks"] if len(n["runs"]) >= 2]
    if pairs:
        d = [abs(n["runs"][1]["val_acc"] - n["runs"][0]["val_acc"]) for n in pairs]
        accs = sorted(truth_accuracy(n) for n in truth["networks"] if n["runs"])
        gaps = np.diff(accs)
        print(f"seed spread |s1 - s0| over {len(d)} networks: mean {np.mean(d):.2f}, max {max(d):.2f} pts; "
              f"median gap between neighbours in the ranking {np.median(gaps):.2f} pts, "
              f"range {accs[-1] - accs[0]:.2f} pts")


if __name__ == "__main__":
    raise SystemExit(main())
