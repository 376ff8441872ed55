"""benchmarks/latency_predictor.py --drift: the best single rescale per session, an upper bound."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("latency_predictor", ROOT / "benchmarks" / "latency_predictor.py")
lp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lp)


def _result(pred, meas):
    archs = [{"name": f"random{k}", "predicted_ms": p, "measured_ms": m} for k, (p, m) in enumerate(zip(pred, meas))]
    return {"archs": archs + [{"name": "shufflenet_v1_g1", "predicted_ms": 9.0, "measured_ms": [1.0, 1.0]}]}


def test_drift_check_finds_the_factor_that_undoes_a_uniform_slowdown():
    meas1 = [1.0, 2.0, 3.0, 4.0]
    pred = [m / 1.2 for m in meas1]  # every prediction 16.7% fast against session 1
    meas2 = [p_ for p_ in pred[:3]] + [2 * pred[3]]  # session 2: three equal to the predictions, one 2x slow
    rows = lp.drift_check(_result(pred, [[a, b] for a, b in zip(meas1, meas2)]))
    assert [r["session"] for r in rows] == [1, 2]
    assert rows[0]["n"] == 4  # the preset is not a random arch
    assert rows[0]["within_10"] == 0.0
    assert rows[0]["within_10_rescaled"] == 100.0
    # every factor f with |f / 1.2 - 1| <= 10% fits all four; the one nearest 1 is kept: about 0.9 x 1.2
    assert 1.08 <= rows[0]["scale"] <= 1.081
    assert rows[1]["within_10"] == 75.0 and rows[1]["scale"] == 1.0 and rows[1]["within_10_rescaled"] == 75.0


def test_drift_mode_prints_each_session_and_refuses_a_file_without_sessions(tmp_path):
    good = tmp_path / "r.json"
    good.write_text(json.dumps(_result([1.0, 2.0], [[1.0, 1.05], [2.0, 2.5]])))
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency_predictor.py"), "--drift", str(good)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("session 1: 2 random archs within 10% 100.0%; best single factor x 1.000: 100.0%")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"archs": [{"name": "random0", "predicted_ms": 1.0, "measured_ms": 1.0}]}))
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency_predictor.py"), "--drift", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1
    assert "bad.json: not a latency_predictor result (ValueError: --drift: the result holds no random archs measured per session" in run.stderr
    bad.write_text(json.dumps({"archs": [{"name": "random0", "measured_ms": [1.0, 1.0]}]}))  # no prediction
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency_predictor.py"), "--drift", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and "not a latency_predictor result (KeyError: 'predicted_ms')" in run.stderr
