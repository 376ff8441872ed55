"""``python -m search.run --latency-ms 5``: the main job.

Trains (or reuses) the supernet, builds (or reuses) the latency predictor for
the target device, searches with the chosen backend under the hard latency
budget, measures the best candidates end to end, and exports the winner.
Argument parsing and orchestration only; the work lives in the other modules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from supernet.storage import cache_root

__all__ = ["main", "DEFAULTS"]

log = logging.getLogger("search.run")

DEFAULTS: dict[str, Any] = {
    "latency_ms": None,
    "trials": 40,
    "epochs": 25,
    "data": "digits",
    "space": "default",
    "input_size": 32,
    "runtime": "eager",
    "device": None,
    "threads": 1,
    "seed": 0,
    "backend": "optuna",
    "out": "results",
    "calib_archs": 100,
    "top_k": 5,
    "address": None,
    "concurrency": 2,
    "min_latency_frac": 0.0,
    "finetune_top": 4,
    "finetune_epochs": 4,
    "val_fraction": 0.1,
    "train_workers": 1,
}
# the artefact the budget is re-checked on after export; model.pt runs with the search's runtime
SHIPPED_BY_RUNTIME = {"eager": "model", "compile": "model", "torchscript": "model", "onnxruntime": "onnx"}
NOISY_REL_IQR = 0.10  # a latency whose IQR exceeds this share of its median is flagged unreliable


def _number(v: str) -> int | float | str:
    """A flag's number as typed (int, else float); anything else stays a string for
    :func:`validate_config` to reject with the same one line as a YAML value."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


_POSITIVE_INTS = ("trials", "epochs", "input_size", "threads", "calib_archs", "top_k", "concurrency", "finetune_epochs",
                  "train_workers")
_STRINGS = ("data", "space", "out")
_CHOICES = {"runtime": ("eager", "torchscript", "compile", "onnxruntime"), "backend": ("optuna", "ray")}


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check every setting, whether it came from a flag, a ``--config`` YAML or a resumed run.

    Returns ``cfg`` with numbers normalised (``latency_ms`` as float). Raises
    ``ValueError`` with one line naming the setting, the rule and the value.
    """
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = dict(cfg)
    v = out["latency_ms"]
    if v is None:
        raise ValueError("latency_ms: a budget is required: --latency-ms MS (or latency_ms in --config)")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"latency_ms: must be a positive finite number of milliseconds, got {v!r}")
    out["latency_ms"] = float(v)
    for k in _POSITIVE_INTS:
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{k}: must be a positive integer, got {v!r}")
    for k in ("seed", "finetune_top"):
        if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < 0:
            raise ValueError(f"{k}: must be an integer >= 0, got {out[k]!r}")
    for k in _STRINGS:
        if not isinstance(out[k], str) or not out[k].strip():
            raise ValueError(f"{k}: must be a non-empty string, got {out[k]!r}")
    for k in ("device", "address"):
        if out[k] is not None and (not isinstance(out[k], str) or not out[k].strip()):
            raise ValueError(f"{k}: must be a non-empty string or unset, got {out[k]!r}")
    for k, choices in _CHOICES.items():
        if out[k] not in choices:
            raise ValueError(f"{k}: unknown {k} {out[k]!r}; available: {list(choices)}")
    if out["runtime"] == "onnxruntime":
        from search.latency import _check_runtime  # the package must be importable before any work starts

        _check_runtime("onnxruntime")
    v = out["val_fraction"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ValueError(f"val_fraction: must be a number in (0, 1), got {v!r}")
    f = out["min_latency_frac"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
        raise ValueError(f"min_latency_frac: must be a number in [0, 1), got {f!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Find the most accurate ShuffleNet-style network under a latency budget on this device.",
    )
    ap.add_argument("--latency-ms", type=_number, default=None, help="hard latency budget (batch 1, ms) [required]")
    ap.add_argument("--trials", type=_number, default=None, help=f"search trials (default {DEFAULTS['trials']})")
    ap.add_argument("--epochs", type=_number, default=None, help=f"supernet epochs (default {DEFAULTS['epochs']})")
    ap.add_argument("--data", default=None, help="digits (default, embedded) | cifar10[:ROOT] | imagefolder:PATH[@N]")
    ap.add_argument("--space", default=None, help="built-in space name or YAML path (default 'default')")
    ap.add_argument("--input-size", type=_number, default=None, help="input side in pixels (default 32)")
    ap.add_argument("--runtime", default=None, help="eager (default) | torchscript | compile | onnxruntime (the budget "
                    "applies to model.onnx run by ONNX Runtime)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: the GPU when present)")
    ap.add_argument("--threads", type=_number, default=None, help="CPU threads for latency (default 1)")
    ap.add_argument("--seed", type=_number, default=None)
    ap.add_argument("--backend", default=None, choices=["optuna", "ray"], help="optuna (default) | ray")
    ap.add_argument("--address", default=None, help="ray: join an existing cluster (ray start --head); the search "
                    "trials (--backend ray) and the supernet training (--train-workers) run there")
    ap.add_argument("--train-workers", type=_number, default=None, metavar="N",
                    help="train the supernet on N Ray Train workers, data-parallel and equal to 1 worker to float "
                         "rounding (default 1: in this process)")
    ap.add_argument("--concurrency", type=_number, default=None, help="ray: concurrent trials")
    ap.add_argument("--min-latency-frac", type=_number, default=None, metavar="F",
                    help="search only networks predicted at >= F x budget (0 <= F < 1; default 0: off)")
    ap.add_argument("--finetune-top", type=_number, default=None, metavar="N",
                    help=f"final pick: fine-tune the N best candidates under the budget from their inherited weights, "
                         f"successive halving (default {DEFAULTS['finetune_top']}; 0 = the one-shot score decides)")
    ap.add_argument("--finetune-epochs", type=_number, default=None, metavar="E",
                    help=f"most fine-tune epochs a candidate gets (default {DEFAULTS['finetune_epochs']})")
    ap.add_argument("--val-fraction", type=_number, default=None, metavar="F",
                    help="imagefolder data: share of each class held out for validation (default 0.1; "
                         "digits and cifar10 have fixed splits)")
    ap.add_argument("--out", default=None, help="results folder (default results/)")
    ap.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    ap.add_argument("--config", default=None, metavar="RUN_YAML", help="read settings from YAML; flags override it")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """defaults < --config file (or the resumed run's run.yaml) < explicit flags."""
    cfg = dict(DEFAULTS)
    if args.resume:
        run_dir = Path(args.resume)
        f = run_dir / "run.yaml"
        if not run_dir.is_dir() or not f.is_file():
            raise ValueError(f"resume: {str(run_dir)!r} is not a ShuffleNAS run folder (no run.yaml)")
        cfg.update(yaml.safe_load(f.read_text())["config"])
    if args.config:
        p = Path(args.config)
        if not p.is_file():
            raise ValueError(f"config: {str(p)!r} does not exist")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config: {p} is not valid YAML ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"config: {p} must hold a mapping of settings")
        d = {str(k).replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown} in {p}; known: {sorted(DEFAULTS)}")
        cfg.update(d)
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    return validate_config(cfg)


def supernet_key(space, data, recipe, device) -> str:
    """Identity of the supernet a run searches with: space, data and split, recipe, device kind,
    and the stem variants it trains (both: the stem is searched)."""
    return hashlib.sha1(json.dumps({"space": space.to_dict(), "data": data.spec, "size": data.image_size,
                                    "recipe": asdict(recipe), "device": device.type, "small_input": "searched",
                                    "v1_sharing": "labels", "sampler": "fair",
                                    "split": [int(data.train_y.numel()), int(data.val_y.numel())]},
                                   sort_keys=True).encode()).hexdigest()[:16]


def supernet_for(space, data, recipe, *, device, progress: bool, workers: int = 1, address: str | None = None):
    """Train the supernet, or reuse the cached one trained with the same space, data, recipe and seed."""
    from supernet.train import load_supernet, train_supernet

    ckpt = cache_root("supernets") / supernet_key(space, data, recipe, device) / "supernet.pt"
    if ckpt.is_file():
        try:
            net, state = load_supernet(ckpt, device=device)
            if state["epoch"] >= recipe.epochs:
                log.info("supernet: reusing %s (%d epochs)", ckpt, state["epoch"])
                return net, ckpt, True
        except ValueError as e:
            log.warning("supernet cache %s unusable (%s); training again", ckpt, e)
            ckpt.unlink()
    # the stem variant is searched, so the supernet trains both; N workers train what 1 does (same cache key)
    net, _ = train_supernet(space, data, recipe, checkpoint=ckpt, resume=True, device=device, progress=progress,
                            small_input=None, workers=workers, address=address)
    return net, ckpt, False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run = getattr(_run, "run_dir", None)
        hint = f"python -m search.run --resume {run}" if run else "the same command"
        print(f"\ninterrupted; finished trials are kept. Continue with: {hint}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import torch

    from search.backends.optuna import failed_trials, run_optuna, trial_records
    from search.evaluate import EvalConfig, Scorer, evaluate_arch
    from search.export import export_model, load_artefact, measure_artefacts
    from search.finetune import FinetuneConfig, finetune_step, successive_halving, winner_index
    from search.latency import LatencyPredictor, measure_many, resolve_device
    from search.report import plot_pareto, write_report, write_trials_csv
    from search_space import SearchSpace, count_flops, count_mac, count_params, get_preset, list_presets
    from supernet import ShuffleNet
    from supernet.data import load_data
    from supernet.train import Recipe

    t_start = time.perf_counter()
    cfg = resolve_config(args)
    if args.resume:
        before = (yaml.safe_load((Path(args.resume) / "run.yaml").read_text()) or {}).get("config", {})
        if before.get("backend", "optuna") != cfg["backend"]:
            raise ValueError(f"backend: {args.resume} was searched with {before.get('backend', 'optuna')!r}; "
                             f"resume it with the same backend (drop --backend {cfg['backend']})")
        if cfg["backend"] == "ray" and before.get("trials") != cfg["trials"]:  # Tuner.restore keeps its trial count
            raise ValueError(f"trials: a Ray run resumes with its own {before.get('trials')} trials; "
                             f"drop --trials {cfg['trials']}")
    if (cfg["backend"] == "ray" or cfg["train_workers"] > 1) and cfg["address"] and cfg["address"] != "auto":
        from supernet.cluster import check_reachable

        check_reachable(cfg["address"])  # before any training: fail in seconds, not after minutes
    progress = not args.quiet
    budget = float(cfg["latency_ms"])
    device = resolve_device(cfg["device"])
    from supernet.cluster import check_workers

    check_workers(cfg["train_workers"], address=cfg["address"], use_gpu=device.type == "cuda")
    space = SearchSpace.load(cfg["space"])
    data = load_data(cfg["data"], image_size=cfg["input_size"], val_fraction=cfg["val_fraction"])
    if data.image_size != cfg["input_size"]:
        raise ValueError(f"input_size: {cfg['data']} images are {data.image_size}px; use --input-size {data.image_size}")
    size = cfg["input_size"]
    shape = (1, 3, size, size)
    timings: dict[str, float] = {}
    recipe = Recipe(epochs=cfg["epochs"], seed=cfg["seed"])
    sn_key = supernet_key(space, data, recipe, device)
    if args.resume:  # trials scored by two different supernets must not mix
        before = (yaml.safe_load((Path(args.resume) / "run.yaml").read_text()) or {}).get("supernet_key")
        if before != sn_key:
            raise ValueError(
                f"resume: {args.resume} was searched with another supernet ({before or 'an older ShuffleNAS'}; "
                f"now {sn_key}: space, data, split, recipe or stem variants differ); start a new run")

    t = time.perf_counter()
    predictor = LatencyPredictor.build(space, device=device, runtime=cfg["runtime"], input_shape=shape,
                                       threads=cfg["threads"], num_classes=data.num_classes, small_input=None,
                                       calib_archs=cfg["calib_archs"], progress=progress)
    timings["latency predictor"] = time.perf_counter() - t
    fastest, fastest_ms = predictor.fastest(space)
    if fastest_ms <= 0 or budget < fastest_ms * 1.5:  # near or below the floor: measure, the prediction only guides
        from search.latency import measure

        m = measure(ShuffleNet(fastest), input_shape=shape, device=device, runtime=cfg["runtime"],
                    threads=cfg["threads"], samples=100, warmup_s=0.2)
        if budget < m.median_ms:
            raise ValueError(
                f"latency budget {budget:g} ms is below the fastest architecture of space '{space.name}' on "
                f"{predictor.key['device_name']} ({cfg['runtime']}, {size}x{size}, {predictor.key['threads']} "
                f"thread(s)): {m.median_ms:.2f} ms measured ({fastest_ms:.2f} ms predicted) for {fastest}"
            )

    if args.resume:
        run_dir = Path(args.resume)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg["out"]) / f"{stamp}-{budget:g}ms"
        run_dir.mkdir(parents=True, exist_ok=False)
    _run.run_dir = run_dir  # for the Ctrl-C hint
    meta_cfg = {"config": cfg, "recipe": asdict(recipe), "space": space.to_dict(), "data": data.describe(),
                "torch": str(torch.__version__), "supernet_key": sn_key}
    (run_dir / "run.yaml").write_text(yaml.safe_dump(meta_cfg, sort_keys=False))

    t = time.perf_counter()
    supernet, ckpt, reused = supernet_for(space, data, recipe, device=device, progress=progress,
                                          workers=cfg["train_workers"], address=cfg["address"])
    supernet.eval()
    timings["supernet" + (" (cached)" if reused else " training")] = time.perf_counter() - t

    floor_ms = float(cfg["min_latency_frac"]) * budget
    scorer = Scorer(supernet, data, predictor, budget_ms=budget, input_size=size, device=device,
                    runtime=cfg["runtime"], threads=cfg["threads"], min_latency_ms=floor_ms)
    seeds = [(n + (":small" if small else ""), get_preset(n, data.num_classes, small_input=small))
             for small in space.small_input for n in list_presets()]
    seeds = [(n, a) for n, a in seeds if space.contains(a) and predictor.predict(a) <= budget * (1 + scorer.margin)]
    t = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg["trials"], desc="search", unit="trial", dynamic_ncols=True)
    best = {"acc": -1.0}

    def on_trial(number: int, rec: dict) -> None:
        if rec["feasible"] and rec["acc"] > best["acc"]:
            best.update(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best=f"{best['acc']:.1f}%", last=f"{rec['acc']:.1f}%@{rec['latency_ms']:.2f}ms")

    if cfg["backend"] == "ray":
        from search.backends.ray import run_ray

        scorer_kw = {"budget_ms": budget, "input_size": size, "device": str(device), "runtime": cfg["runtime"],
                     "threads": cfg["threads"], "min_latency_ms": floor_ms}
        study = run_ray(scorer_kw, space, supernet=supernet, data=data, predictor=predictor, run_dir=run_dir,
                        n_trials=cfg["trials"], seed=cfg["seed"], num_classes=data.num_classes,
                        concurrency=cfg["concurrency"], address=cfg["address"], seeds=seeds, on_trial=on_trial,
                        verbose=1 if progress else 0, resume=bool(args.resume))
    else:
        study = run_optuna(scorer, space, run_dir=run_dir, n_trials=cfg["trials"], seed=cfg["seed"],
                           num_classes=data.num_classes, seeds=seeds, on_trial=on_trial)
    if bar is not None:
        bar.close()
    timings["search"] = time.perf_counter() - t
    records = trial_records(study)
    failed = failed_trials(study)
    if failed and not records:
        raise ValueError(f"search: every trial failed (first: {failed[0]['arch']}: {failed[0]['error']})")
    if failed:
        print(f"warning: {len(failed)} trial(s) failed and are recorded in trials.csv (state 'failed'); "
              f"first: {failed[0]['arch']}: {failed[0]['error']}", file=sys.stderr)

    # final pick: the most accurate candidates, measured end to end, interleaved
    t = time.perf_counter()
    pool = [r for r in records if r.get("evaluated") and r.get("feasible")]
    if not pool and floor_ms > 0:  # nothing between floor and budget: fall back to the budget alone
        log.warning("no trial between %.3g and %.3g ms; picking among all under the budget", floor_ms, budget)
        pool = [r for r in records if r.get("evaluated") and r["latency_ms"] <= budget]
    feasible = sorted(pool, key=lambda r: (-r["acc"], r["latency_ms"]))  # ties go to the faster network
    uniq: dict[str, dict] = {}
    for r in feasible:
        uniq.setdefault(r["arch"], r)
    cands = list(uniq.values())
    preset_recs = {r["arch"]: r for r in records if r.get("source", "sampled") != "sampled" and r.get("evaluated")}
    baseline = None
    measured: dict[str, Any] = {}
    ft = FinetuneConfig(top=cfg["finetune_top"], epochs=cfg["finetune_epochs"])
    under: list[dict] = []  # candidates measured under the budget, best one-shot score first
    for start in range(0, len(cands), cfg["top_k"]):
        chunk = [r for r in cands[start:start + cfg["top_k"]] if r["arch"] not in measured]
        extra = [r for r in preset_recs.values() if r["arch"] not in measured] if start == 0 else []
        todo = chunk + extra
        if todo:
            ms = measure_many([ShuffleNet(r["arch"]) for r in todo], input_shape=shape, device=device,
                              runtime=cfg["runtime"], threads=cfg["threads"], rounds=10, per_round=10, seed=cfg["seed"])
            measured.update({r["arch"]: m for r, m in zip(todo, ms)})
        under += [r for r in cands[start:start + cfg["top_k"]] if measured[r["arch"]].median_ms <= budget]
        if len(under) >= max(1, ft.top):
            break
    if not under:
        raise ValueError(f"no candidate measured under {budget:g} ms end to end; try more --trials or a larger budget")
    in_budget = [r for r in preset_recs.values() if measured[r["arch"]].median_ms <= budget]
    if in_budget:
        baseline = max(in_budget, key=lambda r: r["acc"])
    timings["final measurement"] = time.perf_counter() - t

    from search_space import Arch

    sh: list[dict] = []
    model = None
    winner = under[0]
    if ft.top:  # multi-fidelity: short fine-tunes, successive halving; the winner ships fine-tuned
        t = time.perf_counter()
        picks = under[:ft.top]
        archs = [Arch.parse(r["arch"]) for r in picks]
        step, models = finetune_step(supernet, archs, data, ft, device=device, seed=cfg["seed"],
                                     ckpt_dir=run_dir / "finetune", supernet_id=sn_key)
        fbar = None
        if progress and cfg["backend"] != "ray":  # Ray Tune prints its own trial table
            from tqdm.auto import tqdm

            fbar = tqdm(total=len(picks) * ft.epochs, desc="fine-tune (successive halving)", unit="epoch",
                        dynamic_ncols=True)

        def on_epoch(k: int, epoch: int, acc: float) -> None:
            if fbar is not None:
                fbar.update(1)
                fbar.set_postfix(cand=k, acc=f"{acc:.1f}%")

        if cfg["backend"] == "ray":  # ASHA in Ray Tune: the candidates fine-tune in parallel trials
            from search.backends.ray import finetune_asha

            sh = finetune_asha(supernet, archs, data, ft, device=device, seed=cfg["seed"],
                               ckpt_dir=run_dir / "finetune", supernet_id=sn_key, run_dir=run_dir,
                               address=cfg["address"], concurrency=cfg["concurrency"], verbose=1 if progress else 0)
        else:  # Optuna's successive-halving pruner, in this process
            sh = successive_halving(archs, step, ft, on_epoch=on_epoch)
        if fbar is not None:
            fbar.close()
        for r, rec in zip(picks, sh):
            rec.update(acc_inherited=r["acc"], latency_ms=measured[r["arch"]].median_ms)
        best = winner_index(sh)
        winner = picks[best]
        step(best, ft.epochs)  # the winner's fine-tuned weights (a resumed pick loads its checkpoint)
        model = models[best]
        timings["fine-tune"] = time.perf_counter() - t

    arch = Arch.parse(winner["arch"])
    acc, inherited = evaluate_arch(supernet, arch, data, EvalConfig(), device=device)
    lat = measured[winner["arch"]]
    winner_out = dict(winner, acc=acc, latency_ms=lat.median_ms, latency=lat.to_dict(samples=False),
                      mac=count_mac(arch, size))
    if model is None:
        model = inherited
    else:
        winner_out["acc_finetuned"] = sh[best]["final"]
    meta = {"arch": str(arch), "val_acc_inherited": acc, "latency": lat.to_dict(), "params": count_params(arch),
            **({"val_acc_finetuned": sh[best]["final"], "finetune": asdict(ft)} if sh else {}),
            "mflops": count_flops(arch, size) / 1e6, "mac": count_mac(arch, size), "input_size": size,
            "data": data.describe(), "supernet": str(ckpt), **meta_cfg}
    files = export_model(model, run_dir, input_size=size, meta=meta, data=data)
    # what ships is what is measured: every artefact loaded back and timed interleaved (issue 11)
    t = time.perf_counter()
    primary = SHIPPED_BY_RUNTIME[cfg["runtime"]]
    try:
        shipped = measure_artefacts(run_dir, files, input_size=size, device=device, threads=cfg["threads"],
                                    seed=cfg["seed"], model_runtime="eager" if primary == "onnx" else cfg["runtime"])
    except Exception as e:  # noqa: BLE001 - the run's results are written even if a shipped artefact cannot run
        log.warning("the shipped artefacts could not be measured: %s", e)
        print(f"warning: the shipped artefacts could not be measured after export ({str(e).splitlines()[0]})")
        shipped = {}
    if primary in shipped and shipped[primary].rel_iqr > NOISY_REL_IQR:  # one re-measurement, then a flag
        from search.latency import measure

        again = measure(load_artefact(run_dir, primary) if primary != "onnx" else run_dir / files[primary],
                        input_shape=shape, device=device, runtime=shipped[primary].env["runtime"],
                        memory_format=shipped[primary].env["memory_format"], threads=cfg["threads"],
                        max_rel_iqr=NOISY_REL_IQR)
        if again.rel_iqr < shipped[primary].rel_iqr:
            shipped[primary] = again
    timings["shipped artefacts"] = time.perf_counter() - t
    winner_out["shipped"] = {k: {"file": files[k], "median_ms": m.median_ms, "iqr_ms": m.iqr_ms,
                                 "runtime": m.env["runtime"], "memory_format": m.env["memory_format"],
                                 "threads": m.env["threads"], "batch": m.env["batch"],
                                 "noisy": m.rel_iqr > NOISY_REL_IQR, "primary": k == primary}
                             for k, m in shipped.items()}
    base_out = None
    if baseline is not None:
        bl = measured[baseline["arch"]]
        base_out = dict(baseline, latency_ms=bl.median_ms, latency=bl.to_dict(samples=False))
    plot_recs = [dict(r, latency_ms=measured[r["arch"]].median_ms) if r["arch"] in measured else r for r in records]
    write_trials_csv([dict(r, state="complete") for r in plot_recs] + [dict(r, state="failed") for r in failed],
                     run_dir / "trials.csv")
    plot_pareto(plot_recs, run_dir / "pareto.png", budget_ms=budget, winner=winner_out, floor_ms=floor_ms,
                title=f"{cfg['data']} | {predictor.key['device_name']} | {cfg['runtime']} | {size}x{size}")
    timings["total"] = time.perf_counter() - t_start
    (run_dir / "result.json").write_text(json.dumps(
        {"winner": winner_out, "baseline": base_out, "timings": timings, "n_trials": len(records),
         "n_failed": len(failed), "fastest_predicted_ms": fastest_ms, "finetune": sh}, indent=1, default=str))
    write_report(run_dir / "report.md", config=cfg, winner=winner_out, baseline=base_out, n_trials=len(records),
                 timings=timings, files=files, finetune=sh)
    latest = Path(cfg["out"]) / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.resolve(), target_is_directory=True)
    if sh:
        print(f"fine-tuned {len(sh)} candidates ({ft.epochs} epochs at most, successive halving): "
              + ", ".join(f"{r['final']:.1f}%{' (stopped)' if r['pruned'] else ''}" for r in sh))
    ft_txt = f", {winner_out['acc_finetuned']:.2f}% fine-tuned {ft.epochs} epochs" if sh else ""
    print(f"searched: {arch}\n  top-1 {acc:.2f}% (inherited{ft_txt}) | {lat.median_ms:.3f} ms median (IQR {lat.iqr_ms:.3f}) "
          f"<= {budget:g} ms | {count_params(arch):,} params | {count_flops(arch, size) / 1e6:.2f} MFLOPs")
    if winner_out["shipped"]:
        print("shipped artefacts (batch 1, measured after export): " + ", ".join(
            f"{v['file']} {v['median_ms']:.3f} ms ({v['runtime']}, {v['memory_format']})"
            for v in winner_out["shipped"].values()))
    for v in winner_out["shipped"].values():
        if v["primary"] and v["noisy"]:
            print(f"warning: the latency of {v['file']} is unreliable: IQR {v['iqr_ms']:.3f} ms is over "
                  f"{NOISY_REL_IQR:.0%} of the median after a re-measurement; is another process using the CPU?")
        if v["primary"] and v["median_ms"] > budget:
            print(f"warning: {v['file']} measured {v['median_ms']:.3f} ms after export, over the {budget:g} ms budget")
    if base_out is not None:
        print(f"best preset in budget: {baseline['source']} {baseline['acc']:.2f}% at {base_out['latency_ms']:.3f} ms")
    print(f"run folder: {run_dir} (report.md, {', '.join(files.values())}, pareto.png); {timings['total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
