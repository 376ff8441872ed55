"""What do a final pick's candidates score with their BN running statistics, and re-estimated?

Reads every candidate checkpoint a search run's final pick left (``finetune*/<hash>.pt`` in the run
folder) and validates its weights on the run's own data split twice: with the BN statistics the
checkpoint holds, and with BN re-estimated (``supernet.recalibrate_bn``) on the first N of the
one-shot score's training batches (``search.evaluate.calibration_batches``), for each N of
``--batches``. Before session 21 the checkpoints held BN running averages; since, they hold
statistics re-estimated on 2 batches (``search.finetune.BN_CALIB_BATCHES``), so on a new run the
first two columns agree at N = 2.

    python benchmarks/bn_reestimation.py results/RUN_FOLDER --batches 6 4 2 1 --out benchmarks/results/bn_reestimation_s21.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a search run folder (results/<time>-<budget>ms)")
    ap.add_argument("--batches", type=int, nargs="+", default=[6, 4, 2, 1])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from nas_data import load_data
    from nas_training.engine import accuracy
    from search.evaluate import EvalConfig, calibration_batches
    from search_space import Arch
    from supernet import ShuffleNet, recalibrate_bn

    run = Path(args.run)
    meta = yaml.safe_load((run / "run.yaml").read_text()) if (run / "run.yaml").is_file() else None
    if not meta or "config" not in meta:
        ap.error(f"{run}: not a search run folder (no run.yaml)")
    ckpts = sorted(run.glob("finetune*/*.pt"))
    if not ckpts:
        ap.error(f"{run}: no final-pick checkpoints (finetune*/*.pt)")
    cfg = meta["config"]
    data = load_data(cfg["data"], image_size=cfg["input_size"], val_fraction=cfg["val_fraction"])
    calib = calibration_batches(data, EvalConfig(calib_batches=max(args.batches)), torch.device("cpu"), True)
    rows = []
    print(f"{'checkpoint':<44} {'epoch':>5} {'stored BN':>10} " + " ".join(f"{f're-est. {n}':>10}" for n in args.batches))
    for f in ckpts:
        state = torch.load(f, map_location="cpu", weights_only=False)
        arch = Arch.parse(state["config"]["arch"])

        def net(arch=arch, weights=state["model"]):
            m = ShuffleNet(arch).to(memory_format=torch.channels_last)
            m.load_state_dict(weights)
            return m.eval()

        def val(m) -> float:
            return accuracy(m, data.batches("val", batch_size=256, channels_last=True))

        row = {"checkpoint": f"{f.parent.name}/{f.name}", "arch": str(arch), "epoch": state["epoch"],
               "stored": val(net()), "reestimated": {}}
        for n in args.batches:
            m = net()
            used = recalibrate_bn(m, calib[:n])
            row["reestimated"][str(used)] = val(m)
        rows.append(row)
        print(f"{row['checkpoint']:<44} {row['epoch']:>5} {row['stored']:>9.2f}% "
              + " ".join(f"{v:>9.2f}%" for v in row["reestimated"].values()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"run": str(run), "data": data.describe(), "rows": rows}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
