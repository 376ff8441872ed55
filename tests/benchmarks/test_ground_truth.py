"""benchmarks/ground_truth.py: the truth file's format, selection, and a tiny resumable run."""

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search_space import SearchSpace, count_flops

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ground_truth", ROOT / "benchmarks" / "ground_truth.py")
gt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gt)
SPACE = SearchSpace.load("default")


def _truth():
    run = {"seed": 0, "recipe": {"epochs": 1, "lr": 0.05}, "val_acc": 61.25, "best_val_acc": 62.5,
           "train_seconds": 3.0, "history": []}
    net = {"name": "shufflenet_v1_g1", "role": "preset", "arch": "stem24|144:v1g1x4|288:v1g1x8|576:v1g1x4|conv0|cls10",
           "family": "v1", "params": 1, "mflops": 2.9, "latency_ms": 1.4, "latency_iqr_ms": 0.1, "runs": [run]}
    data = {"spec": "imagefolder:x@10", "split": "hash", "val_fraction": 0.35, "image_size": 32, "num_classes": 10,
            "train": 6, "val": 4}
    return {"format": gt.FORMAT, "settings": {}, "data": data, "latency": {}, "networks": [net]}


def test_truth_round_trips(tmp_path):
    t = _truth()
    gt._write_json(t, tmp_path / "t.json")
    assert gt.load_truth(tmp_path / "t.json") == t
    assert gt.truth_accuracy(t["networks"][0]) == 61.25


@pytest.mark.parametrize("edit,msg", [
    (lambda t: t["networks"][0]["runs"][0].pop("recipe"), r"runs\[0\]: missing recipe"),
    (lambda t: t["networks"][0].update(colour="red"), r"networks\[0\]: unknown key\(s\) \['colour'\]"),
    (lambda t: t.update(extra=1), r"unknown key\(s\) \['extra'\]"),
    (lambda t: t["data"].pop("split"), r"data: missing key\(s\) \['split'\]"),
    (lambda t: t.update(format="other/1"), "format 'other/1'"),
    (lambda t: t["networks"][0]["runs"][0].update(val_acc=101.0), r"val_acc: expected a top-1 in \[0, 100\]"),
    (lambda t: t["networks"].append(copy.deepcopy(t["networks"][0])), "listed twice"),
    (lambda t: t["networks"][0].update(role="winner"), "role: expected 'preset' or 'sampled'"),
])
def test_bad_truth_files_name_what_is_wrong(tmp_path, edit, msg):
    t = _truth()
    edit(t)
    (tmp_path / "t.json").write_text(json.dumps(t))
    with pytest.raises(ValueError, match=msg):
        gt.load_truth(tmp_path / "t.json")


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        gt.load_truth(tmp_path / "none.json")
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        gt.load_truth(tmp_path / "b.json")


def test_selection_spans_families_stems_and_flops():
    sel = gt.select_sampled(SPACE, 6, 2, num_classes=10, image_size=32, seed=0, pool=60, small_max_mflops=50.0)
    assert len(sel) == 6 and len({str(a) for _, a in sel}) == 6
    fams = [f for f, _ in sel]
    assert fams[1] == fams[5] == "v2"  # a V2 unit fits every position; each stem cycles v1, v2, mixed
    for k in (0, 3, 4):  # V1 wherever buildable (a V1 unit cannot narrow the network: there V2 stays)
        blocks = [b for st in sel[k][1].stages for b in st.blocks]
        assert sum(b.unit == "v1" for b in blocks) >= len(blocks) / 2
    assert [a.small_input for _, a in sel] == [False] * 4 + [True] * 2
    big = [count_flops(a, 32) for _, a in sel[:4]]
    assert big[0] < big[3]  # slots climb the FLOPs quantiles
    assert all(count_flops(a, 32) <= 50e6 for _, a in sel[4:])
    for _, a in sel:
        SPACE.validate(a)
    again = gt.select_sampled(SPACE, 6, 2, num_classes=10, image_size=32, seed=0, pool=60, small_max_mflops=50.0)
    assert [str(a) for _, a in again] == [str(a) for _, a in sel]


def test_family_sampler_uses_one_unit_type_where_it_can():
    rng = np.random.default_rng(0)
    for fam in ("v1", "v2"):
        for _ in range(20):
            a = gt.sample_family(SPACE, rng, fam, num_classes=10, small_input=False)
            other = [b for st in a.stages for b in st.blocks[1:] if b.unit != fam]
            assert other == []  # stride-1 units always have a choice of either type
    with pytest.raises(ValueError, match="family"):
        gt.sample_family(SPACE, rng, "v3", num_classes=10, small_input=False)


def test_tiny_run_writes_a_valid_truth_and_resumes(tmp_path, capsys):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    argv = ["--root", str(root), "--per-class", "12", "--val-fraction", "0.35", "--epochs", "1", "--sampled", "2",
            "--small-stem", "1", "--repeat", "1", "--out", str(tmp_path / "gt.json"), "--work", str(tmp_path / "w"),
            "--quiet"]
    assert gt.main(argv) == 0
    t = gt.load_truth(tmp_path / "gt.json")
    assert len(t["networks"]) == 9 + 2
    assert sum(len(n["runs"]) for n in t["networks"]) == 12
    assert [n["name"] for n in t["networks"] if len(n["runs"]) == 2] == ["shufflenet_v1_g1"]
    assert all(n["latency_ms"] > 0 and n["runs"][0]["recipe"]["epochs"] == 1 for n in t["networks"])
    assert t["data"]["train"] + t["data"]["val"] == 24
    before = (tmp_path / "gt.json").read_text()
    capsys.readouterr()
    assert gt.main(argv) == 0  # everything done: nothing retrained, file unchanged
    assert (tmp_path / "gt.json").read_text() == before and "seed 0:" not in capsys.readouterr().out
    other = list(argv)
    other[other.index("--epochs") + 1] = "2"
    assert gt.main(other) == 2  # other settings, same file: refused
    assert "holds a truth made with another epochs" in capsys.readouterr().err
    d = json.loads(before)  # a truth written when the split's module had its old name is still this truth
    d["data"]["split"] = d["data"]["split"].replace("(nas_data, imagefolder)", "(supernet.data, imagefolder)")
    (tmp_path / "gt.json").write_text(json.dumps(d))
    assert gt.main(argv) == 0
