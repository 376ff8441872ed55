"""benchmarks/bn_reestimation.py: a final pick's checkpoints validated with stored and re-estimated BN."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from search.config import SearchConfig
from search_space import Arch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bn_reestimation", ROOT / "benchmarks" / "bn_reestimation.py")
bre = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bre)


def test_a_new_checkpoint_holds_the_statistics_of_two_batches(tmp_path, capsys):
    """Since session 21 a candidate's checkpoint holds BN re-estimated on 2 batches: validated as stored
    it scores exactly what re-estimating on 2 batches gives."""
    from nas_data import load_data
    from search.finetune import FinetuneConfig, checkpoint_folder, finetune_step

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"config": SearchConfig(latency_ms=5.0).to_dict()}))
    ft = FinetuneConfig(top=1, epochs=2, init="scratch")
    arch = Arch.parse("stem8|16:v2s0.5|32:v1g2|64:v2s0.5|conv64|cls10")
    step, _ = finetune_step(None, [arch], load_data("digits"), ft, device="cpu", seed=1,
                            ckpt_dir=run / checkpoint_folder(ft), supernet_id="x")
    acc = step(0, 1)
    out = tmp_path / "bn.json"
    assert bre.main([str(run), "--batches", "2", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["epoch"] == 1 and rows[0]["checkpoint"].startswith("finetune-scratch-e2-bn2/")
    assert rows[0]["stored"] == pytest.approx(acc, abs=1e-9) == pytest.approx(rows[0]["reestimated"]["2"], abs=1e-9)
    assert set(rows[0]["reestimated"]) == {"2", "1"}


def test_a_folder_without_a_final_pick_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bre.main([str(tmp_path)])
    assert e.value.code == 2 and "not a search run folder (no run.yaml)" in capsys.readouterr().err
