"""Issue 11: what ships is what is measured; every artefact runs at any batch; preprocessing travels."""

import math

import numpy as np
import pytest
import torch
import torchvision
import yaml

from nas_data import load_data
from nas_training.engine import Recipe, accuracy
from search.export import (
    ARTEFACTS,
    export_model,
    load_artefact,
    load_model,
    make_transforms,
    measure_artefacts,
    preprocessing,
    torchvision_equivalent,
)
from search.latency import Conditions, LatencyPredictor, measure, measure_many
from search_space import Arch, SearchSpace, Task
from supernet import ShuffleNet
from supernet.train import train_model
from tests.helpers import randomize_bn

ARCH = Arch.parse("stem8|16:v2s0.5,v1g2|32:v1g2x2|64:v2s0.5|conv64|cls10")


def _model(arch: Arch = ARCH, seed: int = 0) -> ShuffleNet:
    torch.manual_seed(seed)
    return randomize_bn(ShuffleNet(arch), seed).eval()


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("export")
    model = _model()
    train_model(model, digits, Recipe(epochs=4, warmup_epochs=0, lr=0.1), device="cpu", progress=False)  # a real accuracy
    model.eval()
    acc = accuracy(model, digits.batches("val", batch_size=256))
    meta = {"val_acc": acc, "latency": {"env": {"memory_format": "channels_last"}}}
    files = export_model(model, out, input_size=32, meta=meta, data=digits)
    return model, out, files


def test_every_artefact_is_written(exported):
    _, out, files = exported
    assert files == {"arch": "arch.yaml", **ARTEFACTS}
    assert sorted(p.name for p in out.iterdir()) == sorted(files.values())  # no temporary file left


@pytest.mark.parametrize("batch", [1, 8])
def test_onnx_and_pt2_run_at_any_batch_and_match_eager(exported, batch):
    ort = pytest.importorskip("onnxruntime")
    model, out, _ = exported
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(load_artefact(out, "export")(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(load_artefact(out, "torchscript")(x), ref, rtol=0, atol=1e-5)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-4)
    assert isinstance(load_artefact(out, "onnx"), ort.InferenceSession)


def test_load_model_returns_the_memory_format_that_was_measured(exported, tmp_path):
    model, out, _ = exported
    m = load_model(out)
    assert m.memory_format == "channels_last"
    assert m.conv1[0].weight.is_contiguous(memory_format=torch.channels_last) and not m.conv1[0].weight.is_contiguous()
    assert load_model(out, memory_format="contiguous").conv1[0].weight.is_contiguous()
    export_model(model, tmp_path, input_size=32, onnx=False)  # no latency recorded: plain NCHW
    assert load_model(tmp_path).memory_format == "contiguous"
    assert load_model(tmp_path).conv1[0].weight.is_contiguous()
    assert load_model(tmp_path).transforms is None
    with pytest.raises(ValueError, match="memory_format: expected one of"):
        load_model(out, memory_format="nhwc")
    assert "transforms" not in dict(m.named_modules())  # the pipeline is an attribute, not a submodule
    assert list(m.state_dict()) == list(model.state_dict())


def test_preprocessing_round_trips_and_reproduces_the_recorded_accuracy(exported, digits):
    model, out, _ = exported
    m = load_model(out)
    pre = preprocessing(digits)
    assert m.meta["preprocess"] == pre and m.meta["categories"] == [str(i) for i in range(10)]
    assert pre["input_size"] == [32, 32] and pre["mean"] == [pytest.approx(v) for v in digits.mean]
    deploy = yaml.safe_load((out / "arch.yaml").read_text())["deploy"]
    assert deploy == {"preprocess": pre, "categories": m.meta["categories"]}
    assert Arch.from_yaml((out / "arch.yaml").read_text()) == ARCH  # the deploy section does not disturb the arch
    # a user's path: raw uint8 images -> the shipped transforms -> the shipped model
    x = m.transforms(digits.val_x)
    ref = next(digits.batches("val", batch_size=len(digits.val_y)))[0]
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-5)
    with torch.no_grad():
        pred = m(x).argmax(1)
    acc = 100 * int((pred == digits.val_y).sum()) / len(digits.val_y)
    assert acc == pytest.approx(m.meta["val_acc"], abs=1e-9) and acc > 30
    # a PIL image goes through the same pipeline (as with torchvision's weights.transforms())
    from PIL import Image

    pil = Image.fromarray(digits.val_x[0].permute(1, 2, 0).numpy())
    torch.testing.assert_close(m.transforms(pil), ref[0], rtol=0, atol=1e-5)
    # the same pipeline from the file alone (no model)
    again = make_transforms(yaml.safe_load((out / "arch.yaml").read_text())["deploy"]["preprocess"])
    torch.testing.assert_close(again(digits.val_x[:4]), ref[:4], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["export", "onnx", "torchscript", "model"])
def test_a_corrupt_or_partial_artefact_names_its_file(exported, tmp_path, kind):
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    _, out, _ = exported
    name = ARTEFACTS[kind]
    (tmp_path / name).write_bytes((out / name).read_bytes()[:200])
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_artefact(tmp_path, kind)
    with pytest.raises(ValueError, match="does not exist"):
        load_artefact(tmp_path / "nowhere", kind)
    with pytest.raises(ValueError, match="unknown kind"):
        load_artefact(out, "tflite")


def test_shipped_artefacts_are_measured_with_their_conditions(exported):
    pytest.importorskip("onnxruntime")
    _, out, files = exported
    ms = measure_artefacts(out, files, Conditions((1, 3, 32, 32), device="cpu", threads=1), rounds=2)
    assert list(ms) == ["model", "export", "torchscript", "onnx"]
    assert [(m.env["runtime"], m.env["memory_format"]) for m in ms.values()] == [
        ("eager", "channels_last"), ("eager", "contiguous"), ("eager", "contiguous"), ("onnxruntime", "contiguous")]
    assert all(m.env["threads"] == 1 and m.env["batch"] == 1 and len(m.samples_ms) == 20 for m in ms.values())
    assert all(0 < m.median_ms < 1e3 and math.isfinite(m.iqr_ms) for m in ms.values())


def test_measure_many_takes_one_runtime_per_model():
    cond = Conditions((1, 3, 32, 32), device="cpu")
    with pytest.raises(ValueError, match="one Conditions or one per model"):
        measure_many([_model()], [cond, cond.replace(runtime="torchscript")])
    with pytest.raises(ValueError, match="unknown runtime 'tvm'"):
        measure_many([_model()], [cond.replace(runtime="tvm")])


def test_onnxruntime_runtime_measures_and_predicts(tmp_path):
    pytest.importorskip("onnxruntime")
    m = measure(_model(), Conditions((1, 3, 32, 32), device="cpu", runtime="onnxruntime"), samples=20, warmup_runs=2)
    assert m.env["runtime"] == "onnxruntime" and m.env["memory_format"] == "contiguous" and 0 < m.median_ms < 1e3
    tiny = SearchSpace.from_dict({"name": "tiny-ort", "stem": {"channels": [8]},
                                  "stages": [{"depth": [1, 1], "channels": [16]}, {"depth": [1, 1], "channels": [32]},
                                             {"depth": [1, 1], "channels": [64]}],
                                  "units": {"v2": {"split": [0.5]}}, "last_conv": [0, 64]})
    p = LatencyPredictor.build(tiny, Conditions((1, 3, 16, 16), device="cpu", runtime="onnxruntime"),
                               Task(10, 16, False), calib_archs=10, cache_dir=tmp_path, progress=False)
    assert p.key["runtime"] == "onnxruntime"
    arch = tiny.sample(np.random.default_rng(0), num_classes=10, small_input=False)
    assert 0 < p.predict(arch) < 1e3


def test_onnxruntime_missing_is_one_clear_line(monkeypatch, capsys, tmp_path):
    import builtins

    from search.latency import check_runtime
    from search.run import main

    real = builtins.__import__

    def no_ort(name, *a, **k):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ValueError, match="pip install onnxruntime"):
        check_runtime("onnxruntime")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ValueError, match="pip install onnxruntime"):
        load_artefact(tmp_path, "onnx")
    capsys.readouterr()
    assert main(["--latency-ms", "5", "--runtime", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install onnxruntime" in err[0]


def test_unknown_runtime_exits_2(capsys):
    from search.run import main

    assert main(["--latency-ms", "5", "--runtime", "tflite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runtime" in err[0] and "onnxruntime" in err[0]


def test_a_v2_winner_loads_into_torchvision_shufflenetv2_strict():
    arch = Arch.parse("stem16|32:v2s0.5x2|64:v2s0.5|128:v2s0.5x3|conv256|cls10")
    call, why = torchvision_equivalent(arch)
    assert why == [] and call == ("torchvision.models.ShuffleNetV2(stages_repeats=[2, 1, 3], "
                                  "stages_out_channels=[16, 32, 64, 128, 256], num_classes=10)")
    ours = _model(arch, 3)
    tv = eval(call, {"torchvision": torchvision}).eval()
    tv.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(tv(x), ours(x), rtol=0, atol=1e-5)


def test_choices_outside_torchvision_are_named():
    call, why = torchvision_equivalent(Arch.parse("stem8:small|16:v2s0.25,v1g2|32:v1g2|64:v2s0.5|conv0|cls10"))
    assert call is None
    assert why == ["units other than V2 with split 0.5 (v1g2, v2s0.25)",
                   "the small-input stem (stride-1 conv1, no max pool)", "no last 1x1 conv (conv5)"]
