"""benchmarks/search_objective.py: the figures it reports for one arm's trials."""

import importlib.util
from pathlib import Path

from search.records import TrialRecord
from search_space import get_preset

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("search_objective", ROOT / "benchmarks" / "search_objective.py")
so = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(so)

BIG = str(get_preset("shufflenet_v2_x1_0", 10))
SMALL = str(get_preset("shufflenet_v2_x0_5", 10, small_input=True))
G3 = str(get_preset("shufflenet_v1_g3", 10))


def rec(arch, acc, lat, feasible=True, evaluated=True):
    return TrialRecord(number=-1, arch=arch, acc=acc, pred_ms=lat, feasible=feasible, evaluated=evaluated)


def test_summarize_counts_distinct_feasible_networks_and_their_best():
    recs = [rec(BIG, 20.0, 3.0), rec(SMALL, 30.0, 4.5), rec(SMALL, 30.0, 4.5),  # a repeat counts once
            rec(G3, 40.0, 6.0, feasible=False), rec(G3, 0.0, 9.0, feasible=False, evaluated=False),
            rec(G3, 10.0, 1.0)]
    s = so.summarize(recs, top=2)
    assert s == {"trials": 6, "rejected": 0, "feasible": 3, "best": 30.0, "top_mean": 25.0,
                 "top_latency_ms": [4.5, 3.0], "top_small_stem": 1, "median_latency_ms": 4.5}
    # rejected draws (rejection sampling: predicted over the budget, drawn again) are counted apart
    over = rec(G3, 0.0, 12.0, feasible=False, evaluated=False).replace(rejected=True)
    assert so.summarize(recs + [over, over], top=2) == {**s, "rejected": 2}
    assert so.summarize(recs, top=8)["top_mean"] == 20.0  # all three feasible ones
    empty = so.summarize([rec(G3, 40.0, 6.0, feasible=False)], top=8)
    assert (empty["feasible"], empty["best"], empty["top_mean"], empty["top_latency_ms"]) == (0, None, None, [])
