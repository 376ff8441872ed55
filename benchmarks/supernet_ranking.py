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

    python benchmarks/supernet_ranking.py --epochs 20                      # the default: fair, path-only update
    python benchmarks/supernet_ranking.py --epochs 20 --update full        # plain SGD on the shared tensors
    python benchmarks/supernet_ranking.py --epochs 20 --sampler uniform    # uniform SPOS, not FairNAS fairness
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

``--scratch-epochs K`` trains every truth network from scratch for K epochs of its own recipe
(another ``--seed``) and ranks by that; ``--pairs A.json ...`` counts latency-matched pairs;
``--pick A.json ...`` trains nothing and replays final-pick rules (each score alone; each score
within each stem with the one-shot score choosing between the stems, the search's rule) on
random shortlists of ``--pick-k`` truth networks under each measured latency, printing the
retrained top-1 each rule leaves on the table (written to ``--out``, default
``results/ranking/pick_k<K>.json``):

    cd benchmarks/results && python ../supernet_ranking.py --pick supernet_ranking_fair_both_e20_finetune3.json \
        supernet_ranking_scratch_e2_seed{1,2}.json supernet_ranking_scratch_e5_seed1.json --out supernet_ranking_pick_k4.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", default=str(Path(__file__).with_name("ground_truth.json")),
                    help="ground-truth JSON (benchmarks/ground_truth.py)")
    ap.add_argument("--sampler", default="fair", choices=["uniform", "fair"])
    ap.add_argument("--update", default=None, choices=["full", "path"],
                    help="the supernet's optimizer update (default: train_supernet's on a CPU, path; full "
                         "with --sandwich)")
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
    ap.add_argument("--epochs", type=int, default=20,
                    help="supernet epochs (default 20: the README ablation table's default rows)")
    ap.add_argument("--curve-every", type=int, default=0, metavar="K",
                    help="also score the supernet every K epochs: the tau-vs-epochs curve (JSON + PNG)")
    ap.add_argument("--finetune-epochs", type=int, default=0, metavar="E",
                    help="also fine-tune every network E epochs from its inherited weights (search.finetune, the "
                         "final pick's step) and rank by that")
    ap.add_argument("--few-shot-epochs", type=int, default=0, metavar="E",
                    help="few-shot NAS: two sub-supernets start from the supernet (trained here or --supernet) and "
                         "train E more epochs each on their part of the space (--few-shot-by); every network is "
                         "scored by its part's")
    ap.add_argument("--few-shot-by", choices=["family", "stem"], default="family",
                    help="the split of --few-shot-epochs: unit family (mostly-V1 / mostly-V2 paths) or stem variant "
                         "(ImageNet / small-input stem; needs a supernet of both stems)")
    ap.add_argument("--baselines", action="store_true",
                    help="train nothing: print the tau of the truth networks' params, MFLOPs and measured latency "
                         "against their retrained top-1 (the size baselines any one-shot score should beat)")
    ap.add_argument("--scratch-epochs", type=int, default=0, metavar="K",
                    help="no supernet: train every truth network from scratch with its own recipe (the seed: "
                         "--seed), stop after K epochs, and rank by the top-1 after each epoch (a truncated-"
                         "training estimate; --seed 0 repeats the truth's own first epochs)")
    ap.add_argument("--scratch-schedule", choices=["truth", "complete"], default="truth",
                    help="the schedule --scratch-epochs trains: the first K epochs of the truth's own schedule "
                         "(truth), or a complete K-epoch schedule, warm-up and cosine to zero, as the search's "
                         "final pick trains its candidates from scratch (complete: search.finetune.scratch_recipe)")
    ap.add_argument("--pairs", nargs="+", default=None, metavar="RESULT",
                    help="train nothing: for these result JSONs, the share of latency-matched pairs (measured "
                         "latencies within --pair-tolerance) that each score orders as the retrained top-1 does")
    ap.add_argument("--pick", nargs="+", default=None, metavar="RESULT",
                    help="train nothing: replay final-pick rules (each score of these result JSONs alone, and within "
                         "each stem with the one-shot score across) on random shortlists of the truth under each "
                         "latency, and print each rule's regret in retrained top-1; writes --out (JSON)")
    ap.add_argument("--pick-k", type=int, default=4, metavar="K", help="shortlist size of --pick (the search's "
                                                                         "finetune_top)")
    ap.add_argument("--pick-draws", type=int, default=200, metavar="N", help="shortlists per budget of --pick")
    ap.add_argument("--pair-tolerance", type=float, default=0.3, metavar="F",
                    help="two networks are latency-matched when the slower measures at most (1 + F) x the faster")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="checkpoint path (default results/ranking/<variant>.pt); "
                                                  "with --ensemble or --pick, the JSON to write")
    ap.add_argument("--ensemble", nargs="+", default=None, metavar="RESULT",
                    help="train nothing: combine the result JSONs of runs against the same truth (see above)")
    args = ap.parse_args()
    if args.pair_tolerance <= 0:
        raise SystemExit(f"error: --pair-tolerance must be > 0, got {args.pair_tolerance}")
    if args.ensemble or args.pairs or args.pick:
        try:
            if args.pick:
                res = pick_report(args.pick, args.truth, args.pick_k, args.pick_draws, args.seed)
                out = Path(args.out or f"results/ranking/pick_k{args.pick_k}.json")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(res, indent=1))
                print(f"wrote {out}")
            elif args.pairs:
                pairs_report(args.pairs, args.truth, args.pair_tolerance)
            else:
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

    if args.few_shot_by == "stem":  # sub-supernet name -> (which networks it scores, its training knobs)
        parts = {"imagenet": (lambda a: not a.small_input, {"small_input": False, "sampler": args.sampler}),
                 "small": (lambda a: a.small_input, {"small_input": True, "sampler": args.sampler})}
    else:  # a family's sub-supernet samples by rejection, which the fair sampler's fixed plan cannot
        parts = {fam: (lambda a, fam=fam: unit_family(a) == fam, {"family": fam, "sampler": "uniform"})
                 for fam in FAMILIES}

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
    if args.few_shot_epochs and args.few_shot_by == "stem" and small is not None:
        raise SystemExit(f"error: --few-shot-by stem needs a supernet of both stems (--small-input both), "
                         f"not --small-input {args.small_input}")
    if small is not None:
        skipped = [r["name"] for r in rows if Arch.parse(r["arch"]).small_input is not small]
        rows = [r for r in rows if Arch.parse(r["arch"]).small_input is small]
        if skipped:
            print(f"note: {len(skipped)} networks with the other stem left out (the supernet trains "
                  f"--small-input {args.small_input} paths; 'both' scores all): {', '.join(skipped)}")
    sizes = baselines(rows)
    if args.baselines:
        _print_baselines(sizes)
        return
    data = load_data(truth["data"]["spec"], val_fraction=truth["data"]["val_fraction"])
    if args.scratch_epochs:
        try:
            scratch(rows, data, args, sizes)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    space = SearchSpace.from_dict(loaded[1]["config"]["space"]) if loaded else SearchSpace.load("default")
    cfg = EvalConfig()
    calib = calibration_batches(data, cfg, torch.device("cpu"), True)

    def score(sup, key: str = "inherited") -> dict:
        sups = sup if isinstance(sup, dict) else None
        for r in rows:
            a = Arch.parse(r["arch"])
            net = next(sups[name] for name, (owns, _) in parts.items() if owns(a)) if sups else sup
            net.eval()
            r[key], model = evaluate_arch(net, a, data, cfg, device="cpu", calib=calib)
            if key == "inherited":  # the loss score of the one-shot supernet (a second pass over val)
                r[key + NLL] = -mean_nll(model, data.batches("val", batch_size=cfg.batch_size, channels_last=True))
        return {name: corr(sel, key) for name, sel in _groups(rows).items()}

    if loaded:
        sup, state = loaded
        ident = hashlib.sha1(str(Path(args.supernet).resolve()).encode()).hexdigest()[:8]
        label, variant = f"checkpoint {args.supernet}", f"{Path(args.supernet).stem}-{ident}-e{state['epoch']}"
        if args.few_shot_epochs:  # its own result file (the checkpoint's other scorings stay), named by what varies
            variant += (f"-fewshot_{args.few_shot_by}{args.few_shot_epochs}"
                        f"{f'_{args.sampler}' if args.few_shot_by == 'stem' else ''}"
                        f"{f'_seed{args.seed}' if args.seed else ''}")
        supernet_id = f"{Path(args.supernet).resolve()}@{state['epoch']}"
        curve = [(state["epoch"], score(sup))]
    else:
        recipe = Recipe(epochs=args.epochs, seed=args.seed)
        args.update = st.resolve_update(args.update, args.sandwich, "cpu")  # the variant names what trained
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
            print(f"epoch {stop:3d}: " + "  ".join(f"{k} tau {v['tau']:.3f}" for k, v in curve[-1][1].items())
                  + "; by loss: " + "  ".join(f"{k} tau {v['tau']:.3f}" for k, v in _by_loss(rows).items()), flush=True)
        label = (f"{variant}, {args.epochs} epochs in {state['train_seconds']:.0f} s, last train acc "
                 f"{state['history'][-1]['train_acc']:.1f}%")
        supernet_id = f"{ckpt.resolve()}@{state['epoch']}"
    few_shot = {}
    if args.few_shot_epochs:
        # Zhao et al., "Few-shot Neural Architecture Search" (ICML 2021), section 3: the one-shot supernet's
        # weights start every sub-supernet, each trains on its part only. A checkpoint given by --supernet
        # keeps its own space and weight-sharing knobs (the sub-supernets must load its weights); the
        # sampler of a split by stem is --sampler's.
        init = Path(args.supernet).resolve() if loaded else ckpt.resolve()
        cfg0 = state["config"] if loaded else {}
        base = (dict(width_sharing=cfg0.get("width_sharing", "prefix"), conv0_head=sup.conv0_head,
                     v1_sharing=sup.v1_sharing, update=cfg0.get("update", "full"), sandwich=cfg0.get("sandwich", 0))
                if loaded else dict(conv0_head=args.conv0_head, v1_sharing=args.v1_sharing, update=args.update,
                                    sandwich=args.sandwich))
        subs = {}
        for name, (_, knobs) in parts.items():
            subs[name], _ = st.train_supernet(
                space, data, Recipe(epochs=args.few_shot_epochs, seed=args.seed, lr=0.02, warmup_epochs=0),
                checkpoint=Path("results/ranking") / f"{variant}-{name}.pt" if loaded
                else ckpt.with_name(f"{ckpt.stem}-fewshot-{name}.pt"),
                resume=True, device="cpu", progress=False, **{"small_input": small, **base, **knobs}, init=init)
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
    by_loss = _by_loss(rows)
    for name, c in curve[-1][1].items():
        print(f"{name:<10} n={c['n']:2d}  Kendall tau {c['tau']:6.3f}  Spearman rho {c['rho']:6.3f}"
              + (f"   scored by minus the val loss: tau {by_loss[name]['tau']:6.3f}" if by_loss else ""))
    if few_shot:
        print(f"few-shot by {'unit family' if args.few_shot_by == 'family' else 'stem variant'} "
              f"(+{args.few_shot_epochs} epochs per sub-supernet): "
              + "  ".join(f"{name} tau {c['tau']:.3f} (rho {c['rho']:.3f})" for name, c in few_shot.items()))
    for e, cs in finetuned.items():
        print(f"fine-tuned {e} epoch(s) from inherited weights: "
              + "  ".join(f"{name} tau {c['tau']:.3f} (rho {c['rho']:.3f})" for name, c in cs.items()))
    matched = {k: matched_pairs(rows, k, args.pair_tolerance) for k in _score_keys(rows)}
    out = Path(args.out).with_suffix(".json") if args.out and not args.supernet else Path("results/ranking") / f"{variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"variant": variant, "args": vars(args), "truth": args.truth, "label": label,
                               "curve": [{"epoch": e, **c} for e, c in curve],
                               "finetuned": {str(e): c for e, c in finetuned.items()}, "few_shot": few_shot,
                               "by_loss": by_loss,
                               "baselines": sizes,
                               "matched_pairs": {"tolerance": args.pair_tolerance, **matched},
                               "networks": [{k: v for k, v in r.items()
                                             if k in ("name", "role", "arch", "retrained", "inherited", "few_shot",
                                                      "inherited" + NLL)
                                             or k.startswith("finetuned_e")} for r in rows]}, indent=1))
    _print_baselines(sizes)
    _print_pairs(matched, args.pair_tolerance)
    print(f"wrote {out}")
    if len(curve) > 1:
        _plot(curve, out.with_suffix(".png"), variant)


GROUPS = ("all", "presets", "sampled")
NLL = "_neg_nll"  # suffix of a score: minus the mean cross-entropy (nats) on the validation split


def mean_nll(model, batches) -> float:
    """Mean cross-entropy (nats, no label smoothing) of ``model`` (in eval mode) over ``(x, y)`` batches.

    Raises:
        ValueError: no samples in ``batches``."""
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            total += float(torch.nn.functional.cross_entropy(model(x), y, reduction="sum"))
            n += int(y.numel())
    if n == 0:
        raise ValueError("batches: no samples to evaluate")
    return total / n


def _by_loss(rows: list[dict]) -> dict:
    """Tau per group of the loss score (minus the inherited val loss), where every network has it."""
    key = "inherited" + NLL
    return {name: corr(sel, key) for name, sel in _groups(rows).items()} if all(key in r for r in rows) else {}


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The networks tau is reported over: all, the presets, the sampled ones (``GROUPS``)."""
    return {"all": rows, "presets": [r for r in rows if r["role"] == "preset"],
            "sampled": [r for r in rows if r["role"] != "preset"]}


BASELINES = {"params": "params", "mflops": "MFLOPs", "latency_ms": "latency (ms)"}


def baselines(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """Tau / rho of each network's size or measured latency (``BASELINES``: the truth's
    ``params``, ``mflops``, ``latency_ms``) against its retrained top-1, per group (``GROUPS``).

    The size baselines that studies of performance estimators compare against (White et al.,
    "How Powerful are Performance Predictors in Neural Architecture Search?", NeurIPS 2021:
    FLOPs and #params among the zero-cost predictors): a one-shot score ranks only if it beats
    them. The sign is kept: a positive tau means bigger (slower) retrains better, a negative
    one the opposite, and ``abs(tau)`` is what ranking by the size with the right sign reaches.
    """
    out = {}
    for key in BASELINES:
        scored = [dict(r, size=float(r[key])) for r in rows]
        out[key] = {name: corr(sel, "size") for name, sel in _groups(scored).items()}
    return out


def _print_baselines(sizes: dict) -> None:
    for key, label in BASELINES.items():
        print(f"baseline {label:<13} " + "  ".join(f"{g} tau {c['tau']:6.3f} (n={c['n']})"
                                                  for g, c in sizes[key].items()))


def matched_pairs(rows: list[dict], key: str, tolerance: float = 0.3) -> dict:
    """How often ``key`` orders two networks of about the same latency as their retrained top-1 does.

    The search compares networks under one latency budget, where tau over the whole truth
    mixes in how accuracy moves with size. Only pairs whose measured latencies (``latency_ms``)
    match count: the slower at most ``(1 + tolerance)`` x the faster (the pairwise accuracy
    that Luo et al., "Neural Architecture Optimization", NeurIPS 2018, report for their
    performance predictor, restricted to matched pairs).

    Returns:
        ``pairs`` (matched pairs with no tie in either score), ``concordant``, ``accuracy``
        (% ordered right; 50 is chance) and ``tau`` ((concordant - discordant) / pairs; NaN
        without pairs).
    """
    import itertools

    c = d = 0
    for a, b in itertools.combinations(rows, 2):
        fast, slow = sorted((a["latency_ms"], b["latency_ms"]))
        if slow > (1 + tolerance) * fast:
            continue
        s = (a[key] - b[key]) * (a["retrained"] - b["retrained"])
        c, d = c + (s > 0), d + (s < 0)
    n = c + d
    return {"pairs": n, "concordant": c, "accuracy": 100.0 * c / n if n else float("nan"),
            "tau": (c - d) / n if n else float("nan")}


def _score_keys(rows: list[dict]) -> list[str]:
    """The scores a result holds, then the latency baseline (``-latency_ms``, added to ``rows``)."""
    for r in rows:
        r["minus_latency"] = -r["latency_ms"]
    keys = [k for k in ("inherited", "inherited" + NLL, "few_shot") if all(k in r for r in rows)]
    for prefix in ("finetuned_e", "scratch_e"):
        every = set.intersection(*({k for k in r if k.startswith(prefix)} for r in rows))
        keys += sorted(every, key=lambda k: int(k.removeprefix(prefix)))
    return keys + ["minus_latency"]


def scratch(rows: list[dict], data, args: argparse.Namespace, sizes: dict) -> dict:
    """The truncated-training estimate: every network of ``rows`` trained from scratch with the
    recipe of its first truth run (seed replaced by ``args.seed``), stopped after
    ``args.scratch_epochs`` epochs of that schedule; ``scratch_e{k}`` is its top-1 (%) after
    epoch k. With ``args.scratch_schedule == "complete"`` each network instead trains the final
    pick's own recipe (``search.finetune.scratch_recipe``: lr 0.05, batch 128, as the committed
    truth's, over a complete ``scratch_epochs``-epoch schedule whose last epochs anneal), in its
    own folders and files (``scratch_complete_*``). Every network's initial weights come from
    ``torch.manual_seed(args.seed)`` (results written before session 17's review built each network
    unseeded, from the generator state the previous training left). Reduced training as a ranking proxy: Zhou et al., "EcoNAS", CVPR 2020; Abdelfattah
    et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, section 3 (reduced-training
    proxies). Prints and writes tau per epoch, beside the tau of the truth's own run at the same
    epoch (``truth_e{k}``: the same trajectory as the final top-1, so it shares its noise), and
    the latency-matched pairs. Each network's training is checkpointed and resumes.

    Raises:
        ValueError: ``args.scratch_epochs`` longer than a truth run."""
    import torch

    from nas_training.engine import Recipe
    from search.finetune import scratch_recipe
    from search_space import Arch
    from supernet import ShuffleNet
    from supernet.train import train_model

    k_max = args.scratch_epochs
    complete = getattr(args, "scratch_schedule", "truth") == "complete"
    tag = "scratch_complete" if complete else "scratch"
    # a complete schedule depends on K, so its checkpoints are kept per K
    work = Path("results/ranking") / (f"{tag}_e{k_max}_seed{args.seed}" if complete else f"{tag}_seed{args.seed}")
    if args.seed in {r["seed"] for n in rows for r in n["runs"][:1]}:
        shared = ("its initial weights and data order" if complete else "the first epochs repeat its runs")
        print(f"note: --seed {args.seed} is the truth's own seed: {shared} (use another seed for an independent "
              f"estimate)")
    for r in rows:  # before anything trains
        if k_max > r["runs"][0]["recipe"]["epochs"]:
            raise ValueError(f"--scratch-epochs: {k_max} is longer than {r['name']}'s "
                             f"{r['runs'][0]['recipe']['epochs']}-epoch run")
    for i, r in enumerate(rows):
        run = r["runs"][0]
        recipe = scratch_recipe(k_max, args.seed) if complete else Recipe(**dict(run["recipe"], seed=args.seed))
        t = time.perf_counter()
        torch.manual_seed(args.seed)  # the initial weights too, as the final pick seeds before it builds
        hist = train_model(ShuffleNet(Arch.parse(r["arch"])), data, recipe, device="cpu", progress=False,
                           desc=r["name"], checkpoint=work / r["name"] / "checkpoint.pt", resume=True,
                           config={"arch": r["arch"], "init": "scratch"}, stop_after_epoch=k_max)
        for k in range(1, k_max + 1):
            r[f"scratch_e{k}"] = hist[k - 1]["val_acc"]
            r[f"truth_e{k}"] = run["history"][k - 1]["val_acc"]
        print(f"[{i + 1}/{len(rows)}] {r['name']:<22} retrained {r['retrained']:6.2f}%  after {k_max} epoch(s) "
              f"{r[f'scratch_e{k_max}']:6.2f}%  ({time.perf_counter() - t:.0f} s)", flush=True)
    per_epoch = {}
    for k in range(1, k_max + 1):
        per_epoch[str(k)] = {key: {name: corr(sel, f"{key}_e{k}") for name, sel in _groups(rows).items()}
                             for key in ("scratch", "truth")}
        print(f"epoch {k}: seed {args.seed} from scratch " + "  ".join(
            f"{g} tau {c['tau']:.3f}" for g, c in per_epoch[str(k)]["scratch"].items())
              + f"   (the truth's own run at epoch {k}: all tau {per_epoch[str(k)]['truth']['all']['tau']:.3f})")
    matched = {k: matched_pairs(rows, k, args.pair_tolerance) for k in _score_keys(rows)}
    _print_baselines(sizes)
    _print_pairs(matched, args.pair_tolerance)
    out = Path("results/ranking") / f"{tag}_e{k_max}_seed{args.seed}_stem{args.small_input}.json"
    result = {"variant": out.stem, "args": vars(args), "truth": args.truth, "per_epoch": per_epoch,
              "baselines": sizes, "matched_pairs": {"tolerance": args.pair_tolerance, **matched},
              "networks": [{k: v for k, v in r.items() if k in ("name", "role", "arch", "retrained")
                            or k.startswith(("scratch_e", "truth_e"))} for r in rows]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


def _print_pairs(matched: dict, tolerance: float) -> None:
    print(f"latency-matched pairs (within {tolerance:.0%}) ordered as retrained: " + "  ".join(
        f"{k} {m['concordant']}/{m['pairs']} ({m['accuracy']:.0f}%)" for k, m in matched.items()))


def _read_result(path: str, nets: dict[str, dict], truth: str, flag: str) -> list[dict]:
    """The networks of a result JSON, each with its measured ``latency_ms`` from the truth's
    ``nets`` (name -> network). Raises ``ValueError`` naming ``flag``: an unreadable result, or a
    network that ``truth`` does not hold."""
    try:
        found = json.loads(Path(path).read_text())["networks"]
        if not found or not all("name" in n and "retrained" in n for n in found):
            raise ValueError("no networks, or one without name / retrained")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{flag}: {path} is not a supernet_ranking result ({type(e).__name__}: {e})") from None
    unknown = [n["name"] for n in found if n["name"] not in nets]
    if unknown:
        raise ValueError(f"{flag}: {path}: network {unknown[0]!r} is not in the truth {truth} (give its --truth)")
    return [dict(n, latency_ms=nets[n["name"]]["latency_ms"]) for n in found]


def pairs_report(paths: list[str], truth: str, tolerance: float = 0.3) -> dict[str, dict]:
    """:func:`matched_pairs` of every score in each result file, latencies from ``truth``.

    Raises:
        ValueError: an unreadable result, or a network that ``truth`` does not hold.
    """
    from ground_truth import load_truth

    nets = {n["name"]: n for n in load_truth(truth)["networks"]}
    out = {}
    for p in paths:
        rows = _read_result(p, nets, truth, "--pairs")
        out[p] = {k: matched_pairs(rows, k, tolerance) for k in _score_keys(rows)}
        print(p)
        _print_pairs(out[p], tolerance)
    return out


def ensemble(paths: list[str], out: str | None = None) -> dict:
    """Per-run tau, its mean and spread over the runs, and the tau of the mean score.

    Done for the inherited top-1 (``runs``, ``tau_over_runs``, ``ensemble``), for minus the
    inherited validation loss (``by_loss``, the same three keys) when every run has it, and, when every
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
    if all("inherited" + NLL in n for _, _, nets in runs for n in nets.values()):
        result["by_loss"] = _ensemble_key(runs, "inherited" + NLL, "inherited score: minus the val loss")
        for row, n in zip(result["networks"], result["by_loss"].pop("networks")):
            row["inherited" + NLL] = n["inherited" + NLL]
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


def pick_rules(keys: list[str], across: str | None) -> dict[str, tuple[str, str | None]]:
    """The final-pick rules :func:`pick_replay` compares: each score on its own (``(key, None)``),
    and, when ``across`` is given, each score within each stem variant with ``across`` choosing
    between the stems' best (``(key, across)``: the search's rule, ``search.pipeline._finetune``)."""
    rules = {k: (k, None) for k in keys}
    if across is not None:
        rules.update({f"{k} within stem, {across} across": (k, across) for k in keys if k != across})
    return rules


def pick_replay(rows: list[dict], rules: dict[str, tuple[str, str | None]], k: int = 4, draws: int = 200,
                seed: int = 0, shortlist: str | None = None) -> dict[str, dict]:
    """Replay final-pick rules on shortlists drawn from the truth: how much retrained top-1 each
    rule leaves on the table when it picks one network of a shortlist.

    For every budget equal to a truth network's measured ``latency_ms`` with at least ``k``
    networks at or under it, ``draws`` shortlists of ``k`` of those networks are drawn uniformly
    (one seeded generator, the same shortlists for every rule; each budget weighs the same, so
    the smallest budgets, with few distinct shortlists, repeat theirs). A rule ``(key, across)``
    picks the shortlist's highest ``key``, or, with ``across``, the highest ``key`` per stem
    variant (``small``: bool per row) and then the highest ``across`` of those finalists. Ties go
    to the first in the truth's order (the search breaks them by one-shot order, then latency).
    Every candidate gets the same epochs: the search's successive halving, when its rungs stop
    any (more epochs than its first rung), is not replayed. With ``shortlist`` (a score key), each
    budget has one shortlist instead: its ``k`` networks of highest ``shortlist`` (the search's:
    the best by one-shot score), ties in the truth's order.

    Returns, per rule: ``regret`` (mean of best retrained in the shortlist minus the pick's, points),
    ``regret_budget`` (best retrained of all networks under the budget minus the pick's: what the
    shortlist and the pick leave together), ``p_best`` (share of shortlists where the pick is the
    best retrained; a tie for the best counts), ``n`` (shortlists), plus ``random`` (a uniform
    pick from the shortlist, expected).

    Raises:
        ValueError: ``k`` < 2, ``draws`` < 1, or fewer than ``k`` networks in the truth."""
    import numpy as np

    if k < 2 or draws < 1:
        raise ValueError(f"--pick-k must be >= 2 and draws >= 1, got k={k}, draws={draws}")
    if len(rows) < k:
        raise ValueError(f"--pick-k: {k} is more than the {len(rows)} networks scored")

    def pick(short: list[dict], key: str, across: str | None) -> dict:
        if across is None:
            return max(short, key=lambda r: r[key])
        finalists = [max((r for r in short if r["small"] == s), key=lambda r: r[key])
                     for s in dict.fromkeys(r["small"] for r in short)]
        return max(finalists, key=lambda r: r[across])

    rng = np.random.default_rng(seed)
    regret: dict[str, list[float]] = {name: [] for name in [*rules, "random"]}
    regret_budget: dict[str, list[float]] = {name: [] for name in [*rules, "random"]}
    best_hit: dict[str, list[bool]] = {name: [] for name in rules}
    for budget in sorted({r["latency_ms"] for r in rows}):
        under = [r for r in rows if r["latency_ms"] <= budget]
        if len(under) < k:
            continue
        top = max(r["retrained"] for r in under)
        if shortlist is None:
            shorts = [[under[i] for i in sorted(rng.choice(len(under), k, replace=False))] for _ in range(draws)]
        else:
            shorts = [sorted(under, key=lambda r: -r[shortlist])[:k]]
        for short in shorts:
            best = max(r["retrained"] for r in short)
            mean = sum(r["retrained"] for r in short) / k
            regret["random"].append(best - mean)
            regret_budget["random"].append(top - mean)
            for name, (key, across) in rules.items():
                got = pick(short, key, across)["retrained"]
                regret[name].append(best - got)
                regret_budget[name].append(top - got)
                best_hit[name].append(got == best)
    out = {name: {"regret": float(np.mean(v)), "regret_budget": float(np.mean(regret_budget[name])), "n": len(v)}
           for name, v in regret.items()}
    for name, hits in best_hit.items():
        out[name]["p_best"] = float(np.mean(hits))
    return out


def pick_report(paths: list[str], truth: str, k: int = 4, draws: int = 200, seed: int = 0) -> dict:
    """:func:`pick_replay` over the scores of result files: each file's scores (``_score_keys``)
    are named ``<file stem>:<score>``; ``across`` is the one-shot score (``inherited``) of the first
    file that holds one for every network. Only networks every file scored count.

    Raises:
        ValueError: an unreadable result, or a network that ``truth`` does not hold."""
    from ground_truth import load_truth, truth_accuracy

    from search_space import Arch

    nets = {n["name"]: n for n in load_truth(truth)["networks"]}
    scores: dict[str, dict[str, float]] = {}
    keys: list[str] = []
    across = None
    for p in paths:
        rows = _read_result(p, nets, truth, "--pick")
        file_keys = [key for key in _score_keys(rows) if key != "minus_latency"]
        for n in rows:
            scores.setdefault(n["name"], {}).update({f"{Path(p).stem}:{key}": n[key] for key in file_keys})
        keys += [f"{Path(p).stem}:{key}" for key in file_keys]
        if across is None and "inherited" in file_keys:
            across = f"{Path(p).stem}:inherited"
    common = [name for name in nets if name in scores and all(key in scores[name] for key in keys)]
    rows = [dict(scores[name], name=name, retrained=truth_accuracy(nets[name]),
                 latency_ms=nets[name]["latency_ms"], minus_latency=-nets[name]["latency_ms"],
                 small=Arch.parse(nets[name]["arch"]).small_input) for name in common]
    rules = pick_rules(keys + ["minus_latency"], across)
    result = pick_replay(rows, rules, k=k, draws=draws, seed=seed)
    print(f"final-pick replay: {len(rows)} networks, shortlists of {k} drawn uniformly under each truth "
          f"latency ({result['random']['n']} shortlists); regret = best retrained in the shortlist minus the pick's, "
          f"vs budget = best retrained under the budget minus the pick's")
    _print_replay(result)
    out = {"networks": len(rows), "k": k, "draws": draws, "seed": seed, "files": paths, "across": across,
           "rules": result}
    if across is not None:  # the search's shortlist: the k best by one-shot score under the budget
        out["one_shot_shortlist"] = pick_replay(rows, rules, k=k, seed=seed, shortlist=across)
        print(f"the search's shortlist instead: the {k} best by {across} under each budget "
              f"({out['one_shot_shortlist']['random']['n']} budgets)")
        _print_replay(out["one_shot_shortlist"])
    return out


def _print_replay(result: dict[str, dict]) -> None:
    for name, v in sorted(result.items(), key=lambda kv: kv[1]["regret"]):
        hit = f"   picks the best {v['p_best']:5.1%}" if "p_best" in v else "   (a uniform pick, expected)"
        print(f"  {name:<70} regret {v['regret']:5.2f} pts, vs budget {v['regret_budget']:5.2f}{hit}")


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
