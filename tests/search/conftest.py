"""A tiny search setting shared by the run, Ray and retrain tests."""

import pytest
import yaml

TINY = {
    "name": "tiny-run",
    "stem": {"channels": [8]},
    "stages": [{"depth": [1, 2], "channels": [16, 24]}, {"depth": [1, 2], "channels": [32]},
               {"depth": [1, 1], "channels": [64]}],
    "units": {"v1": {"groups": [1, 2]}, "v2": {"split": [0.5]}},
    "last_conv": [0, 64],
}


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """(base argv for ``search.run`` on the tiny space with isolated caches, results folder)."""
    monkeypatch.setenv("SHUFFLENAS_CACHE", str(tmp_path / "cache"))  # read at call time (common)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"calib_archs": 20, "top_k": 3, "finetune_top": 0}))  # fine-tune: its own test
    out = tmp_path / "results"
    base = ["--space", str(space), "--out", str(out), "--epochs", "2", "--input-size", "32", "--quiet",
            "--device", "cpu", "--config", str(cfg)]
    return base, out
