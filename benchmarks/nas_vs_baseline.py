"""Does the search beat the hand-designed networks at the same measured latency?

End to end on an ImageFolder dataset (default: the CIFAR-10 training images,
with the loader's fixed hash-based held-out split) and a latency budget on
this machine:

1. ``search.pipeline.run_search`` (the main job) with the given budget: trains the supernet,
   builds the latency predictor, searches, exports the winner.
2. Measures, interleaved in one session, the winner, every preset and the
   ranking architectures (batch 1, the run's runtime and threads).
3. Retrains from scratch, with the one recipe of ``search.retrain`` and the
   same epochs: the winner, every preset that measures within the budget (and the
   ``--budget-at`` preset whatever it measures),
   ``--rank-archs`` more architectures from the search's evaluated trials,
   spread over the latency range (one per latency quantile), and the
   random-search control (Li and Talwalkar, "Random Search and
   Reproducibility for Neural Architecture Search", UAI 2019):
   ``--random-archs`` architectures drawn uniformly from the space (both
   stems) that measure within the same budget, retrained with the same recipe;
   and the final pick's other candidates (``candidate``), so the pick is checked against its
   own shortlist.
4. Prints a table (top-1, latency median and IQR, params, FLOPs), the gap
   between the winner and the strongest preset in budget, Kendall tau /
   Spearman rho between inherited (supernet) and retrained accuracy, and saves
   ``nas_vs_baseline.png`` (search Pareto front with inherited accuracy; retrained
   accuracy vs measured latency) and ``nas_vs_baseline.json``.

``--budget-at PRESET`` runs at matched latency: the budget is that preset's latency measured
here first, so "the best preset in budget, at no higher latency" is met or missed by the search
alone rather than by where the budget falls between the presets.

``--search-seed`` repeats the search (supernet, trials, final pick) under another seed while the
retrains keep ``--seed``'s recipe, so ``--reuse-retrains`` serves the presets and the random
control (with ``--budget-at``, pass the first run's ``budget.json`` so both search one budget).
A re-run in the same ``--out`` with other search settings is refused, not mixed.

Every step is kept in ``--out``; running the same command again continues
(finished retrains are reused, an interrupted one resumes from its checkpoint).

    python benchmarks/nas_vs_baseline.py                       # about 1 h on 2 CPU cores
    python benchmarks/nas_vs_baseline.py --per-class 300 --supernet-epochs 5 --trials 10 \\
        --retrain-epochs 2 --rank-archs 3 --out /tmp/nvb      # smoke run, a few minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.pipeline import SearchResult  # noqa: E402
from search.records import TrialRecord  # noqa: E402

__all__ = ["pick_spanning", "compare_rows", "budget_at", "in_budget", "main"]


RETRAIN_ORDER = ("searched", "preset", "random", "ranked", "candidate")
DEFAULT_LATENCY_MS = 2.4
# the search settings a re-run must repeat to reuse the search kept in --out
_SEARCH_KEYS = ("latency_ms", "data", "epochs", "trials", "seed", "space", "threads", "val_fraction",
                "min_latency_frac", "objective", "finetune_top", "finetune_epochs", "finetune_init", "stem_search",
                "max_rejections")
_DATA_KEYS = ("spec", "train", "val")  # what must match for a retrain to be reused


def reusable_retrains(paths: Sequence[str | Path], recipe: dict, data: dict) -> dict[str, tuple[float, str]]:
    """arch -> (retrained top-1 %, the result file) over earlier result JSONs of this benchmark
    whose recipe equals ``recipe`` and whose data has the same spec and split as ``data``
    (``Data.describe()``); other files are skipped with a note. Two files that disagree on a
    network raise ``ValueError`` naming it (a retrain is deterministic, so they should not)."""
    out: dict[str, tuple[float, str]] = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        if d.get("recipe") != recipe or any(d.get("data", {}).get(k) != data.get(k) for k in _DATA_KEYS):
            print(f"note: --reuse-retrains {p}: another recipe or data; nothing reused from it", flush=True)
            continue
        for r in d["rows"]:
            if r.get("retrained") is None:
                continue
            if r["arch"] in out and abs(out[r["arch"]][0] - r["retrained"]) > 1e-9:
                raise ValueError(f"--reuse-retrains: {r['arch']} retrained to {out[r['arch']][0]} in "
                                 f"{out[r['arch']][1]} and {r['retrained']} in {p}")
            out.setdefault(r["arch"], (float(r["retrained"]), str(p)))
    return out


def pick_spanning(records: Sequence[TrialRecord], k: int, *, exclude: set[str], seed: int = 0) -> list[TrialRecord]:
    """``k`` distinct evaluated, feasible, sampled trials spread over the latency range:
    the sorted candidates are cut into ``k`` equal-count bins and one is drawn from each."""
    cands: dict[str, TrialRecord] = {}
    for r in sorted(records, key=lambda r: r.number):
        if r.state == "complete" and r.evaluated and r.feasible and r.source == "sampled" and r.arch not in exclude:
            cands.setdefault(r.arch, r)
    pool = sorted(cands.values(), key=lambda r: (r.latency_ms, r.arch))
    if k <= 0 or not pool:
        return []
    rng = np.random.default_rng(seed)
    bins = np.array_split(np.arange(len(pool)), min(k, len(pool)))
    return [pool[int(rng.choice(b))] for b in bins]


def budget_at(spec: str, out: Path, *, space, threads: int, num_classes: int, size: int, seed: int = 0) -> dict:
    """The budget of a matched-latency run (``--budget-at``): the measured median latency (ms,
    rounded to the microsecond; batch 1, ``threads`` CPU threads, ``size`` x ``size``) of a preset
    of ``space``. The issue's target compares the winner with the best preset in budget at no
    higher latency, and with a budget above every preset the search's winner sits above them.

    ``spec`` is a preset name (``shufflenet_v1_g8``; ``:small`` for the small stem), measured now,
    or an earlier run's ``budget.json``, whose budget is reused (a second search seed then runs
    at the same budget, so its random control is the same). Either way the record is kept in
    ``out/budget.json`` and a re-run in ``out`` reads it back.

    Returns the record: ``preset`` (its row name), ``arch``, ``budget_ms`` and the measurement
    (``median_ms``, ``iqr_ms``, ``env``...).

    Raises ``ValueError`` (naming ``--budget-at``) for an unknown preset (listing the space's),
    a preset outside ``space``, or a kept or given ``budget.json`` of another preset, thread
    count or input shape than this run's."""
    from search.latency import Conditions, measure_many
    from search_space import get_preset, list_presets
    from supernet import ShuffleNet

    in_space = list(space_presets(space, num_classes))
    given = json.loads(Path(spec).read_text()) if spec.endswith(".json") and Path(spec).is_file() else None
    name = given["preset"] if given else spec
    base, colon, stem = name.partition(":")
    if base not in list_presets() or stem not in (("small",) if colon else ("",)):
        raise ValueError(f"--budget-at: unknown preset {name!r}; the presets of space {space.name!r}: "
                         f"{', '.join(in_space)} (or an earlier run's budget.json)")
    if name not in in_space:
        raise ValueError(f"--budget-at: {name} is not in space {space.name!r}, so it would not be compared; "
                         + (f"one of {', '.join(in_space)}" if in_space else "the space holds no preset: use --latency-ms"))
    shape = [1, 3, size, size]
    f = out / "budget.json"
    kept = json.loads(f.read_text()) if f.is_file() else None
    for src, d in ((f, kept), (spec, given)):
        if d is None:
            continue
        if d["preset"] != name:
            raise ValueError(f"--budget-at: {src} holds {d['preset']}'s budget; use --budget-at {d['preset']} "
                             f"or another --out")
        if d["env"]["threads"] != threads or list(d["env"]["input_shape"]) != shape:
            raise ValueError(f"--budget-at: {src} was measured with {d['env']['threads']} thread(s) at "
                             f"{d['env']['input_shape']}, this run is {threads} at {shape}; use --threads "
                             f"{d['env']['threads']} with the same data, or measure anew in another --out")
    if kept is not None:
        return kept
    if given is None:
        arch = get_preset(base, num_classes, small_input=stem == "small")
        (m,) = measure_many([ShuffleNet(arch)], Conditions(tuple(shape), device="cpu", threads=threads),
                            rounds=10, per_round=10, seed=seed)
        given = {"preset": name, "arch": str(arch), "budget_ms": round(m.median_ms, 3), **m.to_dict(samples=False)}
    else:
        given = dict(given, reused_from=str(spec))
    out.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(given, indent=1))
    return given


def space_presets(space, num_classes: int) -> dict[str, str]:
    """Row name (``shufflenet_v1_g8``, ``...:small`` for the small stem) -> arch string of every
    preset the space contains, both stems where it has them."""
    from search_space import get_preset, list_presets

    return {n + (":small" if small else ""): str(get_preset(n, num_classes, small_input=small))
            for small in space.small_input for n in list_presets()
            if space.contains(get_preset(n, num_classes, small_input=small))}


def _preset_fits(r: dict, budget_ms: float, budget_preset: str | None) -> bool:
    """A preset row counts as within the budget: measured within it, or the budget's own preset."""
    return r["role"] == "preset" and (r["latency_ms"] <= budget_ms or r["name"] == budget_preset)


def in_budget(rows: Sequence[dict], budget_ms: float, random_archs: int, budget_preset: str | None = None) -> list:
    """The rows the benchmark retrains: every non-preset, non-random row; presets measured within
    the budget (and ``budget_preset`` whatever its re-measurement, as it defines the budget); the
    first ``random_archs`` random rows measured within it."""
    keep = [r for r in rows if r["role"] not in ("preset", "random") or _preset_fits(r, budget_ms, budget_preset)]
    return keep + [r for r in rows if r["role"] == "random" and r["latency_ms"] <= budget_ms][:random_archs]


def compare_rows(rows: Sequence[dict], budget_ms: float, pick_shortlist: Sequence[str] = (),
                 budget_preset: str | None = None) -> dict[str, Any]:
    """The headline: the searched row against the strongest preset (by retrained top-1)
    whose measured median is within the budget, and the inherited/retrained ranking (over every
    role but ``candidate``, as before the shortlist was retrained). ``pick_shortlist``: the archs
    of the final pick's shortlist; with the ``candidate`` rows and the winner they give
    ``pick_n``, ``pick_best`` and ``pick_regret_pts`` (best retrained minus the winner's).
    ``budget_preset``: the preset whose latency is the budget (``--budget-at``) counts as within
    it whatever its re-measurement says."""
    from scipy.stats import kendalltau, spearmanr

    win = next(r for r in rows if r["role"] == "searched")
    fits = [r for r in rows if _preset_fits(r, budget_ms, budget_preset)]
    base = max(fits, key=lambda r: (r["retrained"], -r["latency_ms"])) if fits else None
    uniq: dict[str, tuple[float, float]] = {}
    for r in rows:  # the winner may be a preset: rank each network once; the shortlist is not a sample
        if r["role"] != "candidate":
            uniq.setdefault(r["arch"], (r["inherited"], r["retrained"]))
    pairs = list(uniq.values())
    out: dict[str, Any] = {"searched": win["name"], "baseline": base["name"] if base else None, "n_ranked": len(pairs),
                           "budget_preset": budget_preset}
    if base is not None:
        out.update(gap_pts=win["retrained"] - base["retrained"],
                   latency_ratio=win["latency_ms"] / base["latency_ms"],
                   no_slower=win["latency_ms"] <= base["latency_ms"])
    rand = [r["retrained"] for r in rows if r["role"] == "random"]
    if rand:  # random search under the same measured budget (the NAS sanity baseline)
        out.update(random_n=len(rand), random_mean=float(np.mean(rand)), random_best=max(rand),
                   vs_random_best_pts=win["retrained"] - max(rand))
    shortlist = set(pick_shortlist or ())
    cands = [r["retrained"] for r in rows if r["role"] in ("searched", "candidate") or r["arch"] in shortlist]
    if len(cands) > 1:  # the final pick against its own shortlist, retrained
        out.update(pick_n=len(cands), pick_best=max(cands), pick_regret_pts=max(cands) - win["retrained"])
    sample = [r["retrained"] for r in rows if r["role"] == "ranked"]
    if sample:  # the control: does the search beat feasible trials picked without the supernet's opinion?
        out.update(sample_n=len(sample), sample_mean=float(np.mean(sample)), sample_best=max(sample))
    out["searched_rank"] = 1 + sum(ret > win["retrained"] for _, ret in pairs)
    if len(pairs) >= 3:
        a, b = zip(*pairs)
        out.update(kendall_tau=float(kendalltau(a, b).statistic), spearman_rho=float(spearmanr(a, b).statistic))
    return out


def plot(rows: Sequence[dict], trials: Sequence[TrialRecord], budget_ms: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import pareto_front

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5))
    ev = [t for t in trials if t.evaluated and t.source == "sampled"]
    a1.scatter([t.latency_ms for t in ev], [t.acc for t in ev], s=12, c="tab:gray", alpha=0.5,
               label="search trials")
    front = pareto_front([t for t in trials if t.evaluated])
    a1.plot([t.latency_ms for t in front], [t.acc for t in front], "-", c="tab:blue", lw=1.2,
            label="search Pareto front")
    colors = {"searched": "tab:red", "preset": "tab:orange", "ranked": "tab:green", "random": "tab:purple",
              "candidate": "tab:cyan"}
    markers = {"searched": "*", "preset": "s", "ranked": "o", "random": "^", "candidate": "D"}
    for ax, key, ylab in ((a1, "inherited", "top-1 (%), inherited supernet weights"),
                          (a2, "retrained", "top-1 (%), retrained from scratch")):
        for role in ("random", "ranked", "candidate", "preset", "searched"):
            pts = [r for r in rows if r["role"] == role]
            if not pts:  # a role left out (--rank-archs 0, --no-retrain-shortlist) gets no legend entry
                continue
            ax.scatter([r["latency_ms"] for r in pts], [r[key] for r in pts], marker=markers[role],
                       s=220 if role == "searched" else 45, c=colors[role], zorder=5, edgecolors="k", linewidths=0.4,
                       label={"searched": "searched (winner)", "preset": "hand-designed presets",
                              "ranked": "ranking sample", "random": "random search (control)",
                              "candidate": "final pick's other candidates"}[role])
        for r in rows:
            if r["role"] not in ("ranked", "random"):
                ax.annotate(r["name"].replace("shufflenet_", "") + ("*" if r.get("budget_preset") else ""),
                            (r["latency_ms"], r[key]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
        at = [r["name"].replace("shufflenet_", "") for r in rows if r.get("budget_preset")]
        ax.axvline(budget_ms, c="tab:red", ls="--", lw=1,
                   label=f"budget {budget_ms:g} ms" + (f" (= the latency of {at[0]}*)" if at else ""))
        ax.set_xlabel("latency (ms, batch 1): measured median (trials: predicted)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.6)
    a1.set_title("search (supernet accuracy)", fontsize=9)
    a2.set_title("the same networks trained on their own", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def random_candidates(space, args: argparse.Namespace, num_classes: int, size: int, *, exclude: set[str]) -> list:
    """Twice ``--random-archs`` distinct architectures drawn uniformly from the space (stem variant
    included) that the latency predictor of the search's conditions puts within the budget; the
    caller keeps the first ``--random-archs`` that *measure* within it."""
    if args.random_archs <= 0:
        return []
    from search.latency import Conditions, LatencyPredictor
    from search_space import Task

    task = Task(num_classes, size, None)
    pred = LatencyPredictor.build(space, Conditions(task.input_shape(), device="cpu", threads=args.threads), task,
                                  progress=False)
    rng = np.random.default_rng([args.seed, 7])
    out, seen = [], set(exclude)
    for _ in range(100_000):
        a = space.sample(rng, num_classes=num_classes)
        if str(a) not in seen and pred.predict(a) <= args.latency_ms:
            seen.add(str(a))
            out.append(a)
            if len(out) == 2 * args.random_archs:
                break
    return out


def _search(args: argparse.Namespace, out: Path, data_spec: str) -> SearchResult:
    """Run (or reuse / resume) the search; its typed result."""
    from search.config import SearchConfig
    from search.pipeline import run_search

    state_f = out / "state.json"
    state = json.loads(state_f.read_text()) if state_f.is_file() else {}
    run_dir = Path(state["run_dir"]) if state.get("run_dir") else None
    flags = {"latency_ms": args.latency_ms, "data": data_spec, "epochs": args.supernet_epochs, "trials": args.trials,
             "seed": args.seed if args.search_seed is None else args.search_seed, "threads": args.threads,
             "space": args.space, "out": str(out / "search"), "val_fraction": args.val_fraction,
             "min_latency_frac": args.min_latency_frac or None}
    config = SearchConfig.resolve(flags, config_file=args.search_config)
    if run_dir is not None and (run_dir / "result.json").is_file():
        result = SearchResult.load(run_dir)
        old = result.config
        diff = {k: (getattr(old, k), getattr(config, k)) for k in _SEARCH_KEYS if getattr(old, k) != getattr(config, k)}
        if diff:  # the rows, filters and headline would use this run's settings with another run's winner
            raise ValueError(f"--out {out} holds a search with other settings ({', '.join(f'{k} {a!r}, now {b!r}' for k, (a, b) in diff.items())}; "
                             f"state.json -> {run_dir}); repeat its flags (settings without a flag here, such as max_rejections, "
                             f"go in --search-config) or use another --out")
        print(f"[1/4] search: reusing {run_dir} ({config.latency_ms:g} ms, seed {config.seed})")
        return result
    print(f"[1/4] search: run_search({config})", flush=True)
    result = run_search(config, progress=not args.quiet)
    state_f.write_text(json.dumps({"run_dir": str(result.run_dir)}))
    return result


def _drop_stale_checkpoint(path: Path, arch: str, recipe: dict) -> None:
    """A row's retrain folder is named by its role (``searched``, ``rank0``...): when a re-run puts
    another network in it, the interrupted retrain of the old one must not block (nor resume into)
    the new one."""
    import torch

    if not path.is_file():
        return
    cfg = torch.load(path, map_location="cpu", weights_only=False).get("config", {})
    if cfg.get("arch") != arch or cfg.get("recipe") != recipe:
        print(f"  {path.parent.name}: dropping the checkpoint of {cfg.get('arch')} (now {arch})", flush=True)
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"),
                    help="ImageFolder root (default ../shared/data/cifar10/train)")
    ap.add_argument("--per-class", type=int, default=2000, help="images per class (0: all)")
    bg = ap.add_mutually_exclusive_group()
    bg.add_argument("--latency-ms", type=float, default=None, help=f"the budget (default {DEFAULT_LATENCY_MS})")
    bg.add_argument("--budget-at", default=None, metavar="PRESET|BUDGET_JSON",
                    help="matched latency, instead of --latency-ms: the budget is this preset's latency measured "
                         "here at the start (kept in OUT/budget.json; or an earlier run's budget.json, reused), "
                         "and the preset counts as within it whatever its re-measurement")
    ap.add_argument("--supernet-epochs", type=int, default=40)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--retrain-epochs", type=int, default=15)
    ap.add_argument("--rank-archs", type=int, default=6,
                    help="extra searched trials retrained for the ranking (the winner and presets in budget count too)")
    ap.add_argument("--random-archs", type=int, default=8,
                    help="random-search control: architectures drawn uniformly from the space within the measured "
                         "budget, retrained with the same recipe")
    ap.add_argument("--val-fraction", type=float, default=0.25,
                    help="share of each class held out (default 0.25: 5,000 images at 2,000 per class)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for latency")
    ap.add_argument("--seed", type=int, default=0, help="seed of the retrains, the random control, the ranked sample and the order of the "
                         "latency measurements")
    ap.add_argument("--search-seed", type=int, default=None, metavar="S",
                    help="seed of the search alone (its supernet, trials and final pick; default --seed): a second "
                         "search seed keeps the retrain recipe, so --reuse-retrains serves the presets and the "
                         "random control")
    ap.add_argument("--min-latency-frac", type=float, default=0.0, metavar="F",
                    help="search.run's floor: search only networks predicted at >= F x budget")
    ap.add_argument("--space", default="default", help="search space name or YAML (presets outside it are left out)")
    ap.add_argument("--search-config", default=None, metavar="RUN_YAML",
                    help="extra settings for search.run (its --config), e.g. calib_archs, top_k")
    ap.add_argument("--retrain-shortlist", action=argparse.BooleanOptionalAction, default=True,
                    help="also retrain the final pick's other candidates (role candidate: the pick's regret). "
                         "--no-retrain-shortlist leaves them out: a shortlist near the budget with the small stem "
                         "costs about 20 minutes a network on 2 cores")
    ap.add_argument("--reuse-retrains", nargs="+", default=(), metavar="RESULT",
                    help="result JSONs of earlier runs: a network they retrained with the same recipe and data "
                         "(spec and split) keeps its top-1 instead of training again (the retrains are "
                         "deterministic on one machine: session 13 reproduced session 7's to the hundredth)")
    ap.add_argument("--out", default="results/nas_vs_baseline")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (for logs)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the search's progress lines

    import torch

    from nas_data import load_data
    from search.latency import Conditions, measure_many
    from search.retrain import retrain_recipe
    from search_space import Arch, SearchSpace, count_flops, count_params
    from supernet import ShuffleNet
    from supernet.train import train_model

    if not Path(args.root).is_dir():
        print(f"error: ImageFolder root {args.root!r} does not exist (--root)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_spec = f"imagefolder:{args.root}" + (f"@{args.per_class}" if args.per_class else "")
    data = load_data(data_spec, val_fraction=args.val_fraction)
    print(f"data: {data.describe()}", flush=True)

    budget, budget_preset = None, None
    try:
        if args.budget_at:
            budget = budget_at(args.budget_at, out, space=SearchSpace.load(args.space), threads=args.threads,
                               num_classes=data.num_classes, size=data.image_size, seed=args.seed)
            args.latency_ms, budget_preset = budget["budget_ms"], budget["preset"]
            print(f"budget: {args.latency_ms:.3f} ms, {budget_preset}'s latency "
                  + (f"from {budget['reused_from']}" if "reused_from" in budget else "measured here") + " (--budget-at)",
                  flush=True)
        elif args.latency_ms is None:
            args.latency_ms = DEFAULT_LATENCY_MS
        result = _search(args, out, data_spec)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir, trials = result.run_dir, result.completed
    size = data.image_size
    inherited = {t.arch: t.acc for t in trials if t.evaluated}
    winner = result.winner["arch"]
    inherited[winner] = result.winner["acc"]

    from search.evaluate import EvalConfig, calibration_batches, evaluate_arch

    rows: list[dict[str, Any]] = [{"name": "searched", "role": "searched", "arch": winner}]
    space = SearchSpace.load(args.space)
    rows += [{"name": n, "role": "preset", "arch": a} for n, a in space_presets(space, data.num_classes).items()]

    # 2. latency: all candidates measured interleaved, once, before any training runs on the machine
    lat_f = out / "latency.json"
    known = {r["arch"] for r in rows}  # a candidate that is a preset is retrained once, as the preset
    if args.retrain_shortlist:
        rows += [{"name": f"cand{i}", "role": "candidate", "arch": c["arch"]}
                 for i, c in enumerate(c for c in result.finetune if c["arch"] not in known)]
    shortlist = [c["arch"] for c in result.finetune]  # never a ranked row: the ranking sample is not the shortlist
    ranked = pick_spanning(trials, args.rank_archs, exclude={r["arch"] for r in rows} | set(shortlist), seed=args.seed)
    rows += [{"name": f"rank{i}", "role": "ranked", "arch": t.arch} for i, t in enumerate(ranked)]
    rows += [{"name": f"random{i}", "role": "random", "arch": str(a)}
             for i, a in enumerate(random_candidates(space, args, data.num_classes, size, exclude={r["arch"] for r in rows}))]
    lat = json.loads(lat_f.read_text()) if lat_f.is_file() else {}
    todo = [r for r in rows if r["arch"] not in lat]
    if todo:
        print(f"[2/4] latency: measuring {len(todo)} networks interleaved ({args.threads} thread(s), batch 1)",
              flush=True)
        ms = measure_many([ShuffleNet(Arch.parse(r["arch"])) for r in todo],
                          Conditions((1, 3, size, size), device="cpu", threads=args.threads), rounds=10, per_round=10,
                          seed=args.seed)
        lat.update({r["arch"]: m.to_dict(samples=False) for r, m in zip(todo, ms)})
        lat_f.write_text(json.dumps(lat, indent=1))
    for r in rows:
        r["latency_ms"], r["iqr_ms"] = lat[r["arch"]]["median_ms"], lat[r["arch"]]["iqr_ms"]
    env = lat[winner]["env"]
    rows = in_budget(rows, args.latency_ms, args.random_archs, budget_preset)
    for r in rows:
        r["budget_preset"] = r["name"] == budget_preset
    kept = [r for r in rows if r["role"] == "random"]
    if len(kept) < args.random_archs:
        print(f"note: only {len(kept)} of the random candidates measured within the budget", flush=True)

    # inherited accuracy for presets the search did not seed (predicted over budget, measured under it)
    missing = [r for r in rows if r["arch"] not in inherited]
    if missing:
        from supernet.train import load_supernet

        sup, _ = load_supernet(result.supernet, device="cpu")
        sup.eval()
        cfg = EvalConfig()
        calib = calibration_batches(data, cfg, torch.device("cpu"), True)
        for r in missing:
            inherited[r["arch"]], _ = evaluate_arch(sup, Arch.parse(r["arch"]), data, cfg, device="cpu", calib=calib)
    for r in rows:
        a = Arch.parse(r["arch"])
        r.update(inherited=inherited[r["arch"]], params=count_params(a), mflops=count_flops(a, size) / 1e6)

    # 3. retrain every row from scratch with the one recipe: the headline rows (winner, presets, random
    # control) first, so a run stopped early already answers whether the search beats them
    rows.sort(key=lambda r: RETRAIN_ORDER.index(r["role"]))  # stable: within a role, the order above
    recipe = retrain_recipe(args.retrain_epochs, args.seed, 0.05, 128)
    print(f"[3/4] retraining {len(rows)} networks from scratch, {recipe.epochs} epochs each: {recipe}", flush=True)
    reuse = reusable_retrains(args.reuse_retrains, recipe.__dict__, data.describe())
    for i, r in enumerate(rows):
        d = out / "retrain" / r["name"]
        d.mkdir(parents=True, exist_ok=True)
        mf = d / "metrics.json"
        m = json.loads(mf.read_text()) if mf.is_file() else {}
        if (m.get("arch") != r["arch"] or m.get("recipe") != recipe.__dict__) and r["arch"] in reuse:
            m = {"arch": r["arch"], "name": r["name"], "recipe": recipe.__dict__, "val_acc": reuse[r["arch"]][0],
                 "reused_from": reuse[r["arch"]][1]}
            mf.write_text(json.dumps(m, indent=1))
        if m.get("arch") != r["arch"] or m.get("recipe") != recipe.__dict__:
            _drop_stale_checkpoint(d / "checkpoint.pt", r["arch"], recipe.__dict__)
            t = time.perf_counter()
            hist = train_model(ShuffleNet(Arch.parse(r["arch"])), data, recipe, device="cpu", progress=not args.quiet,
                               desc=f"retrain {r['name']}", checkpoint=d / "checkpoint.pt", resume=True,
                               config={"arch": r["arch"], "init": "scratch"})
            m = {"arch": r["arch"], "name": r["name"], "recipe": recipe.__dict__, "val_acc": hist[-1]["val_acc"],
                 "history": hist, "seconds": time.perf_counter() - t}
            mf.write_text(json.dumps(m, indent=1))
        r["retrained"] = m["val_acc"]
        if "reused_from" in m:
            r["reused_from"] = Path(m["reused_from"]).name
        print(f"  [{i + 1}/{len(rows)}] {r['name']:<22} inherited {r['inherited']:6.2f}%  retrained "
              f"{r['retrained']:6.2f}%  {r['latency_ms']:.3f} ms" + (f"  (reused: {r['reused_from']})" if "reused_from" in r else ""),
              flush=True)

    # 4. report
    # without the shortlist's retrains, a regret over the part of it that other rows cover would mislead
    summary = compare_rows(rows, args.latency_ms, shortlist if args.retrain_shortlist else (), budget_preset)
    rows.sort(key=lambda r: ({"searched": 0, "candidate": 1, "preset": 2, "ranked": 3, "random": 4}[r["role"]],
                             r["latency_ms"]))
    budget_text = f"budget {args.latency_ms:g} ms" + (f" (= {budget_preset}'s latency)" if budget_preset else "")
    search_seed = result.config.seed
    print(f"\n[4/4] {data.spec}: {len(data.train_y)} train / {len(data.val_y)} held-out images, {size}x{size}; "
          f"{budget_text} on {env['device_name']} ({env['runtime']}, {env['threads']} thread(s), "
          f"batch 1); search seed {search_seed}; retrain {recipe.epochs} epochs from scratch, seed {recipe.seed}"
          + ("; * the budget's preset" if budget_preset else ""))
    print(f"{'model':<22} {'retrained':>9} {'inherited':>9} {'latency ms':>10} {'IQR':>6} {'params':>9} {'MFLOPs':>7}  arch")
    for r in rows:
        print(f"{r['name'] + ('*' if r['budget_preset'] else ''):<22} {r['retrained']:8.2f}% {r['inherited']:8.2f}% {r['latency_ms']:10.3f} "
              f"{r['iqr_ms']:6.3f} {r['params']:9,d} {r['mflops']:7.2f}  {r['arch']}")
    if summary.get("baseline"):
        print(f"\nsearched vs strongest preset in budget ({summary['baseline']}"
              + (f"; the budget is {budget_preset}'s latency" if budget_preset else "") + "): "
              f"{summary['gap_pts']:+.2f} pts top-1 at {summary['latency_ratio']:.2f}x its latency "
              f"({'no slower' if summary['no_slower'] else 'SLOWER'})")
    else:
        print("\nno preset measures within the budget")
    if "sample_n" in summary:
        print(f"latency-spread sample of search trials (n={summary['sample_n']}): retrained mean "
              f"{summary['sample_mean']:.2f}%, best {summary['sample_best']:.2f}%; the searched network ranks "
              f"{summary['searched_rank']}/{summary['n_ranked']} by retrained top-1")
    if "pick_n" in summary:
        print(f"final pick vs its shortlist of {summary['pick_n']} (retrained): best {summary['pick_best']:.2f}%, "
              f"the winner {summary['pick_regret_pts']:.2f} pts below it")
    if "random_n" in summary:
        print(f"random-search control (n={summary['random_n']}, uniform over the space within the measured budget): "
              f"retrained mean {summary['random_mean']:.2f}%, best {summary['random_best']:.2f}%; searched "
              f"{summary['vs_random_best_pts']:+.2f} pts vs the best")
    if "kendall_tau" in summary:
        print(f"ranking, inherited vs retrained over {summary['n_ranked']} networks: Kendall tau "
              f"{summary['kendall_tau']:.3f}, Spearman rho {summary['spearman_rho']:.3f}")
    title = (f"{Path(args.root).name}@{args.per_class or 'all'} | {env['device_name']} | {budget_text} | "
             f"supernet {args.supernet_epochs} ep, {args.trials} trials, search seed {search_seed}"
             + (f" (floor {args.min_latency_frac:g} x budget)" if args.min_latency_frac else "")
             + f", retrain {recipe.epochs} ep")
    plot(rows, trials, args.latency_ms, out / "nas_vs_baseline.png", title)
    total = time.perf_counter() - t0
    (out / "nas_vs_baseline.json").write_text(json.dumps(
        {"args": vars(args), "data": data.describe(), "latency_env": env, "recipe": recipe.__dict__,
         "run_dir": str(run_dir), "rows": rows, "summary": summary, "seconds": total,
         "budget": budget,  # --budget-at: the preset's measurement that set the budget (None: --latency-ms)
         # the search itself (its run folder is not committed): settings, objective included, stage timings,
         # the final pick's shortlist with its per-epoch top-1, and the winner's latencies as picked and shipped
         "search": {"config": result.config.to_dict(), "timings": result.timings, "finetune": list(result.finetune),
                    "winner_latency_ms": result.winner["latency"]["median_ms"],
                    "winner_shipped_ms": {k: v["median_ms"] for k, v in result.winner["shipped"].items()}}},
        indent=1, default=str))
    print(f"wrote {out / 'nas_vs_baseline.png'} and {out / 'nas_vs_baseline.json'} ({total:.0f} s this invocation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
