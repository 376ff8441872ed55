"""``python -m search.run --latency-ms 5``: the main job's command line.

Parses flags into a :class:`~search.config.SearchConfig` (with ``--config`` YAML and
``--resume``), makes one :func:`~search.pipeline.run_search` call and prints its summary.
The work lives in :mod:`search.pipeline` and the modules it calls.
"""

from __future__ import annotations

import argparse
import logging
import sys

from search.config import DEFAULTS, FINETUNE_INITS, OBJECTIVES, STEM_SEARCHES, SearchConfig
from search.pipeline import NOISY_REL_IQR, SearchInterrupted, SearchResult, run_search
from search.report import supernet_line

__all__ = ["main", "build_parser", "config_from_args"]


def _number(v: str) -> int | float | str:
    """A flag's number as typed (int, else float); anything else stays a string for
    :func:`search.config.validate_config` to reject with the same one line as a YAML value."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


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
    ap.add_argument("--sandwich", type=_number, default=None, metavar="N",
                    help="train the supernet with the BigNAS sandwich rule: per step the largest, the smallest and "
                         "N sampled paths, distilled from the largest (default 0: one path a step). Costly: in the "
                         "default space with both stems a step computes about (23.5 + N)x the FLOPs of a one-path "
                         "step (the largest path is 1,146 MFLOPs at 32x32); far beyond the 10-minute main job")
    ap.add_argument("--concurrency", type=_number, default=None, help="ray: concurrent trials")
    ap.add_argument("--objective", choices=OBJECTIVES, default=None,
                    help="accuracy: the most accurate one-shot score under the budget (one objective; MnasNet's "
                         "hard constraint); pareto: accuracy and latency as two objectives, trials spread over the "
                         f"front (default {DEFAULTS['objective']}; a resumed run keeps its own)")
    ap.add_argument("--stem-search", choices=STEM_SEARCHES, default=None,
                    help="joint: the stem variant one more parameter of one study; stratified: each stem variant "
                         "(ImageNet, small-input) searched on its own with half the trials and half the final "
                         "pick's shortlist, since the one-shot score does not compare stems (CIFAR-10 at matched "
                         "latency: above joint on four runs of four, two within seed noise; the main job 542 s cold against 516-578 s) "
                         f"(default {DEFAULTS['stem_search']}; a resumed run keeps its own)")
    ap.add_argument("--max-rejections", type=_number, default=None, metavar="N",
                    help="rejection sampling: a suggestion predicted over the budget (+5%%) is told to the sampler "
                         "as infeasible and drawn again instead of counting as a trial, up to N times in a row, so "
                         f"--trials counts networks the supernet scored, e.g. 20 (default {DEFAULTS['max_rejections']}: "
                         "every suggestion counts; measured in session 18: no better winners, up to 4.4x the search time)")
    ap.add_argument("--min-latency-frac", type=_number, default=None, metavar="F",
                    help="search only networks predicted at >= F x budget (0 <= F < 1; default 0: off)")
    ap.add_argument("--finetune-top", type=_number, default=None, metavar="N",
                    help=f"final pick: train the N best candidates under the budget (see --finetune-init) with "
                         f"successive halving within each stem (default {DEFAULTS['finetune_top']}; 0 = the one-shot "
                         f"score decides)")
    ap.add_argument("--finetune-epochs", type=_number, default=None, metavar="E",
                    help=f"length of a final-pick candidate's schedule (successive halving stops the weaker ones "
                         f"at its rungs), and of the winner's fine-tune from its inherited weights with "
                         f"--finetune-winner (default {DEFAULTS['finetune_epochs']})")
    ap.add_argument("--finetune-init", choices=FINETUNE_INITS, default=None,
                    help="final-pick candidates train from their inherited weights or from scratch (the retrain "
                         f"recipe over --finetune-epochs; default {DEFAULTS['finetune_init']})")
    ap.add_argument("--finetune-winner", action=argparse.BooleanOptionalAction, default=None,
                    help="final pick from scratch: also fine-tune the winner from its inherited weights for "
                         "--finetune-epochs; the most accurate of its fine-tuned, from-scratch and inherited weights "
                         "ships (default off; no effect with --finetune-init inherited or --finetune-top 0)")
    ap.add_argument("--val-fraction", type=_number, default=None, metavar="F",
                    help="imagefolder data: share of each class held out for validation (default 0.1; "
                         "digits and cifar10 have fixed splits)")
    ap.add_argument("--out", default=None, help="results folder (default results/)")
    ap.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    ap.add_argument("--config", default=None, metavar="RUN_YAML", help="read settings from YAML; flags override it")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """defaults < --config file (or the resumed run's run.yaml) < explicit flags."""
    return SearchConfig.resolve({k: getattr(args, k, None) for k in DEFAULTS}, config_file=args.config,
                                resume=args.resume)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run_search(config_from_args(args), resume=args.resume, progress=not args.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        hint = f"python -m search.run --resume {e.run_dir}" if isinstance(e, SearchInterrupted) else "the same command"
        print(f"\ninterrupted; finished trials are kept. Continue with: {hint}", file=sys.stderr)
        return 130
    print_summary(result)
    return 0


def print_summary(result: SearchResult) -> None:
    """The console summary of a finished run: winner, shipped latencies, warnings, baseline."""
    w, cfg = result.winner, result.config
    sh = result.finetune
    how = {"inherited": "fine-tuned", "scratch": "trained from scratch"}[cfg.finetune_init]
    ft_txt = ""
    if sh:
        print(f"final pick: {len(sh)} candidates {how} ({cfg.finetune_epochs} epochs at most, successive halving): "
              + ", ".join(f"{r['final']:.1f}%" + (f" (stopped at epoch {r['epochs']})" if r["pruned"] else "") for r in sh))
        trainings = [f"{w['acc_scratch']:.2f}% from scratch"] if "acc_scratch" in w else []
        trainings += [f"{w['acc_finetuned']:.2f}% fine-tuned"] if "acc_finetuned" in w else []
        shipped = {"scratch": "from-scratch"}.get(w.get("weights", "fine-tuned"), w.get("weights", "fine-tuned"))
        ft_txt = "".join(f", {t}" for t in trainings) + (
            f", {cfg.finetune_epochs} epochs{' each' if len(trainings) > 1 else ''}; ships the {shipped} weights")
    lat = w["latency"]
    print(f"searched: {w['arch']}\n  top-1 {w['acc']:.2f}% (inherited{ft_txt}) | {lat['median_ms']:.3f} ms median "
          f"(IQR {lat['iqr_ms']:.3f}) <= {cfg.latency_ms:g} ms | {w['params']:,} params | {w['mflops']:.2f} MFLOPs")
    if w["shipped"]:
        print("shipped artefacts (batch 1, measured after export): " + ", ".join(
            f"{v['file']} {v['median_ms']:.3f} ms ({v['runtime']}, {v['memory_format']})"
            for v in w["shipped"].values()))
    for v in w["shipped"].values():
        if v["primary"] and v["noisy"]:
            print(f"warning: the latency of {v['file']} is unreliable: IQR {v['iqr_ms']:.3f} ms is over "
                  f"{NOISY_REL_IQR:.0%} of the median after a re-measurement; is another process using the CPU?")
        if v["primary"] and v["median_ms"] > cfg.latency_ms:
            print(f"warning: {v['file']} measured {v['median_ms']:.3f} ms after export, over the "
                  f"{cfg.latency_ms:g} ms budget")
        elif v["median_ms"] > cfg.latency_ms:
            print(f"note: {v['file']} ({v['runtime']}, {v['memory_format']}) measured {v['median_ms']:.3f} ms, over "
                  f"the {cfg.latency_ms:g} ms budget; the budget is checked on the artefact marked in report.md")
    if result.baseline is not None:
        b = result.baseline
        print(f"best preset in budget: {b['source']} {b['acc']:.2f}% at {b['latency']['median_ms']:.3f} ms")
    from nas_common import resolve_device
    from supernet.train import resolve_update

    print(f"supernet: {supernet_line(cfg.to_dict(), resolve_update(None, cfg.sandwich, resolve_device(cfg.device)))}")
    print(f"run folder: {result.run_dir} (report.md, {', '.join(result.files.values())}, pareto.png); "
          f"{result.timings['total']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
