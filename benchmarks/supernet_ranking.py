"""Which supernet ranks the retrained networks best? Kendall tau against the committed ground truth.

``benchmarks/ground_truth.json`` (written by ``benchmarks/ground_truth.py``)
holds networks of the space retrained from scratch: the 9 presets and sampled
networks spanning unit mix, stems and FLOPs, with the data spec they were
trained on. This script trains a supernet on the same data with one variant
(``--sampler``, ``--update``, ``--conv0-head``, ``--v1-sharing``, ``--sandwich``,
``--small-input``), scores every network of the
truth with inherited weights + BN recalibration, and prints Kendall tau /
Spearman rho against the retrained top-1 (mean over seeds): overall, within
the presets and within the sampled networks. ``--supernet PATH`` scores an
existing checkpoint instead of training one.

    python benchmarks/supernet_ranking.py --epochs 40                      # uniform SPOS
    python benchmarks/supernet_ranking.py --epochs 40 --update path        # path-only optimizer update
    python benchmarks/supernet_ranking.py --epochs 40 --sampler fair       # FairNAS strict fairness
    python benchmarks/supernet_ranking.py --epochs 40 --v1-sharing labels  # V1 hidden channels keep their weights
    python benchmarks/supernet_ranking.py --epochs 10 --sandwich 2         # BigNAS sandwich rule (~4 paths a step)
    python benchmarks/supernet_ranking.py --epochs 40 --curve-every 10 --finetune-epochs 2   # tau vs epochs; fine-tuned tau

Each run writes ``results/ranking/<variant>.json`` (per network scores, tau per
checkpoint) and, with ``--curve-every``, a tau-vs-epochs plot beside it.

``--ensemble A.json B.json ...`` trains nothing: it reads result files of runs
against the same truth (e.g. one variant with ``--seed 0, 1, 2``) and prints
each run's tau, their mean and spread (the seed noise of one run's tau), and
the tau of the networks' mean inherited score over the runs (an ensemble of
independently trained supernets, at the runs' summed cost); the same for the
fine-tuned scores when every run has them (``--finetune-epochs``, one schedule).

    python benchmarks/supernet_ranking.py --ensemble results/ranking/fair_full_shared_v1labels_stemno_e20{,_seed1,_seed2}.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", default=str(Path(__file__).with_name("ground_truth.json")),
                    help="ground-truth JSON (benchmarks/ground_truth.py)")
    ap.add_argument("--sampler", default="fair", choices=["uniform", "fair"])
    ap.add_argument("--update", default="full", choices=["full", "path"])
    ap.add_argument("--supernet", default=None, help="score this supernet checkpoint instead of training one")
    ap.add_argument("--conv0-head", default="shared", choices=["shared", "per_width"],
                    help="classifier of conv0 networks (SuperNet conv0_head)")
    ap.add_argument("--v1-sharing", default="labels", choices=["dense", "labels", "per_group"],
                    help="how V1 group counts share weights (SuperNet v1_sharing)")
    ap.add_argument("--sandwich", type=int, default=0, metavar="N",
                    help="BigNAS sandwich rule with N sampled paths per step (0 = single path)")
    ap.add_argument("--small-input", choices=["no", "yes", "both"], default=None,
                    help="stem variant of the supernet's paths (and of the truth networks scored): ImageNet stem "
                         "(no, the default: the cheapest), small-input stem (yes) or both (the search's setting, "
                         "~5x the compute); with --supernet, the checkpoint's")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--curve-every", type=int, default=0, metavar="K",
                    help="also score the supernet every K epochs: the tau-vs-epochs curve (JSON + PNG)")
    ap.add_argument("--finetune-epochs", type=int, default=0, metavar="E",
                    help="also fine-tune every network E epochs from its inherited weights (search.finetune, the "
                         "final pick's step) and rank by that")
    ap.add_argument("--few-shot-epochs", type=int, default=0, metavar="E",
                    help="few-shot NAS by unit family: two sub-supernets (mostly-V1 / mostly-V2 paths) start from "
                         "the trained supernet and train E more epochs each; every network is scored by its family's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="checkpoint path (default results/ranking/<variant>.pt); "
                                                  "with --ensemble, the JSON to write")
    ap.add_argument("--ensemble", nargs="+", default=None, metavar="RESULT",
                    help="train nothing: combine the result JSONs of runs against the same truth (see above)")
    args = ap.parse_args()
    if args.ensemble:
        try:
            ensemble(args.ensemble, args.out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return

    import torch
    from ground_truth import load_truth, truth_accuracy

    import supernet.train as st
    from nas_data import load_data
    from nas_training.engine import Recipe
    from search.evaluate import EvalConfig, calibration_batches, evaluate_arch
    from search_space import Arch, SearchSpace
    from supernet.sampling import FAMILIES, unit_family

    try:
        truth = load_truth(args.truth)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    rows = [dict(n, retrained=truth_accuracy(n)) for n in truth["networks"] if n["runs"]]
    loaded = st.load_supernet(args.supernet, device="cpu") if args.supernet else None
    if args.small_input is None:
        args.small_input = ({False: "no", True: "yes", None: "both"}[loaded[1]["config"]["small_input"]]
                            if loaded else "no")
    small = {"no": False, "yes": True, "both": None}[args.small_input]
    if small is not None:
        skipped = [r["name"] for r in rows if Arch.parse(r["arch"]).small_input is not small]
        rows = [r for r in rows if Arch.parse(r["arch"]).small_input is small]
        if skipped:
            print(f"note: {len(skipped)} networks with the other stem left out (the supernet trains "
                  f"--small-input {args.small_input} paths; 'both' scores all): {', '.join(skipped)}")
    data = load_data(truth["data"]["spec"], val_fraction=truth["data"]["val_fraction"])
    space = SearchSpace.load("default")
    cfg = EvalConfig()
    calib = calibration_batches(data, cfg, torch.device("cpu"), True)

    def score(sup, key: str = "inherited") -> dict:
        sups = sup if isinstance(sup, dict) else None
        for r in rows:
            a = Arch.parse(r["arch"])
            net = sups[unit_family(a)] if sups else sup
            net.eval()
            r[key], _ = evaluate_arch(net, a, data, cfg, device="cpu", calib=calib)
        return {name: corr(sel, key) for name, sel in _groups(rows).items()}

    if loaded:
        sup, state = loaded
        ident = hashlib.sha1(str(Path(args.supernet).resolve()).encode()).hexdigest()[:8]
        label, variant = f"checkpoint {args.supernet}", f"{Path(args.supernet).stem}-{ident}-e{state['epoch']}"
        supernet_id = f"{Path(args.supernet).resolve()}@{state['epoch']}"
        curve = [(state["epoch"], score(sup))]
    else:
        recipe = Recipe(epochs=args.epochs, seed=args.seed)
        variant = (f"{args.sampler}_{args.update}_{args.conv0_head}_v1{args.v1_sharing}"
                   f"{f'_sandwich{args.sandwich}' if args.sandwich else ''}_stem{args.small_input}"
                   f"_e{args.epochs}{f'_seed{args.seed}' if args.seed else ''}")
        ckpt = Path(args.out or f"results/ranking/{variant}.pt")
        marks = sorted({*range(args.curve_every, args.epochs, args.curve_every), args.epochs} if args.curve_every
                       else {args.epochs})
        curve = []
        for stop in marks:  # training resumes exactly, so stopping to score changes nothing
            at = ckpt.with_name(f"{ckpt.stem}-at{stop}.pt")  # the supernet as it was at this mark, for re-runs
            if at.is_file():
                sup, state = st.load_supernet(at, device="cpu")
            else:
                done = torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] if ckpt.is_file() else 0
                if done > stop:
                    raise SystemExit(f"error: {ckpt} is at epoch {done}, past the curve mark {stop} (no {at.name}); "
                                     f"use a new --out for the curve")
                sup, state = st.train_supernet(space, data, recipe, checkpoint=ckpt, resume=True, device="cpu",
                                               progress=False, conv0_head=args.conv0_head, sampler=args.sampler,
                                               update=args.update, small_input=small, v1_sharing=args.v1_sharing,
                                               sandwich=args.sandwich, stop_after_epoch=stop)
                _snapshot(ckpt, at)
            curve.append((stop, score(sup)))
            print(f"epoch {stop:3d}: " + "  ".join(f"{k} tau {v['tau']:.3f}" for k, v in curve[-1][1].items()), flush=True)
        label = (f"{variant}, {args.epochs} epochs in {state['train_seconds']:.0f} s, last train acc "
                 f"{state['history'][-1]['train_acc']:.1f}%")
        supernet_id = f"{ckpt.resolve()}@{state['epoch']}"
    few_shot = {}
    if args.few_shot_epochs:
        if args.supernet:
            raise SystemExit("error: --few-shot-epochs needs a supernet trained here (not --supernet)")
        subs = {}
        for fam in FAMILIES:
            subs[fam], _ = st.train_supernet(
                space, data, Recipe(epochs=args.few_shot_epochs, seed=args.seed, lr=0.02, warmup_epochs=0),
                checkpoint=ckpt.with_name(f"{ckpt.stem}-fewshot-{fam}.pt"), resume=True, device="cpu", progress=False,
                conv0_head=args.conv0_head, sampler="uniform", update=args.update, small_input=small,
                v1_sharing=args.v1_sharing, sandwich=args.sandwich, family=fam, init=ckpt)
        few_shot = score(subs, "few_shot")
    finetuned = {}
    if args.finetune_epochs:
        from search.finetune import FinetuneConfig, finetune_step

        archs = [Arch.parse(r["arch"]) for r in rows]
        step, _ = finetune_step(sup, archs, data, FinetuneConfig(top=len(rows), epochs=args.finetune_epochs),
                                device="cpu", seed=args.seed, supernet_id=supernet_id,
                                ckpt_dir=Path(args.out or f"results/ranking/{variant}").with_suffix("") / "finetune")
        for k, r in enumerate(rows):
            for e in range(1, args.finetune_epochs + 1):
                r[f"finetuned_e{e}"] = step(k, e)
        for e in range(1, args.finetune_epochs + 1):
            finetuned[e] = {name: corr(sel, f"finetuned_e{e}") for name, sel in _groups(rows).items()}
    print(f"supernet: {label}\n{'name':<22} {'retrained':>9} {'inherited':>9}"
          + (f" {'fine-tuned':>10}" if finetuned else ""))
    for r in rows:
        print(f"{r['name']:<22} {r['retrained']:8.2f}% {r['inherited']:8.2f}%"
              + (f" {r[f'finetuned_e{args.finetune_epochs}']:9.2f}%" if finetuned else ""))
    for name, c in curve[-1][1].items():
        print(f"{name:<10} n={c['n']:2d}  Kendall tau {c['tau']:6.3f}  Spearman rho {c['rho']:6.3f}")
    if few_shot:
        print(f"few-shot by unit family (+{args.few_shot_epochs} epochs per sub-supernet): "
              + "  ".join(f"{name} tau {c['tau']:.3f} (rho {c['rho']:.3f})" for name, c in few_shot.items()))
    for e, cs in finetuned.items():
        print(f"fine-tuned {e} epoch(s) from inherited weights: "
              + "  ".join(f"{name} tau {c['tau']:.3f} (rho {c['rho']:.3f})" for name, c in cs.items()))
    out = Path(args.out).with_suffix(".json") if args.out and not args.supernet else Path("results/ranking") / f"{variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"variant": variant, "args": vars(args), "truth": args.truth, "label": label,
                               "curve": [{"epoch": e, **c} for e, c in curve],
                               "finetuned": {str(e): c for e, c in finetuned.items()}, "few_shot": few_shot,
                               "networks": [{k: v for k, v in r.items()
                                             if k in ("name", "role", "arch", "retrained", "inherited", "few_shot")
                                             or k.startswith("finetuned_e")} for r in rows]}, indent=1))
    print(f"wrote {out}")
    if len(curve) > 1:
        _plot(curve, out.with_suffix(".png"), variant)


GROUPS = ("all", "presets", "sampled")


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The networks tau is reported over: all, the presets, the sampled ones (``GROUPS``)."""
    return {"all": rows, "presets": [r for r in rows if r["role"] == "preset"],
            "sampled": [r for r in rows if r["role"] != "preset"]}


def ensemble(paths: list[str], out: str | None = None) -> dict:
    """Per-run tau, its mean and spread over the runs, and the tau of the mean score.

    Done for the inherited top-1 (``runs``, ``tau_over_runs``, ``ensemble``) and, when every
    run has it and all fine-tuned on the same schedule (``--finetune-epochs``), for the top-1
    after each fine-tune epoch E (``finetuned[E]``, the same three keys).

    Raises:
        ValueError: fewer than 2 files, an unreadable file, or runs scored on other networks or truths.
    """
    if len(paths) < 2:
        raise ValueError(f"--ensemble: give at least 2 result files, got {len(paths)}")
    runs = []
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
            nets = {n["name"]: n for n in d["networks"]}
            runs.append((p, d, nets))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"--ensemble: {p} is not a supernet_ranking result ({type(e).__name__}: {e})") from None
    first = runs[0][2]
    for p, _, nets in runs[1:]:
        if {k: (n["arch"], n["retrained"]) for k, n in nets.items()} != \
                {k: (n["arch"], n["retrained"]) for k, n in first.items()}:
            raise ValueError(f"--ensemble: {p} scored other networks or another truth than {runs[0][0]}")
    shared = set.intersection(*({k for k in n if k.startswith("finetuned_e")} for _, _, nets in runs
                                for n in nets.values()))
    schedules = {(d.get("args") or {}).get("finetune_epochs") for _, d, _ in runs}
    if shared and len(schedules) > 1:  # epoch E of a shorter cosine schedule is another estimate
        print(f"note: fine-tuned scores not combined: the runs fine-tuned on schedules of {sorted(schedules, key=str)} "
              f"epochs (--finetune-epochs differs)")
        shared = set()
    result = _ensemble_key(runs, "inherited", "inherited score")
    finetuned = {}
    for key in sorted(shared, key=lambda k: int(k.removeprefix("finetuned_e"))):
        e = key.removeprefix("finetuned_e")
        finetuned[e] = _ensemble_key(runs, key, f"score fine-tuned {e} epoch(s)")
    result["finetuned"] = {e: {k: v for k, v in r.items() if k != "networks"} for e, r in finetuned.items()}
    for e, r in finetuned.items():
        for row, n in zip(result["networks"], r["networks"]):
            row[f"finetuned_e{e}"] = n[f"finetuned_e{e}"]
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
    return result


def _ensemble_key(runs: list, key: str, what: str) -> dict:
    """``ensemble`` for one score ``key`` of the networks (``inherited``, ``finetuned_eE``)."""
    import numpy as np

    rows = [dict(n) for n in runs[0][2].values()]
    sel = _groups(rows)
    per_run = []
    print(what)
    for p, d, nets in runs:
        for r in rows:
            r[key] = nets[r["name"]][key]
        per_run.append({"file": p, "label": d.get("label"), **{g: corr(sel[g], key) for g in GROUPS}})
        print(f"  {Path(p).name:<60} " + "  ".join(f"{g} tau {per_run[-1][g]['tau']:6.3f}" for g in GROUPS))
    stats = {g: {"mean": float(np.mean([r[g]["tau"] for r in per_run])),
                 "min": float(min(r[g]["tau"] for r in per_run)), "max": float(max(r[g]["tau"] for r in per_run))}
             for g in GROUPS}
    print(f"  {'mean over runs (min-max)':<60} " + "  ".join(
        f"{g} tau {stats[g]['mean']:6.3f} ({stats[g]['min']:.3f}-{stats[g]['max']:.3f})" for g in GROUPS))
    for r in rows:
        r[key] = float(np.mean([nets[r["name"]][key] for _, _, nets in runs]))
    ens = {g: corr(sel[g], key) for g in GROUPS}
    print(f"  {f'ensemble: mean {what} of {len(runs)} runs':<60} "
          + "  ".join(f"{g} tau {ens[g]['tau']:6.3f}" for g in GROUPS))
    return {"runs": per_run, "tau_over_runs": stats, "ensemble": ens,
            "networks": [{k: r[k] for k in ("name", "role", "arch", "retrained", key)} for r in rows]}


def _snapshot(ckpt: Path, at: Path) -> None:
    """Keep the checkpoint as it is now under ``at``: a hard link where the file system allows
    (no second copy of ~450 MB; resuming writes ``ckpt`` anew by rename, so ``at`` keeps these
    bytes), else a copy."""
    try:
        os.link(ckpt, at)
    except OSError:
        shutil.copyfile(ckpt, at)


def corr(sel: list[dict], key: str = "inherited") -> dict:
    from scipy.stats import kendalltau, spearmanr

    a = [r[key] for r in sel]
    b = [r["retrained"] for r in sel]
    return {"n": len(sel), "tau": float(kendalltau(a, b).statistic), "rho": float(spearmanr(a, b).statistic)}


def _plot(curve, path: Path, variant: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in curve[0][1]:
        ax.plot([e for e, _ in curve], [c[name]["tau"] for _, c in curve], marker="o",
                label=f"{name} (n={curve[0][1][name]['n']})")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("supernet epochs")
    ax.set_ylabel("Kendall tau (inherited vs retrained)")
    ax.set_title(f"ranking vs supernet training: {variant}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
