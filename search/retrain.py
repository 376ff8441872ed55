"""``python -m search.retrain``: train a found architecture (or a preset) with one standard recipe.

Targets: a run folder (its exported ``arch.yaml``; ``--init inherited`` starts
from its ``model.pt``: the weights inherited from the supernet, fine-tuned for a
few epochs when the run's final pick trained, as ``search.run`` does by default;
refused when the run shipped its from-scratch weights, ``meta["weights"] ==
"scratch"``), an arch string, an arch
YAML file, or ``--preset NAME``. Every target trains with the same recipe
(SGD with momentum and nesterov, linear warm-up then cosine, label smoothing,
no weight decay on BN/bias, random-crop/flip augmentation; channels_last on
CPU, AMP on GPU), so a preset and a searched network compare fairly. A
checkpoint is written after every epoch (``--resume`` continues it); the
output folder gets ``metrics.json`` (config, recipe, per-epoch history) and
``curve.png``; a run folder's ``report.md`` gets the retrained accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

__all__ = ["main", "resolve_target", "retrain_recipe"]

log = logging.getLogger("search.retrain")


def retrain_recipe(epochs: int, seed: int, lr: float, batch_size: int):
    from nas_training.engine import Recipe

    return Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4,
                  label_smoothing=0.1, warmup_epochs=min(2, max(epochs - 1, 0)), seed=seed)


def resolve_target(target: str | None, preset: str | None, space_name: str, num_classes: int | None):
    """Return ``(arch, run_dir or None, name, space)``; ``ValueError`` names what is wrong."""
    from search_space import Arch, SearchSpace, get_preset

    if (target is None) == (preset is None):
        raise ValueError("target: give exactly one of RUN_DIR / ARCH / ARCH_YAML or --preset NAME")
    if preset is not None:
        space = SearchSpace.load(space_name)
        return get_preset(preset, num_classes or 10), None, preset, space
    p = Path(target)
    if p.is_dir():
        if not (p / "run.yaml").is_file() or not (p / "arch.yaml").is_file():
            raise ValueError(f"target: {str(p)!r} is not a finished ShuffleNAS run folder (no run.yaml / arch.yaml)")
        run = yaml.safe_load((p / "run.yaml").read_text())
        space = SearchSpace.from_dict(run["space"])
        arch = Arch.from_yaml((p / "arch.yaml").read_text())
        return space.validate(arch), p, p.resolve().name, space
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ValueError(f"target: {str(p)!r} does not exist")
        arch = Arch.from_yaml(p.read_text())
    elif "|" in target:
        arch = Arch.parse(target)
    else:
        raise ValueError(f"target: no run folder or file {target!r} (nor is it an arch string)")
    space = SearchSpace.load(space_name)
    try:
        space.validate(arch)
    except ValueError as e:
        raise ValueError(f"arch not in space {space.name!r}: {e}") from None
    return arch, None, "arch", space


def plot_curve(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(ep, [h["train_acc"] for h in history], label="train top-1 (augmented)")
    ax.plot(ep, [h["val_acc"] for h in history], label="validation top-1")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 (%)")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["train_loss"] for h in history], c="tab:gray", ls=":", label="train loss")
    ax2.set_ylabel("loss")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.retrain", description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", help="RUN_DIR, an arch string or an arch YAML file")
    ap.add_argument("--preset", default=None, help="train a preset instead (e.g. shufflenet_v2_x1_0)")
    ap.add_argument("--init", choices=["scratch", "inherited"], default="scratch")
    ap.add_argument("--data", default=None, help="default: the run's data, else digits")
    ap.add_argument("--space", default="default", help="space to check an arch string/YAML or preset against")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="default: RUN_DIR/retrain-<init>, else results/retrain-<name>")
    ap.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    ap.add_argument("--train-workers", type=int, default=1, metavar="N", help="train on N Ray Train workers, data-parallel (the batch size stays the global batch; BatchNorm synchronised); default 1: in this process")
    ap.add_argument("--address", default=None, help="Ray cluster of the workers (ray start --head); default a local one")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _retrain(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with the same command and --resume", file=sys.stderr)
        return 130


def _retrain(args: argparse.Namespace) -> int:
    from nas_data import load_data
    from search.export import export_model, load_model
    from search_space import count_flops, count_params
    from supernet import ShuffleNet
    from supernet.train import train_model

    if args.epochs < 1:
        raise ValueError(f"epochs: must be >= 1, got {args.epochs}")
    from nas_common import resolve_device
    from nas_training.cluster import check_workers

    check_workers(args.train_workers, address=args.address, use_gpu=resolve_device(args.device).type == "cuda")
    run_data = None
    if args.target and Path(args.target).is_dir() and (Path(args.target) / "run.yaml").is_file():
        run_data = yaml.safe_load((Path(args.target) / "run.yaml").read_text())["config"]["data"]
    data = load_data(args.data or run_data or "digits")
    arch, run_dir, name, _ = resolve_target(args.target, args.preset, args.space, data.num_classes)
    if arch.num_classes != data.num_classes:
        raise ValueError(f"num_classes: the arch has {arch.num_classes} classes, {data.spec} has {data.num_classes}")
    if args.init == "inherited":
        if run_dir is None:
            raise ValueError("init: 'inherited' needs a run folder (its model.pt holds the inherited, fine-tuned weights)")
        model = load_model(run_dir)
        if model.meta.get("weights") == "scratch":
            raise ValueError(f"init: {run_dir}/model.pt ships the winner's from-scratch weights (its final pick's "
                             f"training scored above its fine-tune), not inherited ones; retrain with --init scratch")
    else:
        model = ShuffleNet(arch)
    out = Path(args.out) if args.out else (run_dir / f"retrain-{args.init}" if run_dir else
                                             Path("results") / f"retrain-{name}-{args.init}")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not args.resume:
        raise ValueError(f"out: {ckpt} exists; pass --resume to continue it or choose another --out")
    recipe = retrain_recipe(args.epochs, args.seed, args.lr, args.batch_size)
    config = {"arch": str(arch), "init": args.init}
    history = train_model(model, data, recipe, device=args.device, progress=not args.quiet, desc=f"retrain {name}",
                          checkpoint=ckpt, resume=args.resume, config=config, workers=args.train_workers,
                          address=args.address)
    final = history[-1]
    metrics: dict[str, Any] = {"arch": str(arch), "name": name, "init": args.init, "data": data.describe(),
                               "recipe": asdict(recipe), "params": count_params(arch),
                               "mflops": count_flops(arch, data.image_size) / 1e6, "val_acc": final["val_acc"],
                               "best_val_acc": max(h["val_acc"] for h in history), "history": history}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_curve(history, out / "curve.png", f"{name} ({args.init}) on {data.spec}: {final['val_acc']:.2f}% val top-1")
    export_model(model, out, input_size=data.image_size, meta=metrics, onnx=False, data=data)
    if run_dir is not None and (run_dir / "report.md").is_file():
        with open(run_dir / "report.md", "a") as f:
            f.write(f"\n## Retrained ({args.init}, {recipe.epochs} epochs, same recipe as presets)\n\n"
                    f"validation top-1 {final['val_acc']:.2f}% (best {metrics['best_val_acc']:.2f}%), "
                    f"`{out.name}/metrics.json`, `{out.name}/curve.png`\n")
    print(f"retrained {name} ({args.init}): val top-1 {final['val_acc']:.2f}% after {recipe.epochs} epochs; {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
