"""Latency on the target device: measurement protocol, A/B comparison, predictor.

Protocol (GUIDE.md section 4): eval mode and ``torch.inference_mode()``; the
input preallocated on the device, nothing copied in the timed region; explicit
thread count on CPU; ``cudnn.benchmark`` and CUDA events + synchronize on GPU;
warm-up of at least ``warmup_runs`` runs and ``warmup_s`` seconds; 100+ timed
samples; the median with its IQR (raw samples kept); a re-measurement when
IQR/median exceeds ``max_rel_iqr``. Every figure carries its environment:
device name, torch version, runtime mode, dtype, memory format, batch,
threads, input shape.

Runtimes: ``eager`` (default), ``torchscript`` (trace + freeze), ``compile``
(``torch.compile``), ``onnxruntime`` (the model exported to ONNX, opset 17, run by
an ONNX Runtime ``InferenceSession``: CPU execution provider with ``threads``
intra-op threads, the CUDA provider on a GPU (needs onnxruntime-gpu; its timing
includes the copies of the numpy input and output); NCHW input, fp32, whatever the
memory format asked). fp32 by default, fp16/bf16 on CUDA. Batch 1 by default.

``LatencyPredictor``: a per-block lookup table measured on the device (keyed
by unit type and configuration, channels, stride and feature-map size) plus a
linear calibration fitted on end-to-end measurements of random architectures
(features: table sums per unit type, block counts, FLOPs and memory access
cost: blocks timed alone run with hot caches, in a network they do not; on
this CPU the calibration with MAC cut the error of the table-sum fit by half).
Persisted as JSON keyed by
device, runtime, input shape, threads, dtype and torch version; a cache whose
key differs, or that cannot be read, is rebuilt with a warning.

CLI: ``python -m search.latency build|check``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import logging
import math
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from search_space import Arch, SearchSpace, Site
from supernet import ShuffleNet
from supernet.common import atomic_write, cache_root, progress_bar, resolve_device
from supernet.units import make_unit

__all__ = [
    "RUNTIMES",
    "DTYPES",
    "Measurement",
    "measure",
    "measure_many",
    "compare",
    "LatencyPredictor",
    "device_name",
    "check_runtime",
    "ort_session",
]

log = logging.getLogger(__name__)
RUNTIMES = ("eager", "torchscript", "compile", "onnxruntime")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PREDICTOR_FORMAT = "shufflenas.latency/3"


# ---------------------------------------------------------------------------- checks
def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        raise ValueError(f"input_shape: expected 4 integers (batch, channels, height, width), got {input_shape!r}")
    if any(v <= 0 for v in shape):
        raise ValueError(f"input_shape: every dimension must be positive, got {shape}")
    return shape  # type: ignore[return-value]


def check_runtime(runtime: str) -> str:
    """``runtime`` if known and importable; else ``ValueError`` naming the choices or the fix."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: unknown runtime {runtime!r}; available: {list(RUNTIMES)}")
    if runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError("runtime: 'onnxruntime' needs the onnxruntime package (pip install onnxruntime, "
                             "or onnxruntime-gpu for CUDA)") from None
    return runtime


def ort_session(model_or_path, *, device: torch.device, threads: int, example: torch.Tensor | None = None):
    """An ONNX Runtime ``InferenceSession`` for a module (exported to ONNX in memory, opset 17,
    from ``example``) or an ``.onnx`` file: the CUDA provider on a GPU, else the CPU provider
    with ``threads`` intra-op threads and sequential execution.

    Raises:
        ValueError: the file is missing, corrupt or not a model ONNX Runtime can load (names it).
    """
    import io

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    providers = (["CUDAExecutionProvider"] if device.type == "cuda" else []) + ["CPUExecutionProvider"]
    def check(sess):
        if device.type == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
            raise ValueError("runtime: onnxruntime has no CUDA execution provider here (the CPU wheel is "
                             "installed); pip install onnxruntime-gpu, or measure on the CPU")
        return sess

    if isinstance(model_or_path, nn.Module):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(copy.deepcopy(model_or_path).float().cpu().to(memory_format=torch.contiguous_format),
                              (example.float().cpu().contiguous(),), buf, input_names=["input"],
                              output_names=["logits"], opset_version=17, dynamo=False)
        return check(ort.InferenceSession(buf.getvalue(), opts, providers=providers))
    path = Path(model_or_path)
    if not path.is_file():
        raise ValueError(f"onnx: {str(path)!r} does not exist")
    try:
        sess = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own error types
        raise ValueError(f"onnx: {str(path)!r} cannot be loaded by ONNX Runtime ({str(e).splitlines()[0][:200]}); "
                         f"re-export it (search.export.export_model)") from None
    return check(sess)


def _check_dtype(dtype: str, dev: torch.device) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype: unknown dtype {dtype!r}; available: {list(DTYPES)}")
    if dtype != "float32" and dev.type != "cuda":
        raise ValueError(f"dtype: {dtype} is measured on CUDA only; on {dev.type} use float32")
    return DTYPES[dtype]


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu: " + (platform.processor() or platform.machine())


# ---------------------------------------------------------------------------- measurement
@dataclass
class Measurement:
    """Latency of one model in milliseconds, with its raw samples and environment."""

    median_ms: float
    iqr_ms: float
    q25_ms: float
    q75_ms: float
    samples_ms: list[float]
    env: dict[str, Any]
    attempts: int = 1

    @property
    def rel_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    def summary(self) -> str:
        return f"{self.median_ms:.3f} ms (IQR {self.iqr_ms:.3f} ms, n={len(self.samples_ms)})"

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not samples:
            d.pop("samples_ms")
        return d


def _stats(samples: list[float], env: dict[str, Any], attempts: int) -> Measurement:
    q25, med, q75 = np.percentile(samples, [25, 50, 75])
    return Measurement(float(med), float(q75 - q25), float(q25), float(q75), list(samples), env, attempts)


class _Runner:
    """A copy of a model prepared for timing: runtime applied, input preallocated on the device.

    The caller's model is never touched: mode, device, dtype, memory format and
    parameters (which ``inference_mode`` would turn into inference tensors) stay
    as they were, so it can go on training."""

    def __init__(self, model: nn.Module, input_shape, dev: torch.device, runtime: str, dtype: torch.dtype,
                 memory_format: torch.memory_format, threads: int = 1) -> None:
        self.dev = dev
        if runtime == "onnxruntime":  # fp32; on CUDA the timing includes the host<->device copies of input/output
            if dtype != torch.float32:
                raise ValueError(f"dtype: the onnxruntime runtime measures float32 models only, got {dtype}")
            with torch.inference_mode(False), torch.no_grad():
                x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
                self.session = ort_session(model, device=dev, threads=threads, example=x)
            self.feed = {"input": x.numpy()}
            self.model = lambda _x: self.session.run(None, self.feed)
            self.x = None
            return
        with torch.inference_mode(False), warnings.catch_warnings():
            # a deep-copied ScriptModule (a loaded model.ts) holds non-leaf parameters: .to() warns about .grad
            warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
            model = copy.deepcopy(model)
            model = model.eval().to(device=dev, dtype=dtype)
            if memory_format == torch.channels_last:
                model = model.to(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(input_shape, generator=g).to(device=dev, dtype=dtype)
        self.x = x.contiguous(memory_format=memory_format)
        self.dev = dev
        with torch.inference_mode():
            if runtime == "torchscript":
                with warnings.catch_warnings():  # torch.jit is deprecated upstream but still ships
                    warnings.simplefilter("ignore", FutureWarning)
                    model = torch.jit.freeze(torch.jit.trace(model, self.x, check_trace=False))
            elif runtime == "compile":
                model = torch.compile(model)
        self.model = model

    def run(self) -> None:
        self.model(self.x)

    def time_once(self) -> float:
        if self.dev.type == "cuda" and self.x is not None:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.model(self.x)
            end.record()
            torch.cuda.synchronize(self.dev)
            return float(start.elapsed_time(end))
        t = time.perf_counter()
        self.model(self.x)
        return (time.perf_counter() - t) * 1e3


class _Threads:
    def __init__(self, threads: int | None, dev: torch.device) -> None:
        self.threads = threads if threads is not None else torch.get_num_threads()
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads: must be a positive integer, got {threads!r}")
        self.dev = dev

    def __enter__(self) -> int:
        self.prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        if self.dev.type == "cuda":
            self.prev_bench = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
        return self.threads

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.prev)
        if self.dev.type == "cuda":
            torch.backends.cudnn.benchmark = self.prev_bench


def _env(dev, runtime, dtype, memory_format, input_shape, threads) -> dict[str, Any]:
    return {
        "device": str(dev),
        "device_name": device_name(dev),
        "torch": str(torch.__version__),
        "runtime": runtime,
        "dtype": dtype,
        "memory_format": "contiguous" if runtime == "onnxruntime" else memory_format,  # ORT takes NCHW
        "batch": input_shape[0],
        "input_shape": list(input_shape),
        "threads": threads,
    }


def _memory_format(name: str | None, dev: torch.device) -> tuple[str, torch.memory_format]:
    name = name or ("channels_last" if dev.type == "cpu" else "contiguous")
    formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    if name not in formats:
        raise ValueError(f"memory_format: unknown {name!r}; available: {list(formats)}")
    return name, formats[name]


def _warm(runner: _Runner, warmup_runs: int, warmup_s: float) -> None:
    t0 = time.perf_counter()
    n = 0
    while n < warmup_runs or time.perf_counter() - t0 < warmup_s:
        runner.run()
        n += 1
    if runner.dev.type == "cuda":
        torch.cuda.synchronize(runner.dev)


def measure(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    device: str | torch.device | None = None,
    runtime: str = "eager",
    threads: int | None = 1,
    dtype: str = "float32",
    memory_format: str | None = None,
    samples: int = 100,
    warmup_runs: int | None = None,
    warmup_s: float = 0.5,
    max_rel_iqr: float = 0.10,
    retries: int = 2,
) -> Measurement:
    """Measure the latency of ``model`` (see module docstring for the protocol).

    Args:
        model: any module taking one ``input_shape`` tensor.
        input_shape: ``(batch, channels, height, width)``, batch 1 for latency.
        device: ``cpu``/``cuda``; default GPU when present.
        runtime: ``eager``, ``torchscript`` or ``compile``.
        threads: CPU threads during the measurement (default 1; explicit for reproducibility).
        dtype: ``float32``; ``float16``/``bfloat16`` on CUDA.
        memory_format: ``channels_last`` (CPU default) or ``contiguous`` (CUDA default).
        samples: timed runs per attempt (>= 100 recommended).
        warmup_runs: minimum warm-up runs (default 20 on CPU, 50 on CUDA), and at least ``warmup_s``.
        max_rel_iqr: re-measure (up to ``retries`` times) while IQR/median is above this.
    """
    shape = _check_shape(input_shape)
    dev = resolve_device(device)
    check_runtime(runtime)
    tdtype = _check_dtype(dtype, dev)
    mf_name, mf = _memory_format(memory_format, dev)
    if samples < 5:
        raise ValueError(f"samples: need at least 5, got {samples}")
    warmup_runs = warmup_runs if warmup_runs is not None else (50 if dev.type == "cuda" else 20)
    with _Threads(threads, dev) as nthreads, torch.inference_mode():
        runner = _Runner(model, shape, dev, runtime, tdtype, mf, nthreads)
        env = _env(dev, runtime, dtype, mf_name, shape, nthreads)
        best: Measurement | None = None
        for attempt in range(1, retries + 2):
            _warm(runner, warmup_runs, warmup_s)
            m = _stats([runner.time_once() for _ in range(samples)], env, attempt)
            if best is None or m.rel_iqr < best.rel_iqr:
                best = m
            if m.rel_iqr <= max_rel_iqr:
                break
        assert best is not None
        best.attempts = attempt
        env["stable"] = best.rel_iqr <= max_rel_iqr
    return best


def measure_many(
    models: Sequence[nn.Module],
    *,
    input_shape: Sequence[int],
    device: str | torch.device | None = None,
    runtime: str | Sequence[str] = "eager",
    threads: int | None = 1,
    dtype: str = "float32",
    memory_format: str | None | Sequence[str | None] = None,
    rounds: int = 10,
    per_round: int = 10,
    warmup_runs: int | None = None,
    warmup_s: float = 0.2,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    rewarm_runs: int = 20,
) -> list[Measurement]:
    """Measure several models interleaved: ``rounds`` rounds, each timing every model
    ``per_round`` times in a shuffled order, so machine drift hits all of them alike.
    Each model's turn starts with ``rewarm_runs`` untimed runs: after another model has
    run, one run is not enough to bring its weights back into cache (on a 2-core EPYC,
    1 re-warm run read 10 models 5-30% slower than each measured alone; 20 runs, 0-6%).
    ``runtime`` and ``memory_format`` take one value for all models or one per model (the
    shipped artefacts of a run are measured side by side this way); ``models`` entries
    measured with ``onnxruntime`` may also be ``.onnx`` paths.

    Raises:
        ValueError: a bad shape, device, dtype, runtime or memory format; per-model lists of
            another length than ``models``."""
    shape = _check_shape(input_shape)
    dev = resolve_device(device)
    tdtype = _check_dtype(dtype, dev)
    warmup_runs = warmup_runs if warmup_runs is not None else (50 if dev.type == "cuda" else 20)
    rng = np.random.default_rng(seed)
    n = len(models)
    runtimes = [runtime] * n if isinstance(runtime, str) else list(runtime)
    formats = [memory_format] * n if memory_format is None or isinstance(memory_format, str) else list(memory_format)
    if len(runtimes) != n or len(formats) != n:
        raise ValueError(f"runtime/memory_format: expected one value or one per model ({n}), "
                         f"got {len(runtimes)} and {len(formats)}")
    for rt in runtimes:
        check_runtime(rt)
    mfs = [_memory_format(f, dev) for f in formats]
    with _Threads(threads, dev) as nthreads, torch.inference_mode():
        runners = [_Runner(m, shape, dev, rt, tdtype, mf, nthreads) for m, rt, (_, mf) in zip(models, runtimes, mfs)]
        envs = [_env(dev, rt, dtype, name, shape, nthreads) for rt, (name, _) in zip(runtimes, mfs)]
        for r in runners:
            _warm(r, warmup_runs, warmup_s)
        samples: list[list[float]] = [[] for _ in runners]
        for k in range(rounds):
            for i in rng.permutation(len(runners)):
                _warm(runners[i], rewarm_runs, 0.0)  # untimed runs re-warm caches after the previous model
                samples[i].extend(runners[i].time_once() for _ in range(per_round))
            if progress is not None:
                progress(k + 1, rounds)
    return [_stats(s, env, 1) for s, env in zip(samples, envs)]


def compare(a: nn.Module, b: nn.Module, *, input_shape: Sequence[int], rounds: int = 20, per_round: int = 10,
            **kw: Any) -> dict[str, Any]:
    """A/B latency comparison, interleaved ABBA; returns both measurements and ``ratio = b / a``."""
    shape = _check_shape(input_shape)
    dev = resolve_device(kw.pop("device", None))
    runtime = check_runtime(kw.pop("runtime", "eager"))
    tdtype = _check_dtype(kw.pop("dtype", "float32"), dev)
    mf_name, mf = _memory_format(kw.pop("memory_format", None), dev)
    threads = kw.pop("threads", 1)
    if kw:
        raise TypeError(f"compare: unexpected arguments {sorted(kw)}")
    with _Threads(threads, dev) as nthreads, torch.inference_mode():
        ra, rb = (_Runner(a, shape, dev, runtime, tdtype, mf, nthreads), _Runner(b, shape, dev, runtime, tdtype, mf, nthreads))
        env = _env(dev, runtime, "float32" if tdtype == torch.float32 else str(tdtype).split(".")[-1], mf_name, shape, nthreads)
        warm = 50 if dev.type == "cuda" else 20
        _warm(ra, warm, 0.3)
        _warm(rb, warm, 0.3)
        sa: list[float] = []
        sb: list[float] = []
        for _ in range(rounds):
            for r, s in ((ra, sa), (rb, sb), (rb, sb), (ra, sa)):
                _warm(r, 20, 0.0)
                s.extend(r.time_once() for _ in range(per_round))
    ma, mb = _stats(sa, env, 1), _stats(sb, dict(env), 1)
    return {"a": ma, "b": mb, "ratio": mb.median_ms / ma.median_ms}


# ---------------------------------------------------------------------------- predictor
class _Stem(nn.Module):
    def __init__(self, stem: int, small: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 1 if small else 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return self.maxpool(self.conv1(x))


class _Head(nn.Module):
    def __init__(self, c: int, last: int, num_classes: int) -> None:
        super().__init__()
        self.conv5 = nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True)) if last else nn.Identity()
        self.fc = nn.Linear(last or c, num_classes)

    def forward(self, x):
        return self.fc(self.conv5(x).mean([2, 3]))


def _stem_key(stem: int, small: bool, size: int) -> str:
    """Lookup-table key of the stem (a block's key is :attr:`search_space.Site.key`; the head's below)."""
    return f"stem|{stem}|{int(small)}|{size}"


def _head_key(c: int, last_conv: int, num_classes: int, h: int) -> str:
    """Lookup-table key of the head: stage-4 channels, last conv, classes, map side."""
    return f"head|{c}|{last_conv}|{num_classes}|{h}"


def _entries(arch: Arch, input_size: int) -> list[tuple[str, tuple, tuple[int, ...]]]:
    """(key string, constructor args, input shape) for every lookup-table entry of ``arch``."""
    out = [(_stem_key(arch.stem, arch.small_input, input_size), ("stem", arch.stem, arch.small_input),
            (1, 3, input_size, input_size))]
    out += [_block_entry(s) for s in arch.sites(input_size)]
    c, h = arch.stages[-1].channels, arch.spatial_sizes(input_size)[-1]
    out.append((_head_key(c, arch.last_conv, arch.num_classes, h), ("head", c, arch.last_conv, arch.num_classes),
                (1, c, h, h)))
    return out


def _block_entry(site: Site) -> tuple[str, tuple, tuple[int, ...]]:
    """(key, constructor args, input shape) of a block's table entry."""
    h = site.in_size
    return (site.key, ("block", str(site.block), site.in_channels, site.out_channels, site.stride, site.first_grouped),
            (1, site.in_channels, h, h))


def _build_entry(spec: tuple) -> nn.Module:
    from search_space import Block

    if spec[0] == "stem":
        return _Stem(spec[1], spec[2])
    if spec[0] == "head":
        return _Head(spec[1], spec[2], spec[3])
    _, b, cin, cout, stride, fg = spec
    return make_unit(Block.parse(b), cin, cout, stride, first_grouped=fg)


@dataclass
class LatencyPredictor:
    """Lookup table + calibration for one (device, runtime, input shape, threads, dtype, torch).

    Build with :meth:`build` (loads the JSON cache when its key matches);
    :meth:`predict` returns milliseconds for any arch of the space.
    """

    key: dict[str, Any]
    lut: dict[str, float]
    coef: list[float]  # latency = coef . features(arch)
    fit: dict[str, Any] = field(default_factory=dict)

    FEATURES = ("lut_v1_ms", "lut_v2_ms", "lut_stem_head_ms", "n_v1", "n_v1_shuffle", "n_v2", "mflops", "mmac",
                "const")

    # ---------------------------------------------------------------- prediction
    def features(self, arch: Arch) -> list[float]:
        """Table sums per unit type, block counts, FLOPs and memory access cost (the calibration's inputs).

        Blocks timed alone run with hot caches; in a network they do not. On this
        CPU the in-network time grew with the memory access cost (ShuffleNet V2's
        MAC), so MAC and FLOPs enter the calibration beside the table sums.
        """
        from search_space import count_flops, count_mac

        size = self.key["input_shape"][-1]
        missing = []
        sums = {"v1": 0.0, "v2": 0.0, "other": 0.0}
        for key, spec, _ in _entries(arch, size):
            if key not in self.lut:
                missing.append(key)
                continue
            kind = spec[1][:2] if spec[0] == "block" else "other"
            sums[kind] += self.lut[key]
        if missing:
            raise ValueError(
                f"arch: {len(missing)} block(s) not in the latency table (first: {missing[0]}); "
                f"the predictor was built for another space or input size; rebuild it"
            )
        n_v1 = sum(b.unit == "v1" for st in arch.stages for b in st.blocks)
        # V1 units with g > 1 run a channel shuffle (4 more ops); at batch 1 per-op overhead dominates
        n_shuffle = sum(b.unit == "v1" and b.groups > 1 for st in arch.stages for b in st.blocks)
        return [sums["v1"], sums["v2"], sums["other"], float(n_v1), float(n_shuffle), float(sum(arch.depths) - n_v1),
                count_flops(arch, size) / 1e6, count_mac(arch, size) / 1e6, 1.0]

    def raw(self, arch: Arch) -> float:
        """Uncalibrated per-block table sum (ms)."""
        f = self.features(arch)
        return f[0] + f[1] + f[2]

    def predict(self, arch: Arch) -> float:
        """Predicted end-to-end latency in milliseconds (the calibrated linear model).

        The linear fit can extrapolate below zero for networks smaller than any it was
        calibrated on (-0.08 ms for the fastest arch of the default space at 32x32 on a
        2-core EPYC). The raw table sum is no floor to clamp to: for tiny blocks it
        exceeded the measured network (0.96 vs 0.58 ms), so callers near the floor measure
        (``search.run`` does) instead of trusting the prediction."""
        return float(np.dot(self.coef, self.features(arch)))

    def fastest(self, space: SearchSpace) -> tuple[Arch, float]:
        """The architecture of ``space`` with the smallest predicted latency (exact DP over the
        table at minimum depths; the calibration's table coefficient is positive)."""
        from search_space import Stage

        size = self.key["input_shape"][-1]
        ncls = self.key["num_classes"]

        def cost(site: Site) -> float:
            return self.lut.get(site.key, math.inf)

        best: Arch | None = None
        best_ms = math.inf
        for small, stem in itertools.product(_stem_variants(space, self.key["small_input"]), space.stem_channels):
            sizes = _probe_arch(space, ncls, small).spatial_sizes(size)
            states = {stem: (self.lut.get(_stem_key(stem, small, size), math.inf), [])}
            for i, ss in enumerate(space.stages):
                nxt = {}
                for cout in ss.channels:
                    at = Site(i, 1, cout, cout, in_size=sizes[i + 1])
                    rest = min(space.valid_blocks(at), key=lambda b: cost(at.with_block(b)))
                    rest_ms = (ss.min_depth - 1) * cost(at.with_block(rest)) if ss.min_depth > 1 else 0.0
                    for cin, (ms, stages) in states.items():
                        at0 = Site(i, 0, cin, cout, in_size=sizes[i])
                        first = min(space.valid_blocks(at0), key=lambda b: cost(at0.with_block(b)))
                        total = ms + cost(at0.with_block(first)) + rest_ms
                        if total < nxt.get(cout, (math.inf,))[0]:
                            nxt[cout] = (total, stages + [Stage(cout, (first,) + (rest,) * (ss.min_depth - 1))])
                states = nxt
            for _, stages in states.values():
                for last in space.last_conv:
                    arch = Arch(stem=stem, stages=tuple(stages), last_conv=last, num_classes=ncls, small_input=small)
                    pred = self.predict(arch)
                    if pred < best_ms:
                        best, best_ms = arch, pred
        assert best is not None
        return best, best_ms

    # ---------------------------------------------------------------- persistence
    @staticmethod
    def make_key(space: SearchSpace, *, device: torch.device, runtime: str, input_shape, threads: int,
                 dtype: str, num_classes: int, small_input: bool | None) -> dict[str, Any]:
        return {
            "format": PREDICTOR_FORMAT,
            "device": device.type,
            "device_name": device_name(device),
            "runtime": runtime,
            "input_shape": list(input_shape),
            "threads": threads,
            "dtype": dtype,
            "torch": str(torch.__version__),
            "space": hashlib.sha1(json.dumps(space.to_dict(), sort_keys=True).encode()).hexdigest()[:12],
            "num_classes": num_classes,
            "small_input": small_input,
        }

    @staticmethod
    def cache_path(key: dict[str, Any], cache_dir: Path | None = None) -> Path:
        h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return Path(cache_dir or cache_root("latency")) / f"predictor-{key['device']}-{key['runtime']}-{h}.json"

    def save(self, path: Path) -> None:
        text = json.dumps({"key": self.key, "lut": self.lut, "coef": self.coef, "fit": self.fit}, indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: Path, expect_key: dict[str, Any] | None = None) -> "LatencyPredictor":
        """Load a cache file; ``ValueError`` if unreadable or built for another key."""
        try:
            d = json.loads(Path(path).read_text())
            p = cls(key=d["key"], lut={str(k): float(v) for k, v in d["lut"].items()},
                    coef=[float(c) for c in d["coef"]], fit=dict(d.get("fit", {})))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"latency cache {path}: unreadable ({type(e).__name__}: {e})") from None
        if len(p.coef) != len(cls.FEATURES) or not all(math.isfinite(c) for c in p.coef):
            raise ValueError(f"latency cache {path}: bad calibration coefficients {p.coef}")
        if expect_key is not None and p.key != expect_key:
            diff = sorted(k for k in set(p.key) | set(expect_key) if p.key.get(k) != expect_key.get(k))
            raise ValueError(f"latency cache {path}: stale, built for another {', '.join(diff)}")
        return p

    # ---------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        space: SearchSpace,
        *,
        device: str | torch.device | None = None,
        runtime: str = "eager",
        input_shape: Sequence[int] = (1, 3, 224, 224),
        threads: int | None = 1,
        dtype: str = "float32",
        num_classes: int = 1000,
        small_input: bool | None = False,
        calib_archs: int = 100,
        seed: int = 0,
        cache_dir: Path | str | None = None,
        rebuild: bool = False,
        progress: bool = True,
    ) -> "LatencyPredictor":
        """Load the predictor from its cache, or measure the table and fit the calibration.

        Args:
            space: the search space whose blocks are tabulated.
            device, runtime, input_shape, threads, dtype: the measurement conditions (the cache key).
            num_classes, small_input: the task (classifier size, stem variant; ``None`` = every
                stem variant the space declares: the table holds the blocks at each variant's
                feature-map sizes and the calibration draws both).
            calib_archs: random architectures measured end to end for the calibration.
            rebuild: ignore an existing cache.
        """
        shape = _check_shape(input_shape)
        if shape[0] != 1 or shape[1] != 3 or shape[2] != shape[3]:
            raise ValueError(f"input_shape: the predictor needs (1, 3, S, S), got {shape}")
        dev = resolve_device(device)
        check_runtime(runtime)
        _check_dtype(dtype, dev)
        nthreads = _Threads(threads, dev).threads
        key = cls.make_key(space, device=dev, runtime=runtime, input_shape=shape, threads=nthreads,
                           dtype=dtype, num_classes=num_classes, small_input=small_input)
        path = cls.cache_path(key, Path(cache_dir) if cache_dir else None)
        if path.exists() and not rebuild:
            try:
                p = cls.load(path, key)
                log.info("latency predictor loaded from %s", path)
                return p
            except ValueError as e:
                warnings.warn(f"{e}; rebuilding it", RuntimeWarning, stacklevel=2)
        t0 = time.perf_counter()
        cond = dict(device=dev, runtime=runtime, threads=nthreads, dtype=dtype)
        lut, remeasured = _measure_table(_table_specs(space, num_classes, small_input, shape[-1]), cond, progress)
        table_s = time.perf_counter() - t0
        p = cls(key=key, lut=lut, coef=[1.0, 1.0, 1.0] + [0.0] * (len(cls.FEATURES) - 3))
        rng = np.random.default_rng(seed)
        archs = [space.sample(rng, num_classes=num_classes, small_input=small_input) for _ in range(calib_archs)]
        bar = progress_bar(1, f"calibration ({calib_archs} archs, end to end)", "entry", progress)
        meas = measure_many([ShuffleNet(a) for a in archs], input_shape=shape, rounds=6, per_round=10, seed=seed,
                            **cond)
        if bar is not None:
            bar.update(1)
            bar.close()
        p.fit_calibration(archs, [m.median_ms for m in meas])
        p.fit.update(table_entries=len(lut), table_seconds=table_s, total_seconds=time.perf_counter() - t0,
                     remeasured=remeasured)
        p.save(path)
        log.info("latency predictor built in %.0f s (%d entries), saved to %s", time.perf_counter() - t0, len(lut), path)
        return p

    def fit_calibration(self, archs: Sequence[Arch], measured_ms: Sequence[float]) -> None:
        """Least-squares fit of ``measured = coef . features`` (see :meth:`features`)."""
        if len(archs) < len(self.FEATURES):
            raise ValueError(f"calibration: needs at least {len(self.FEATURES)} architectures, got {len(archs)}")
        X = np.array([self.features(a) for a in archs])
        y = np.asarray(measured_ms, dtype=float)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        self.coef = [float(c) for c in coef]
        pred, raw = X @ coef, X[:, :3].sum(1)
        self.fit = {
            "n": len(archs),
            "raw_mape": float(np.mean(np.abs(raw - y) / y) * 100),
            "calibrated_mape": float(np.mean(np.abs(pred - y) / y) * 100),
            "coef": dict(zip(self.FEATURES, self.coef)),
        }


def _measure_table(specs: dict[str, tuple[tuple, tuple[int, ...]]], cond: dict[str, Any],
                   progress: bool) -> tuple[dict[str, float], Any]:
    """Every table entry measured under ``cond`` (device, runtime, threads, dtype), then checked
    against its cost-model fit (:func:`_check_table`: outliers re-measured, a table that still looks
    wrong raises). Returns (key -> median ms, the re-measured entries)."""
    lut: dict[str, float] = {}
    costs: dict[str, tuple[float, float]] = {}
    bar = progress_bar(len(specs), "latency table", "entry", progress)

    def entry_ms(k: str) -> float:
        spec, ishape = specs[k]
        module = _build_entry(spec)
        if k not in costs:
            costs[k] = _entry_cost(module, ishape)
        return measure(module, input_shape=ishape, samples=25, warmup_runs=5, warmup_s=0.02, retries=1,
                       max_rel_iqr=0.2, **cond).median_ms

    for k in specs:
        lut[k] = entry_ms(k)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    remeasured = _check_table(lut, costs, {k: _kind(spec) for k, (spec, _) in specs.items()}, entry_ms)
    return lut, remeasured


def _table_specs(space: SearchSpace, num_classes: int, small_input: bool | None,
                 size: int) -> dict[str, tuple[tuple, tuple[int, ...]]]:
    """Every lookup-table entry the space can need for this task: ``{key: (constructor args, input shape)}``."""
    specs: dict[str, tuple[tuple, tuple]] = {}
    for small in _stem_variants(space, small_input):
        stage_sizes = _probe_arch(space, num_classes, small).spatial_sizes(size)
        for stem in space.stem_channels:
            specs[_stem_key(stem, small, size)] = (("stem", stem, small), (1, 3, size, size))
        prev = space.stem_channels
        for i, ss in enumerate(space.stages):
            h_in, h_out = stage_sizes[i], stage_sizes[i + 1]
            for cout in ss.channels:
                sites = [Site(i, 0, cin, cout, in_size=h_in) for cin in prev]
                sites += [Site(i, 1, cout, cout, in_size=h_out)] if ss.max_depth > 1 else []
                for at in sites:
                    for b in space.valid_blocks(at):
                        key, args, shape = _block_entry(at.with_block(b))
                        specs[key] = (args, shape)
            prev = ss.channels
        for c in space.stages[-1].channels:
            for last in space.last_conv:
                specs[_head_key(c, last, num_classes, stage_sizes[-1])] = (("head", c, last, num_classes), (1, c, stage_sizes[-1], stage_sizes[-1]))
    return specs


OUTLIER_FACTOR = 3.0  # a table entry this many times above its cost-model fit is re-measured
OUTLIER_MIN_MS = 0.02  # ... unless the difference is below this (timer resolution and call overhead)


def _entry_cost(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[float, float]:
    """(multiply-adds, memory access in elements) of one forward of a table entry, read from its
    layers' shapes on a CPU forward: convolutions and linear layers count multiply-adds
    (``count_flops``' convention); every leaf layer counts its input, output and parameter
    elements (the memory access cost of ShuffleNet V2, Ma et al. 2018, section 2)."""
    flops = mem = 0.0

    def hook(m: nn.Module, inp, out) -> None:
        nonlocal flops, mem
        x = inp[0]
        mem += x.numel() + out.numel() + sum(p.numel() for p in m.parameters(recurse=False))
        if isinstance(m, nn.Conv2d):
            flops += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            flops += out.numel() * m.in_features

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return flops, mem


def _kind(spec: tuple) -> str:
    """The entry kind a cost fit is made per: ``stem``, ``head0`` (no conv5), ``head``, ``v1`` or ``v2``."""
    if spec[0] == "head":
        return "head0" if spec[2] == 0 else "head"
    return "stem" if spec[0] == "stem" else str(spec[1])[:2]


def _cost_fit(lut: dict[str, float], costs: dict[str, tuple[float, float]], kinds: dict[str, str]) -> dict[str, float]:
    """Each entry's latency as predicted from its FLOPs and memory access by a least-squares fit of
    relative error over the entries of its kind (:func:`_kind`), refitted once without the worst
    tenth (so that a few stalled entries do not pull the fit). Kinds with fewer than 6 entries
    keep their measurement as the fit (not checked). Returns ``{key: fitted ms}``."""
    out = dict(lut)
    groups: dict[str, list[str]] = {}
    for k in lut:
        groups.setdefault(kinds[k], []).append(k)
    for keys in groups.values():
        if len(keys) < 6:
            continue
        X = np.array([[1.0, *costs[k]] for k in keys])
        y = np.array([lut[k] for k in keys])
        scale = np.abs(X).max(0)
        scale[scale == 0] = 1.0
        Xs = X / scale
        keep = np.ones(len(keys), dtype=bool)
        for _ in range(2):
            w = 1.0 / np.maximum(y[keep], 1e-6)
            coef, *_ = np.linalg.lstsq(Xs[keep] * w[:, None], y[keep] * w, rcond=None)
            fit = np.maximum(Xs @ coef, 1e-6)
            ratio = y / fit
            keep = ratio <= np.quantile(ratio, 0.9)
        out.update({k: float(f) for k, f in zip(keys, fit)})
    return out


def _outliers(lut: dict[str, float], fit: dict[str, float]) -> list[str]:
    """Entries slower than ``OUTLIER_FACTOR`` x their cost fit (a stall only adds time)."""
    return [k for k, v in lut.items() if v - fit[k] > OUTLIER_MIN_MS and v > OUTLIER_FACTOR * fit[k]]


def _check_table(lut: dict[str, float], costs: dict[str, tuple[float, float]], kinds: dict[str, str],
                 remeasure: Callable[[str], float], attempts: int = 2) -> dict[str, list[float]]:
    """Find entries far off their FLOPs/memory-access fit, re-measure them (``attempts`` times)
    and keep the lowest reading (a stall only adds time); in place on ``lut``.

    An entry that stays far off its fit is kept when its readings agree with each other (within
    25%: a real cost the model does not see, such as a slow grouped-conv kernel). One whose
    readings still disagree means the machine was not quiet: the table is refused.

    Returns:
        ``{key: [first reading, re-measurements...]}`` of the entries re-measured.

    Raises:
        ValueError: entries whose readings stay inconsistent (named, with their readings).
    """
    if len(lut) < 8:
        return {}
    fit = _cost_fit(lut, costs, kinds)
    readings: dict[str, list[float]] = {}
    for k in _outliers(lut, fit):
        readings[k] = [lut[k]] + [remeasure(k) for _ in range(attempts)]
        lut[k] = min(readings[k])
    fit = _cost_fit(lut, costs, kinds)
    bad = [k for k in _outliers(lut, fit) if k in readings
           and (max(readings[k][1:]) / min(readings[k][1:]) > 1.25)]
    if bad:
        shown = "; ".join(f"{k}: {', '.join(f'{v:.3f}' for v in readings[k])} ms (cost fit {fit[k]:.3f} ms)"
                          for k in bad[:5])
        raise ValueError(f"latency table: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} measured inconsistently "
                         f"and far from their FLOPs/memory-access cost ({shown}); the machine was busy. Nothing was "
                         f"cached: rebuild on a quiet machine (python -m search.latency build)")
    if readings:
        log.info("latency table: re-measured %d outlier entr%s", len(readings), "y" if len(readings) == 1 else "ies")
    return readings


def _stem_variants(space: SearchSpace, small_input: bool | None) -> tuple[bool, ...]:
    """The stem variants a predictor covers: the one given, or all the space declares (None)."""
    return tuple(space.small_input) if small_input is None else (bool(small_input),)


def _probe_arch(space: SearchSpace, num_classes: int, small_input: bool) -> Arch:
    return space.sample(np.random.default_rng(0), num_classes=num_classes, small_input=small_input)


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.latency", description="Build or check the latency predictor.")
    ap.add_argument("command", choices=["build", "check"])
    ap.add_argument("--space", default="default")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: GPU when present)")
    ap.add_argument("--runtime", default="eager", help=f"one of {list(RUNTIMES)}")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--small-input", choices=["no", "yes", "both"], default="both",
                    help="stem variants in the table: ImageNet stem, small-input stem, or both (the search's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--calib-archs", type=int, default=100)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--archs", type=int, default=20, help="check: held-out random archs to measure")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        space = SearchSpace.load(args.space)
        p = LatencyPredictor.build(space, device=args.device, runtime=args.runtime,
                                   input_shape=(1, 3, args.input_size, args.input_size), threads=args.threads,
                                   dtype=args.dtype, num_classes=args.num_classes, small_input={"no": False, "yes": True, "both": None}[args.small_input],
                                   calib_archs=args.calib_archs, rebuild=args.rebuild)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"predictor: {len(p.lut)} table entries, calibration {p.fit.get('coef')}, "
          f"fit MAPE raw {p.fit.get('raw_mape', float('nan')):.2f}% -> calibrated {p.fit.get('calibrated_mape', float('nan')):.2f}%")
    if args.command == "check":
        rng = np.random.default_rng(args.seed + 10_000)
        archs = [space.sample(rng, num_classes=args.num_classes, small_input={"no": False, "yes": True, "both": None}[args.small_input]) for _ in range(args.archs)]
        meas = measure_many([ShuffleNet(a) for a in archs], input_shape=(1, 3, args.input_size, args.input_size),
                            device=args.device, runtime=args.runtime, threads=args.threads, dtype=args.dtype)
        err = [abs(p.predict(a) - m.median_ms) / m.median_ms * 100 for a, m in zip(archs, meas)]
        print(f"check on {len(archs)} held-out archs: MAPE {statistics.mean(err):.2f}%, "
              f"within 10%: {100 * sum(e <= 10 for e in err) / len(err):.0f}%, worst {max(err):.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
