import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from search.latency import Conditions, LatencyPredictor, compare, measure, measure_many
from search.latency._predictor import cache_path, predictor_key
from search.latency._table import entries, table_specs
from search_space import Arch, SearchSpace, Task
from supernet import ShuffleNet

TINY = SearchSpace.from_dict({
    "name": "tiny-latency",
    "stem": {"channels": [8]},
    "stages": [{"depth": [1, 2], "channels": [16, 24]}, {"depth": [1, 2], "channels": [32]},
               {"depth": [1, 2], "channels": [64]}],
    "units": {"v1": {"groups": [1, 2]}, "v2": {"split": [0.5]}},
    "last_conv": [0, 64],
})
SHAPE = (1, 3, 16, 16)
CPU = Conditions(SHAPE, device="cpu")
TASK = Task(10, 16, False)


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))


def test_measure_returns_sane_statistics_and_its_environment():
    before = torch.get_num_threads()
    m = measure(tiny_model(), Conditions(SHAPE, device="cpu", threads=1), samples=50, warmup_s=0.05)
    assert len(m.samples_ms) == 50 and all(s > 0 for s in m.samples_ms)
    assert m.q25_ms <= m.median_ms <= m.q75_ms and m.iqr_ms == pytest.approx(m.q75_ms - m.q25_ms)
    assert m.median_ms == pytest.approx(float(np.median(m.samples_ms)))
    assert m.median_ms < 1000
    env = m.env
    assert env["device"] == "cpu" and env["runtime"] == "eager" and env["dtype"] == "float32"
    assert env["memory_format"] == "channels_last" and env["batch"] == 1 and env["threads"] == 1
    assert env["torch"] == torch.__version__ and env["device_name"].startswith("cpu")
    assert env["input_shape"] == list(SHAPE) and isinstance(env["stable"], bool)
    assert torch.get_num_threads() == before  # threads restored
    d = m.to_dict(samples=False)
    assert "samples_ms" not in d and d["median_ms"] == m.median_ms


def test_torchscript_runtime_and_interleaved_helpers():
    m = measure(tiny_model(), CPU.replace(runtime="torchscript"), samples=20, warmup_s=0.02)
    assert m.env["runtime"] == "torchscript" and m.median_ms > 0
    res = compare(tiny_model(), nn.Sequential(tiny_model(), nn.Flatten()), CPU, rounds=3, per_round=4)
    assert len(res["a"].samples_ms) == len(res["b"].samples_ms) == 3 * 2 * 4
    assert res["ratio"] == pytest.approx(res["b"].median_ms / res["a"].median_ms)
    ms = measure_many([tiny_model(), tiny_model()], CPU, rounds=2, per_round=3, warmup_s=0.01)
    assert [len(x.samples_ms) for x in ms] == [6, 6]


@pytest.mark.slow
def test_compile_runtime():
    m = measure(tiny_model(), CPU.replace(runtime="compile"), samples=10, warmup_s=0.01)
    assert m.env["runtime"] == "compile" and m.median_ms > 0


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(runtime="tensorrt"), r"unknown runtime 'tensorrt'; available: \['eager', 'torchscript', 'compile', 'onnxruntime'\]"),
        (dict(input_shape=(1, 3, 0, 16)), "must be positive"),
        (dict(input_shape=(1, 3, -4, 16)), "must be positive"),
        (dict(input_shape=(3, 16, 16)), "expected 4 integers"),
        (dict(dtype="float16", device="cpu"), "CUDA only"),
        (dict(dtype="int8"), "unknown dtype"),
        (dict(device="tpu"), "available"),
        (dict(threads=0), "threads"),
    ],
)
def test_bad_inputs_name_what_is_available(kwargs, msg):
    kw = dict(input_shape=SHAPE, device="cpu")
    kw.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        Conditions(**kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no CUDA GPU is available; available: \['cpu'\]"):
        Conditions(SHAPE, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_measurement():
    m = measure(tiny_model(), Conditions(SHAPE, device="cuda"), samples=100)
    assert m.env["device"].startswith("cuda") and m.env["memory_format"] == "contiguous" and m.median_ms > 0
    m16 = measure(tiny_model(), Conditions(SHAPE, device="cuda", dtype="float16"), samples=100)
    assert m16.env["dtype"] == "float16"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("latency-cache")
    p = LatencyPredictor.build(TINY, CPU, TASK, calib_archs=24, cache_dir=cache, progress=False)
    return p, cache


def test_predictor_table_covers_the_space_and_predicts_a_held_out_arch(built):
    """The table covers every held-out arch, and a law the calibration learns on 24 archs predicts
    4 archs it never saw exactly. Deterministic on purpose: how close the live predictor comes to
    a live measurement is benchmarks/latency_predictor.py's figure; asserted here it failed CI once
    on this shared CPU (1.07 ms predicted, 2.11 ms measured while the machine was busy)."""
    p, _ = built
    assert p.fit["table_entries"] == len(p.lut) > 20 and p.fit["n"] == 24
    rng = np.random.default_rng(99)
    held = [TINY.sample(rng, num_classes=10, small_input=False) for _ in range(4)]  # the table's stem
    for a in held:
        assert math.isfinite(p.predict(a)) and p.predict(a) > 0, str(a)
        assert p.raw(a) == pytest.approx(sum(p.lut[k] for k, *_ in entries(a, 16)))
    q = LatencyPredictor(key=p.key, lut=p.lut, coef=list(p.coef))
    seen = [TINY.sample(rng, num_classes=10, small_input=False) for _ in range(24)]
    law = np.r_[1.1, 0.9, 1.0, 0.01, 0.02, 0.015, 0.002, 0.1, 0.2, 0.04, np.zeros(10)]
    q.fit_calibration(seen, np.array([q.features(a) for a in seen]) @ law)
    np.testing.assert_allclose([q.predict(a) for a in held], np.array([q.features(a) for a in held]) @ law, rtol=1e-6)


def test_predictor_cache_round_trip_and_invalidation(built, monkeypatch):
    p, cache = built
    files = list(cache.glob("predictor-*.json"))
    assert len(files) == 1
    # a second build loads the cache: nothing is measured
    monkeypatch.setattr("search.latency._table.measure", lambda *a, **k: pytest.fail("re-measured"))
    monkeypatch.setattr("search.latency._predictor.measure_many", lambda *a, **k: pytest.fail("re-measured"))
    again = LatencyPredictor.build(TINY, CPU, TASK, calib_archs=24, cache_dir=cache)
    assert again.lut == p.lut and again.coef == p.coef and again.key == p.key
    assert again.conditions == CPU and again.task == TASK  # the key restores what it was built for
    # any key change addresses another cache entry
    for cond, task in ((CPU.replace(threads=2), TASK), (CPU.replace(input_shape=(1, 3, 24, 24)), Task(10, 24, False)),
                       (CPU, Task(5, 16, False)), (CPU.replace(runtime="torchscript"), TASK),
                       (CPU.replace(memory_format="contiguous"), TASK), (CPU, Task(10, 16, None))):
        k = predictor_key(TINY, cond, task)
        assert cache_path(k, cache) != files[0]
        assert k != p.key


def test_stale_or_corrupted_cache_is_rebuilt_with_a_warning(built, tmp_path):
    p, cache = built
    path = next(cache.glob("predictor-*.json"))
    target = tmp_path / path.name
    d = json.loads(path.read_text())
    d["key"]["torch"] = "0.0.1"  # stale: built by another torch
    target.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="stale, built for another torch"):
        LatencyPredictor.load(target, p.key)
    target.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        LatencyPredictor.load(target, p.key)
    with pytest.warns(RuntimeWarning, match="unreadable.*rebuilding"):
        rebuilt = LatencyPredictor.build(TINY, CPU, TASK, calib_archs=10, cache_dir=tmp_path, progress=False)
    assert set(rebuilt.lut) == set(p.lut)
    assert LatencyPredictor.load(target, p.key).coef == rebuilt.coef  # the rebuilt cache replaced the bad file


def test_predictor_refuses_archs_outside_its_table(built):
    p, _ = built
    from search_space import get_preset

    with pytest.raises(ValueError, match="not in the latency table"):
        p.predict(get_preset("shufflenet_v2_x0_5", 10))


def _state_of(model: nn.Module):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("helper", ["measure", "measure_many", "compare"])
def test_latency_helpers_leave_the_callers_model_as_they_found_it(helper):
    """Issue 12 case 1: measuring a model used to turn its 4-D weights into channels_last
    inference tensors and leave it in eval mode; the next SGD step then raised."""
    from search_space import get_preset

    torch.manual_seed(0)
    model = ShuffleNet(get_preset("shufflenet_v2_x0_5", 10, small_input=True)).train()
    before = _state_of(model)
    threads = torch.get_num_threads()
    shape = (1, 3, 32, 32)
    if helper == "measure":
        measure(model, Conditions(shape, device="cpu"), samples=5, warmup_s=0.0, warmup_runs=1, retries=0)
    elif helper == "measure_many":
        measure_many([model, model], Conditions(shape, device="cpu"), rounds=1, per_round=2, warmup_s=0.0,
                     warmup_runs=1, rewarm_runs=1)
    else:
        compare(model, model, Conditions(shape, device="cpu"), rounds=1, per_round=2)
    assert model.training and torch.is_grad_enabled() and torch.get_num_threads() == threads
    params = list(model.parameters())
    assert len(params) == 170 and sum(p.ndim == 4 for p in params) == 56
    assert sum(p.is_inference() for p in params) == 0
    assert sum(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in params) == 0
    after = _state_of(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    loss = model(x).logsumexp(1).mean()
    loss.backward()  # raised "Inference tensors cannot be saved for backward" before the fix
    opt.step()
    assert not torch.equal(model.conv1[0].weight, before["conv1.0.weight"])


def test_export_leaves_the_callers_model_as_it_found_it(tmp_path):
    """Sibling of case 1: export_model moved the caller's model to CPU/NCHW/eval in place."""
    from search.export import export_model
    from search_space import get_preset

    model = ShuffleNet(get_preset("shufflenet_v2_x0_5", 10)).train().to(memory_format=torch.channels_last)
    export_model(model, tmp_path, input_size=32, onnx=False)
    assert model.training
    assert model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv1[0].weight.is_contiguous()


def test_predictor_for_a_searched_stem_covers_both_variants(tmp_path):
    """Issue 10: the stem variant is searched, so one table holds both variants' blocks."""
    both = LatencyPredictor.build(TINY, CPU, Task(10, 16, None), calib_archs=20, cache_dir=tmp_path, progress=False)
    one = {s: {k for a in [TINY.sample(np.random.default_rng(i), num_classes=10, small_input=s) for i in range(40)]
               for k, *_ in entries(a, 16)} for s in (False, True)}
    assert one[False] <= set(both.lut) and one[True] <= set(both.lut)
    assert {"stem|8|0|16", "stem|8|1|16"} <= set(both.lut)
    assert both.key["small_input"] is None
    for s in (False, True):
        a = TINY.sample(np.random.default_rng(5), num_classes=10, small_input=s)
        assert math.isfinite(both.predict(a))
    fastest, ms = both.fastest(TINY)
    assert ms == pytest.approx(both.predict(fastest))
    # the fastest over both variants is no slower than the fastest of either variant alone
    for s in (False, True):
        alone = LatencyPredictor(key=dict(both.key, small_input=s), lut=both.lut, coef=both.coef)
        assert ms <= alone.fastest(TINY)[1] + 1e-12
        assert alone.fastest(TINY)[0].small_input is s
        # one variant of the both-stem table (a stratified stem search): that variant's fastest, as
        # the one-variant predictor finds it
        assert both.fastest(TINY, small_input=s) == alone.fastest(TINY)
    assert min(both.fastest(TINY, small_input=s)[1] for s in (False, True)) == ms
    with pytest.raises(ValueError, match=r"small_input: this predictor's table covers small_input=\[False\], not "
                                         r"True; build it for that stem variant"):
        LatencyPredictor(key=dict(both.key, small_input=False), lut=both.lut, coef=both.coef).fastest(TINY, small_input=True)


def _stalled_build(tmp_path, monkeypatch, stalls_ms):
    """Build the TINY predictor while the timer adds ``stalls_ms[i]`` to every sample of the i-th
    measurement of one table entry (the stall of issue 11: another process took the CPU)."""
    import search.latency._measure as lat
    import search.latency._table as table

    key = "v2s0.5|24|24|1|2|1"
    target = table_specs(TINY, TASK)[key][0]
    made = {"n": 0}
    init, timer, build_entry = lat._Runner.__init__, lat._Runner.time_once, table.build_entry

    def marked(spec):
        m = build_entry(spec)
        m.stall_target = spec == target
        return m

    def tagged_init(self, model, *a, **k):
        init(self, model, *a, **k)
        self.stall = 0.0
        if getattr(model, "stall_target", False):
            self.stall = stalls_ms[made["n"]] if made["n"] < len(stalls_ms) else 0.0
            made["n"] += 1

    monkeypatch.setattr(table, "build_entry", marked)
    monkeypatch.setattr(lat._Runner, "__init__", tagged_init)
    monkeypatch.setattr(lat._Runner, "time_once", lambda self: timer(self) + self.stall)
    build = lambda: LatencyPredictor.build(TINY, CPU, TASK, calib_archs=10, cache_dir=tmp_path,  # noqa: E731
                                           progress=False, rebuild=True)
    return key, build


def test_a_stalled_table_entry_is_detected_and_remeasured(tmp_path, monkeypatch):
    key, build = _stalled_build(tmp_path, monkeypatch, [50.0])  # the first measurement stalls, the re-measures do not
    p = build()
    assert key in p.fit["remeasured"]  # (on a busy machine a genuine outlier may be re-measured too)
    first, *again = p.fit["remeasured"][key]
    assert first > 50.0 and len(again) == 2 and max(again) < 5.0
    assert p.lut[key] == min(again)
    assert len(list(tmp_path.glob("predictor-*.json"))) == 1


def test_a_table_that_stays_wrong_is_refused_and_not_cached(tmp_path, monkeypatch):
    key, build = _stalled_build(tmp_path, monkeypatch, [50.0, 20.0, 80.0])  # every reading stalls, differently
    with pytest.raises(ValueError, match=r"latency table: 1 entry measured inconsistently .*" + key.replace("|", r"\|")
                       + r".*Nothing was cached"):
        build()
    assert list(tmp_path.glob("predictor-*.json")) == []


def test_conditions_resolve_their_defaults_and_round_trip_through_the_environment_record():
    c = Conditions(SHAPE, device="cpu", threads=None)
    assert c.device == "cpu" and c.threads == torch.get_num_threads() and c.memory_format == "channels_last"
    assert c.torch_memory_format == torch.channels_last and c.torch_dtype == torch.float32 and c.batch == 1
    env = c.env()
    assert env["input_shape"] == [1, 3, 16, 16] and env["threads"] == c.threads and env["device_name"].startswith("cpu")
    assert Conditions.from_env(env) == c
    assert Conditions.from_env(env, threads=1).threads == 1
    m = measure(tiny_model(), c.replace(threads=1), samples=5, warmup_s=0.0, retries=0)
    assert m.conditions == c.replace(threads=1)  # every figure carries the conditions it was measured under
    with pytest.raises(ValueError, match=r"lacks \['runtime'\]"):
        Conditions.from_env({k: v for k, v in env.items() if k != "runtime"})


def test_onnxruntime_conditions_are_nchw_float32():
    pytest.importorskip("onnxruntime")
    assert Conditions(SHAPE, device="cpu", runtime="onnxruntime", memory_format="channels_last").memory_format == "contiguous"


def test_models_measured_side_by_side_share_device_threads_and_shape():
    with pytest.raises(ValueError, match=r"one per model \(2\), got 3"):
        measure_many([tiny_model(), tiny_model()], [CPU] * 3)
    with pytest.raises(ValueError, match="share"):
        measure_many([tiny_model(), tiny_model()], [CPU, CPU.replace(threads=2)])
    ms = measure_many([tiny_model(), tiny_model()], [CPU, CPU.replace(memory_format="contiguous")], rounds=1,
                      per_round=5, warmup_s=0.0)
    assert [m.env["memory_format"] for m in ms] == ["channels_last", "contiguous"]


def test_predictor_conditions_must_match_its_task():
    with pytest.raises(ValueError, match=r"input_shape \(1, 3, 32, 32\) \(batch 1, the task's 32px\)"):
        LatencyPredictor.build(TINY, CPU, Task(10, 32, False))
    with pytest.raises(ValueError, match="input_shape"):
        LatencyPredictor.build(TINY, CPU.replace(input_shape=(4, 3, 16, 16)), TASK)


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("last_conv", [0, 64])
def test_stem_and_head_entries_are_the_real_models_own_layers(small, last_conv):
    """Table entries are cut from ShuffleNet itself: with the same weights, the stem entry and the
    head entry compute exactly what the network's stem and head compute."""
    from search.latency._table import build_entry

    torch.manual_seed(0)
    arch = TINY.sample(np.random.default_rng(3), num_classes=10, small_input=small)
    arch = type(arch)(stem=arch.stem, stages=arch.stages, last_conv=last_conv, num_classes=10, small_input=small)
    net = ShuffleNet(arch).eval()
    (_, stem_spec, stem_shape), *_, (_, head_spec, head_shape) = entries(arch, 16)
    stem, head = build_entry(stem_spec).eval(), build_entry(head_spec).eval()
    assert not stem.net.load_state_dict({k: v for k, v in net.state_dict().items() if k.startswith("conv1")},
                                        strict=False).unexpected_keys
    assert not head.net.load_state_dict({k: v for k, v in net.state_dict().items() if k.startswith(("conv5", "fc"))},
                                        strict=False).unexpected_keys
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feat = net.forward_stem(x)
        assert x.shape[1:] == stem_shape[1:] and torch.equal(stem(x), feat)  # shapes: the entries' inputs
        mid = net.stage4(net.stage3(net.stage2(feat)))
        assert mid.shape[1:] == head_shape[1:] and torch.equal(head(mid), net(x))


def test_calibration_minimises_the_error_relative_to_each_measurement(built):
    p, _ = built
    q = LatencyPredictor(key=p.key, lut=p.lut, coef=list(p.coef))
    rng = np.random.default_rng(7)
    archs = [TINY.sample(rng, num_classes=10, small_input=False) for _ in range(40)]
    X = np.array([q.features(a) for a in archs])
    assert X.shape == (40, 20) and not X[:, 10:].any()  # ImageNet-stem archs fill the first half only
    truth = np.r_[0.9, 1.1, 1.0, 0.02, 0.01, 0.03, 0.001, 0.2, 0.3, 0.05, np.zeros(10)]
    exact = X @ truth
    q.fit_calibration(archs, exact)  # noiseless measurements are reproduced
    np.testing.assert_allclose([q.predict(a) for a in archs], exact, rtol=1e-6)
    assert q.coef[10:] == q.coef[:10]  # no small-stem arch: that variant is predicted by the same law, never by 0
    assert q.fit["model"] == "shared" and q.fit["cv_mape"] == {}  # one stem: nothing to choose
    # with noise, the fitted coefficients are the minimum of sum(((pred - y) / y) ** 2): its gradient is zero ...
    y = exact * np.exp(rng.normal(0, 0.1, len(archs))) + np.linspace(0, 3 * exact.max(), len(archs))
    q.fit_calibration(archs, y)
    rel_grad = X.T @ ((X @ np.array(q.coef) - y) / y**2)
    assert np.abs(rel_grad).max() < 1e-8 * np.abs(X.T @ (1 / y)).max()
    # ... and it is not the plain least-squares fit in ms, which the slowest networks dominate
    ols, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.abs(X.T @ ((X @ ols - y) / y**2)).max() > 1e-3 * np.abs(X.T @ (1 / y)).max()
    assert q.fit["n"] == 40 and q.fit["calibrated_mape"] == pytest.approx(
        100 * np.mean(np.abs(X @ np.array(q.coef) - y) / y))
    # the fitted data travels with the predictor: refitting it gives the same coefficients
    kept = q.fit["calibration"]
    assert kept["archs"] == [str(a) for a in archs] and kept["measured_ms"] == [float(v) for v in y]
    r = LatencyPredictor(key=p.key, lut=p.lut, coef=list(p.coef))
    r.fit_calibration([Arch.parse(a) for a in kept["archs"]], kept["measured_ms"])
    np.testing.assert_allclose(r.coef, q.coef, rtol=1e-9)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"measured_ms\[39\]: every measurement must be a positive number"):
            q.fit_calibration(archs, np.r_[y[:-1], bad])
    with pytest.raises(ValueError, match="measured_ms: 39 measurements for 40 architectures"):
        q.fit_calibration(archs, y[:-1])
    with pytest.raises(ValueError, match="archs: the calibration needs at least 10 architectures of each stem "
                                         "variant it covers, got 9 with the imagenet stem"):
        q.fit_calibration(archs[:9], y[:9])
    with pytest.raises(ValueError, match="archs: no architectures to calibrate on"):
        q.fit_calibration([], [])


def test_each_stem_variant_has_its_own_calibration(built):
    """Two stems whose networks scale differently with the same features are both fitted exactly:
    one shared set of coefficients could not (the small-input stem runs every block on 4x larger maps)."""
    p, _ = built
    q = LatencyPredictor(key=dict(p.key, small_input=None), lut=p.lut, coef=list(p.coef))
    rng = np.random.default_rng(3)
    archs = [TINY.sample(rng, num_classes=10, small_input=i % 2 == 1) for i in range(30)]
    small_lut = {}
    for a in archs:  # the small stem's blocks are absent from an ImageNet-stem table: time them as 1 ms each
        small_lut.update({k: 1.0 for k, *_ in entries(a, 16) if k not in q.lut})
    q.lut = {**q.lut, **small_lut}
    X = np.array([q.features(a) for a in archs])
    small = np.array([a.small_input for a in archs])
    assert not X[small, :10].any() and not X[~small, 10:].any()
    assert np.array_equal(X[small, 10:], np.array([q._stem_features(a) for a in archs])[small])
    truth = np.r_[0.9, 1.1, 1.0, 0.02, 0.01, 0.03, 0.001, 0.2, 0.3, 0.05, 1.2, 0.7, 0.8, 0.0, 0.04, 0.01, 0.002, 0.1,
                  0.05, 0.3]
    y = X @ truth
    q.fit_calibration(archs, y)
    np.testing.assert_allclose([q.predict(a) for a in archs], y, rtol=1e-6)
    assert q.fit["calibrated_mape"] < 1e-6
    assert q.fit["model"] == "per_stem" and q.fit["cv_mape"]["per_stem"] < 1e-6 < q.fit["cv_mape"]["shared"]
    shared, *_ = np.linalg.lstsq((X[:, :10] + X[:, 10:]) / y[:, None], np.ones(len(y)), rcond=None)
    assert np.abs((X[:, :10] + X[:, 10:]) @ shared - y).max() / y.max() > 1e-3  # one set cannot fit both
    with pytest.raises(ValueError, match="at least 10 architectures of each stem variant it covers, got 5 with the "
                                         "small stem"):
        keep = [i for i, a in enumerate(archs) if not a.small_input or i < 10]  # 15 ImageNet-stem, 5 small-stem
        q.fit_calibration([archs[i] for i in keep], y[keep])


def test_a_noisy_calibration_keeps_one_shared_set_of_coefficients(built):
    """When both stems follow one law and the measurements are noisy, the per-stem model's twice as many
    coefficients fit noise: cross-validation picks the shared one, copied into both halves."""
    p, _ = built
    q = LatencyPredictor(key=dict(p.key, small_input=None), lut=p.lut, coef=list(p.coef))
    rng = np.random.default_rng(4)
    archs = [TINY.sample(rng, num_classes=10, small_input=i % 2 == 1) for i in range(30)]
    q.lut = {**q.lut, **{k: 1.0 for a in archs for k, *_ in entries(a, 16) if k not in q.lut}}
    X = np.array([q.features(a) for a in archs])
    law = np.array([0.9, 1.1, 1.0, 0.02, 0.01, 0.03, 0.001, 0.2, 0.3, 0.05])
    y = (X[:, :10] + X[:, 10:]) @ law * np.exp(rng.normal(0, 0.08, len(archs)))
    q.fit_calibration(archs, y)
    cv = q.fit["cv_mape"]
    assert q.fit["model"] == "shared" and cv["shared"] < cv["per_stem"]
    assert q.fit_summary() == (f"calibration shared (CV MAPE per stem {cv['per_stem']:.2f}%, shared {cv['shared']:.2f}%) "
                               f"on 30 archs: MAPE raw {q.fit['raw_mape']:.2f}% -> calibrated "
                               f"{q.fit['calibrated_mape']:.2f}%")
    assert q.coef[:10] == q.coef[10:]
    shared, *_ = np.linalg.lstsq((X[:, :10] + X[:, 10:]) / y[:, None], np.ones(len(y)), rcond=None)
    np.testing.assert_allclose(q.coef[:10], shared, rtol=1e-9)


def test_cross_validation_folds_are_stratified_by_stem(built):
    """13 small-stem archs among 43: with the folds dealt per stem, every training fold keeps at least 10 of
    them (the per-stem coefficients' count), so noiseless per-stem data cross-validate exactly; and a fit
    on one stem only predicts the other with the same law (a small-stem arch is never predicted 0 ms)."""
    p, _ = built
    q = LatencyPredictor(key=dict(p.key, small_input=None), lut=p.lut, coef=list(p.coef))
    rng = np.random.default_rng(5)
    archs = [TINY.sample(rng, num_classes=10, small_input=i < 13) for i in range(43)]
    q.lut = {**q.lut, **{k: 1.0 for a in archs for k, *_ in entries(a, 16) if k not in q.lut}}
    X = np.array([q.features(a) for a in archs])
    truth = np.r_[0.9, 1.1, 1.0, 0.02, 0.01, 0.03, 0.001, 0.2, 0.3, 0.05, 1.2, 0.7, 0.8, 0.0, 0.04, 0.01, 0.002, 0.1,
                  0.05, 0.3]
    q.fit_calibration(archs, X @ truth)
    assert q.fit["model"] == "per_stem" and q.fit["cv_mape"]["per_stem"] < 1e-6
    big = [a for a in archs if not a.small_input]
    q.fit_calibration(big, X[13:] @ truth)
    assert q.fit["model"] == "shared" and q.coef[:10] == q.coef[10:]
    a = archs[0]
    assert a.small_input and q.predict(a) == pytest.approx(float(np.dot(q.coef[:10], q._stem_features(a))), rel=1e-12)
    assert q.predict(a) > 0


def test_too_few_calibration_archs_for_the_stem_variants_is_refused_before_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr("search.latency._predictor.measure_table", lambda *a, **k: pytest.fail("measured"))
    with pytest.raises(ValueError, match=r"calib_archs: the calibration fits 10 coefficients per stem variant, so 2 "
                                         r"variant\(s\) need at least 20 architectures; got 19"):
        LatencyPredictor.build(TINY, CPU, Task(10, 16, None), calib_archs=19, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="1 variant.* need at least 10 architectures; got 9"):
        LatencyPredictor.build(TINY, CPU, TASK, calib_archs=9, cache_dir=tmp_path, progress=False)
