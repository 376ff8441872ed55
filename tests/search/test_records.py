"""search.records: the one trial record, its CSV and its bad inputs."""

import pytest

from search.records import TrialRecord, read_trials_csv, write_trials_csv


def rec(i, lat, acc=50.0, **kw):
    return TrialRecord(**{"number": i, "source": "sampled", "arch": f"a{i}", "acc": acc, "pred_ms": lat,
                          "feasible": True, "evaluated": True, "params": 1000 + i, "mflops": 0.5, **kw})


def test_trials_csv_round_trip(tmp_path):
    recs = [rec(0, 1.5, 61.25), rec(1, 2.5, 0.0, feasible=False, evaluated=False, rejected=True), rec(2, 1.0, measured_ms=1.1),
            TrialRecord(number=3, arch="a3", source="bad", state="failed", error="RuntimeError: boom")]
    write_trials_csv(reversed(recs), tmp_path / "t.csv")  # written by number whatever the order
    back = read_trials_csv(tmp_path / "t.csv")
    assert [r.arch for r in back] == ["a0", "a1", "a2", "a3"]
    assert back[0].acc == 61.25 and back[0].latency_ms == 1.5 and back[0].params == 1000
    assert back[1].feasible is False and back[1].evaluated is False and back[0].feasible is True
    assert [r.rejected for r in back] == [False, True, False, False]
    assert back[0].measured_ms is None and back[2].measured_ms == 1.1
    assert back[3].state == "failed" and back[3].error == "RuntimeError: boom" and back[3].latency_ms is None
    assert recs == back  # every field survives exactly
    recs[0] = recs[0].replace(constraint=-0.25)
    write_trials_csv(recs, tmp_path / "t.csv")
    assert read_trials_csv(tmp_path / "t.csv")[0].constraint == -0.25


def test_latency_is_the_measured_one_when_there_is_one():
    r = rec(0, 2.0)
    assert r.latency_ms == 2.0 and r.to_dict()["latency_ms"] == 2.0
    m = r.replace(measured_ms=2.5)
    assert m.latency_ms == 2.5 and m.pred_ms == 2.0 and r.measured_ms is None  # records are values
    assert TrialRecord.from_dict(m.to_dict()) == m


def test_bad_records_name_the_field():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['acc_top5'\]"):
        TrialRecord.from_dict({"number": 0, "arch": "a", "acc_top5": 1.0})
    with pytest.raises(ValueError, match=r"missing \['arch'\]"):
        TrialRecord.from_dict({"number": 0})
    with pytest.raises(ValueError, match="state: unknown trial state 'pruned'"):
        TrialRecord(number=0, arch="a", state="pruned")


def test_a_csv_that_is_not_a_trials_file_is_named(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"x.csv: not a trials.csv of this ShuffleNAS \(missing columns \['number'"):
        read_trials_csv(tmp_path / "x.csv")


def test_a_trials_csv_from_before_the_constraint_column_still_loads(tmp_path):
    f = tmp_path / "old.csv"
    f.write_text("number,source,arch,acc,latency_ms,pred_ms,measured_ms,feasible,evaluated,params,mflops,state,error\n"
                 "0,sampled,a0,61.25,1.5,1.5,,True,True,1000,0.5,complete,\n")
    (r,) = read_trials_csv(f)
    assert (r.arch, r.acc, r.pred_ms, r.measured_ms, r.constraint, r.feasible) == ("a0", 61.25, 1.5, None, None, True)
