#!/usr/bin/env bash
# GPU check (issue 11): one short script for a lent GPU machine, at most ~8 minutes.
#
#   benchmarks/gpu_check.sh            # on a CUDA GPU
#   benchmarks/gpu_check.sh --dry-run  # the same steps on the CPU, tiny settings (CI runs this)
#
# Steps, each printing its figures:
#   1. the latency predictor for the device (CUDA events on a GPU), its accuracy on fresh
#      architectures and the presets against two interleaved measurement sessions, and the
#      measurement's own repeatability (benchmarks/latency_predictor.py);
#   2. the main job end to end: python -m search.run --latency-ms 5 on the embedded digits data;
#   3. the winner's latency re-measured from the exported artefact (search.export.load_model);
#   4. training throughput of the supernet step and of a static network (AMP on a GPU).
# Target on a GPU: >= 99% of predictions for fresh architectures within +-10% of each session's
# measurement, and the winner re-measured within budget.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-results/gpu_check}
BUDGET=${BUDGET:-5}

if [ "${1:-}" = "--dry-run" ]; then
    DEVICE=cpu
    mkdir -p "$OUT"
    SPACE="$OUT/tiny.yaml"
    cat > "$SPACE" <<'YAML'
name: gpu-check-tiny
stem: {channels: [8], small_input: [false, true]}
stages:
  - {depth: [1, 2], channels: [16, 24]}
  - {depth: [1, 2], channels: [32]}
  - {depth: [1, 1], channels: [64]}
units: {v1: {groups: [1, 2]}, v2: {split: [0.5]}}
last_conv: [0, 64]
YAML
    PRED_ARGS=(--space "$SPACE" --archs 8 --calib-archs 20 --rounds 3 --sessions 2 --out "$OUT/predictor.json")
    echo "calib_archs: 20" > "$OUT/dry.yaml"
    RUN_ARGS=(--space "$SPACE" --epochs 1 --trials 4 --config "$OUT/dry.yaml" --finetune-top 2 --finetune-epochs 1)
    STEPS=3
    export SHUFFLENAS_CACHE="$OUT/cache"  # the dry run never touches the user's caches
elif [ -n "${1:-}" ]; then
    echo "usage: benchmarks/gpu_check.sh [--dry-run]" >&2
    exit 2
else
    DEVICE=cuda
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: no CUDA GPU here; run with --dry-run for the CPU rehearsal" >&2
        exit 2
    fi
    PRED_ARGS=(--archs 100 --calib-archs 100 --rounds 10 --sessions 2 --out "$OUT/predictor.json")
    RUN_ARGS=(--epochs 20 --trials 40)
    STEPS=50
fi
mkdir -p "$OUT"
t0=$(date +%s)
echo "== 1/4 latency predictor on $DEVICE"
"$PY" benchmarks/latency_predictor.py --device "$DEVICE" "${PRED_ARGS[@]}" | grep -E "^(device|predictor|calibrated|raw|session [0-9]+ vs)"
echo "== 2/4 python -m search.run --latency-ms $BUDGET --device $DEVICE ($(( $(date +%s) - t0 )) s so far)"
"$PY" -m search.run --latency-ms "$BUDGET" --device "$DEVICE" --out "$OUT/runs" --quiet "${RUN_ARGS[@]}" | tail -n 6
echo "== 3/4 the winner re-measured from its exported artefact ($(( $(date +%s) - t0 )) s so far)"
"$PY" - "$OUT/runs/latest" "$DEVICE" "$BUDGET" <<'PYEOF'
import json, sys
from pathlib import Path
from search.export import load_model
from search.latency import Conditions, measure
run, device, budget = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
model = load_model(run)
env = model.meta["latency"]["env"]
m = measure(model, Conditions.from_env(env, device=device))
status = "within" if m.median_ms <= budget else "OVER"
print(f"model.pt re-measured: {m.summary()} on {env['device_name']} ({env['runtime']}, {env['memory_format']}); "
      f"at search time {model.meta['latency']['median_ms']:.3f} ms; {status} the {budget:g} ms budget")
PYEOF
echo "== 4/4 training throughput ($(( $(date +%s) - t0 )) s so far)"
"$PY" - "$DEVICE" "$STEPS" <<'PYEOF'
import sys, time
import numpy as np
import torch
from torch import nn
from search_space import SearchSpace, Task, get_preset
from supernet import ShuffleNet, SuperNet
from supernet.sampling import make_path_sampler
device, steps = sys.argv[1], int(sys.argv[2])
amp = device == "cuda"
space = SearchSpace.load("default")
x = torch.randn(128, 3, 32, 32, device=device)
y = torch.randint(0, 10, (128,), device=device)
sample = make_path_sampler("fair", space, Task(10, 32, None), seed=0)
rng = np.random.default_rng(0)
for name, model, forward in (
        ("supernet (fair paths, both stems)", SuperNet(space, num_classes=10), lambda m, k: m(x, sample(rng, k))),
        ("static shufflenet_v2_x1_0", ShuffleNet(get_preset("shufflenet_v2_x1_0", 10)), lambda m, k: m(x))):
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    times = []
    for k in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = nn.functional.cross_entropy(forward(model, k), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    med = float(np.median(times[2:]))
    print(f"{name}: {med * 1e3:.1f} ms/step median over {steps} steps, {128 / med:.0f} images/s "
          f"(batch 128, 32x32, {'AMP fp16' if amp else 'fp32'}, {device})")
PYEOF
echo "gpu_check: done in $(( $(date +%s) - t0 )) s"
