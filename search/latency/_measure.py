"""The measurement protocol: ``measure``, ``measure_many`` (interleaved), ``compare`` (ABBA).

Protocol (GUIDE.md section 4): eval mode and ``torch.inference_mode()``; the
input preallocated on the device, nothing copied in the timed region; explicit
thread count on CPU; ``cudnn.benchmark`` and CUDA events + synchronize on GPU;
warm-up of at least ``warmup_runs`` runs and ``warmup_s`` seconds; 100+ timed
samples; the median with its IQR (raw samples kept); a re-measurement when
IQR/median exceeds ``max_rel_iqr``. Every figure carries its
:class:`Conditions` as its environment record.
"""

from __future__ import annotations

import copy
import io
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ._conditions import Conditions

__all__ = ["Measurement", "measure", "measure_many", "compare", "ort_session"]


@dataclass
class Measurement:
    """Latency of one model in milliseconds, with its raw samples and environment record
    (:meth:`Conditions.env`, plus ``stable`` from :func:`measure`)."""

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

    @property
    def conditions(self) -> Conditions:
        return Conditions.from_env(self.env)

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


def ort_session(model_or_path, *, device: torch.device, threads: int, example: torch.Tensor | None = None):
    """An ONNX Runtime ``InferenceSession`` for a module (exported to ONNX in memory, opset 17,
    from ``example``) or an ``.onnx`` file: the CUDA provider on a GPU, else the CPU provider
    with ``threads`` intra-op threads and sequential execution.

    Raises:
        ValueError: the file is missing, corrupt or not a model ONNX Runtime can load (names it);
            no CUDA provider on a GPU.
    """
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


class _Runner:
    """A copy of a model prepared for timing under ``cond``: runtime applied, input preallocated.

    The caller's model is never touched: mode, device, dtype, memory format and
    parameters (which ``inference_mode`` would turn into inference tensors) stay
    as they were, so it can go on training. Under ``onnxruntime`` the model may also be
    an ``.onnx`` path; on CUDA its timing includes the host<->device copies."""

    def __init__(self, model: nn.Module | str | Path, cond: Conditions) -> None:
        self.dev = dev = cond.torch_device
        if cond.runtime == "onnxruntime":
            with torch.inference_mode(False), torch.no_grad():
                x = torch.randn(cond.input_shape, generator=torch.Generator().manual_seed(0))
                self.session = ort_session(model, device=dev, threads=cond.threads, example=x)
            self.feed = {"input": x.numpy()}
            self.model = lambda _x: self.session.run(None, self.feed)
            self.x = None
            return
        with torch.inference_mode(False), warnings.catch_warnings():
            # a deep-copied ScriptModule (a loaded model.ts) holds non-leaf parameters: .to() warns about .grad
            warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
            model = copy.deepcopy(model)
            model = model.eval().to(device=dev, dtype=cond.torch_dtype)
            if cond.memory_format == "channels_last":
                model = model.to(memory_format=torch.channels_last)
        x = torch.randn(cond.input_shape, generator=torch.Generator().manual_seed(0))
        self.x = x.to(device=dev, dtype=cond.torch_dtype).contiguous(memory_format=cond.torch_memory_format)
        with torch.inference_mode():
            if cond.runtime == "torchscript":
                with warnings.catch_warnings():  # torch.jit is deprecated upstream but still ships
                    warnings.simplefilter("ignore", FutureWarning)
                    model = torch.jit.freeze(torch.jit.trace(model, self.x, check_trace=False))
            elif cond.runtime == "compile":
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

    def warm(self, runs: int, seconds: float) -> None:
        """At least ``runs`` untimed runs and ``seconds`` of them."""
        t0 = time.perf_counter()
        n = 0
        while n < runs or time.perf_counter() - t0 < seconds:
            self.run()
            n += 1
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)


class _Session:
    """The process-wide settings of a measurement under ``cond``: thread count (and
    ``cudnn.benchmark`` on CUDA), restored on exit; inference mode inside."""

    def __init__(self, cond: Conditions) -> None:
        self.cond = cond
        self.inference = torch.inference_mode()

    def __enter__(self) -> "_Session":
        self.prev = torch.get_num_threads()
        torch.set_num_threads(self.cond.threads)
        if self.cond.torch_device.type == "cuda":
            self.prev_bench = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
        self.inference.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.inference.__exit__(*exc)
        torch.set_num_threads(self.prev)
        if self.cond.torch_device.type == "cuda":
            torch.backends.cudnn.benchmark = self.prev_bench


def _default_warmup(cond: Conditions, warmup_runs: int | None) -> int:
    return warmup_runs if warmup_runs is not None else (50 if cond.torch_device.type == "cuda" else 20)


def measure(
    model: nn.Module | str | Path,
    conditions: Conditions,
    *,
    samples: int = 100,
    warmup_runs: int | None = None,
    warmup_s: float = 0.5,
    max_rel_iqr: float = 0.10,
    retries: int = 2,
) -> Measurement:
    """Measure the latency of ``model`` under ``conditions`` (see the module docstring for the protocol).

    Args:
        model: any module taking one ``conditions.input_shape`` tensor (or an ``.onnx`` path under
            ``onnxruntime``).
        conditions: device, runtime, threads, dtype, memory format and input shape.
        samples: timed runs per attempt (>= 100 recommended).
        warmup_runs: minimum warm-up runs (default 20 on CPU, 50 on CUDA), and at least ``warmup_s``.
        max_rel_iqr: re-measure (up to ``retries`` times) while IQR/median is above this; the
            attempt with the smallest IQR/median is returned and ``env['stable']`` says whether
            it met ``max_rel_iqr``.

    Raises:
        ValueError: fewer than 5 samples; an ``.onnx`` file ONNX Runtime cannot load.
    """
    if samples < 5:
        raise ValueError(f"samples: need at least 5, got {samples}")
    with _Session(conditions):
        runner = _Runner(model, conditions)
        env = conditions.env()
        best: Measurement | None = None
        for attempt in range(1, retries + 2):
            runner.warm(_default_warmup(conditions, warmup_runs), warmup_s)
            m = _stats([runner.time_once() for _ in range(samples)], env, attempt)
            if best is None or m.rel_iqr < best.rel_iqr:
                best = m
            if m.rel_iqr <= max_rel_iqr:
                break
        assert best is not None
        best.attempts = attempt
        env["stable"] = best.rel_iqr <= max_rel_iqr
    return best


def _per_model(conditions: Conditions | Sequence[Conditions], n: int) -> list[Conditions]:
    conds = [conditions] * n if isinstance(conditions, Conditions) else list(conditions)
    if len(conds) != n:
        raise ValueError(f"conditions: expected one Conditions or one per model ({n}), got {len(conds)}")
    for c in conds[1:]:
        shared = ("device", "threads", "dtype", "input_shape")
        if any(getattr(c, f) != getattr(conds[0], f) for f in shared):
            raise ValueError(f"conditions: models measured side by side share {list(shared)}; only runtime "
                             f"and memory_format may differ, got {conds[0]} and {c}")
    return conds


def measure_many(
    models: Sequence[nn.Module | str | Path],
    conditions: Conditions | Sequence[Conditions],
    *,
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
    ``conditions`` is one value for all models or one per model: the shipped artefacts of a
    run are measured side by side under their own runtime and memory format this way.

    Raises:
        ValueError: per-model conditions of another length than ``models``, or differing in
            more than runtime and memory format."""
    conds = _per_model(conditions, len(models))
    if not conds:
        return []
    rng = np.random.default_rng(seed)
    with _Session(conds[0]):
        runners = [_Runner(m, c) for m, c in zip(models, conds)]
        envs = [c.env() for c in conds]
        for r in runners:
            r.warm(_default_warmup(conds[0], warmup_runs), warmup_s)
        samples: list[list[float]] = [[] for _ in runners]
        for k in range(rounds):
            for i in rng.permutation(len(runners)):
                runners[i].warm(rewarm_runs, 0.0)  # untimed runs re-warm caches after the previous model
                samples[i].extend(runners[i].time_once() for _ in range(per_round))
            if progress is not None:
                progress(k + 1, rounds)
    return [_stats(s, env, 1) for s, env in zip(samples, envs)]


def compare(a: nn.Module, b: nn.Module, conditions: Conditions, *, rounds: int = 20,
            per_round: int = 10) -> dict[str, Any]:
    """A/B latency comparison under ``conditions``, interleaved ABBA.

    Returns:
        ``{"a": Measurement, "b": Measurement, "ratio": b.median_ms / a.median_ms}``."""
    with _Session(conditions):
        ra, rb = _Runner(a, conditions), _Runner(b, conditions)
        warm = _default_warmup(conditions, None)
        ra.warm(warm, 0.3)
        rb.warm(warm, 0.3)
        sa: list[float] = []
        sb: list[float] = []
        for _ in range(rounds):
            for r, s in ((ra, sa), (rb, sb), (rb, sb), (ra, sa)):
                r.warm(20, 0.0)
                s.extend(r.time_once() for _ in range(per_round))
    ma, mb = _stats(sa, conditions.env(), 1), _stats(sb, conditions.env(), 1)
    return {"a": ma, "b": mb, "ratio": mb.median_ms / ma.median_ms}
