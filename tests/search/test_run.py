"""End to end: python -m search.run on tiny settings (Optuna backend)."""

import json

import pytest
import torch

from search.export import load_model
from search.run import main
from search_space import Arch
from supernet.data import load_data
from supernet.train import accuracy


def test_search_exports_a_model_that_fits_and_reloads(env, capsys):
    base, out = env
    assert main(base + ["--latency-ms", "1000", "--trials", "6"]) == 0
    run = (out / "latest").resolve()
    for f in ("model.pt", "model.ts", "arch.yaml", "trials.csv", "pareto.png", "report.md", "run.yaml", "result.json"):
        assert (run / f).is_file(), f
    res = json.loads((run / "result.json").read_text())
    w = res["winner"]
    assert res["n_trials"] == 6
    assert w["latency"]["median_ms"] <= 1000 and w["latency"]["env"]["runtime"] == "eager"
    arch = Arch.from_yaml((run / "arch.yaml").read_text())
    assert str(arch) == w["arch"]
    data = load_data("digits")
    m = load_model(run)
    acc = accuracy(m, data.batches("val", batch_size=256))
    assert acc == pytest.approx(w["acc"], abs=1e-9)
    ts = torch.jit.load(str(run / "model.ts"))
    x = next(data.batches("val", batch_size=64))[0]
    with torch.no_grad():
        torch.testing.assert_close(ts(x), m(x), rtol=0, atol=1e-5)
    assert accuracy(ts, data.batches("val", batch_size=256)) == pytest.approx(w["acc"], abs=1e-9)
    import onnx

    onnx.checker.check_model(str(run / "model.onnx"))
    assert "\\|" in (run / "report.md").read_text()  # arch strings escaped inside the Markdown table
    assert "searched:" in capsys.readouterr().out


def test_resume_keeps_every_finished_trial(env, monkeypatch):
    base, out = env
    import search.evaluate as ev

    real = ev.Scorer.__call__
    calls = {"n": 0}

    def flaky(self, arch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, arch)

    monkeypatch.setattr(ev.Scorer, "__call__", flaky)
    assert main(base + ["--latency-ms", "1000", "--trials", "6"]) == 130
    run = next(p for p in out.iterdir() if p.is_dir() and p.name != "latest")
    assert not (out / "latest").exists()  # an interrupted run does not become 'latest'
    import optuna

    from search.backends.optuna import open_study

    before = {t.number: (t.params, t.values) for t in open_study(run, seed=0).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    assert len(before) == 3
    monkeypatch.setattr(ev.Scorer, "__call__", real)
    assert main(["--resume", str(run), "--quiet"]) == 0
    after = {t.number: (t.params, t.values) for t in open_study(run, seed=0).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())


@pytest.mark.parametrize("budget", ["0", "-1", "nan", "inf", "fast"])
def test_bad_budgets_are_usage_errors(budget, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--latency-ms", budget])
    assert e.value.code == 2 and "latency-ms" in capsys.readouterr().err


def test_budget_below_the_fastest_arch(env, capsys):
    base, out = env
    assert main(base + ["--latency-ms", "0.0001", "--trials", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "below the fastest architecture" in err[0] and "ms measured" in err[0]
    assert not (out / "latest").exists() and not out.exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a ShuffleNAS run folder" in capsys.readouterr().err
    assert main([]) == 2
    assert "budget is required" in capsys.readouterr().err
