"""``Conditions``: what a latency figure is measured under, as one validated value.

The same value is the environment record of every :class:`Measurement`, the
cache key of every :class:`LatencyPredictor` and the argument of every entry
point (``measure``, ``measure_many``, ``compare``, ``LatencyPredictor.build``),
so a figure, its cache and the run that reads it cannot disagree on the
runtime, threads, memory format, dtype, batch or input shape.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from nas_common import resolve_device

__all__ = ["RUNTIMES", "DTYPES", "MEMORY_FORMATS", "Conditions", "check_runtime", "device_name"]

RUNTIMES = ("eager", "torchscript", "compile", "onnxruntime")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def check_runtime(runtime: str) -> str:
    """``runtime`` if known and importable.

    Raises:
        ValueError: an unknown runtime (names the choices), or ``onnxruntime`` without its package (names the fix).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: unknown runtime {runtime!r}; available: {list(RUNTIMES)}")
    if runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError("runtime: 'onnxruntime' needs the onnxruntime package (pip install onnxruntime, "
                             "or onnxruntime-gpu for CUDA)") from None
    return runtime


def device_name(dev: torch.device) -> str:
    """The GPU's name, or ``cpu: <model name>`` from ``/proc/cpuinfo``."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu: " + (platform.processor() or platform.machine())


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        raise ValueError(f"input_shape: expected 4 integers (batch, channels, height, width), got {input_shape!r}")
    if any(v <= 0 for v in shape):
        raise ValueError(f"input_shape: every dimension must be positive, got {shape}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class Conditions:
    """The measurement conditions of a latency figure (GUIDE.md section 4).

    Args:
        input_shape: ``(batch, channels, height, width)``; batch 1 for latency.
        device: ``cpu`` or ``cuda``; ``None`` = the GPU when present (resolved on construction).
        runtime: one of :data:`RUNTIMES`.
        threads: CPU intra-op threads; ``None`` = torch's current count (resolved on construction).
        dtype: ``float32``; ``float16``/``bfloat16`` on CUDA only.
        memory_format: ``channels_last`` or ``contiguous``; ``None`` = channels_last on CPU,
            contiguous on CUDA. ONNX Runtime takes NCHW input, so ``onnxruntime`` is always
            ``contiguous``.

    Raises:
        ValueError: a bad field (named, with the choices or the fix).
    """

    input_shape: tuple[int, int, int, int] = (1, 3, 224, 224)
    device: str | torch.device | None = None
    runtime: str = "eager"
    threads: int | None = 1
    dtype: str = "float32"
    memory_format: str | None = None

    def __post_init__(self) -> None:
        dev = resolve_device(self.device)
        check_runtime(self.runtime)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: unknown dtype {self.dtype!r}; available: {list(DTYPES)}")
        if self.dtype != "float32" and dev.type != "cuda":
            raise ValueError(f"dtype: {self.dtype} is measured on CUDA only; on {dev.type} use float32")
        if self.dtype != "float32" and self.runtime == "onnxruntime":
            raise ValueError(f"dtype: the onnxruntime runtime measures float32 models only, got {self.dtype}")
        threads = self.threads if self.threads is not None else torch.get_num_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: must be a positive integer, got {self.threads!r}")
        mf = self.memory_format or ("channels_last" if dev.type == "cpu" else "contiguous")
        if mf not in MEMORY_FORMATS:
            raise ValueError(f"memory_format: unknown {mf!r}; available: {list(MEMORY_FORMATS)}")
        if self.runtime == "onnxruntime":
            mf = "contiguous"
        set_ = object.__setattr__
        set_(self, "input_shape", _check_shape(self.input_shape))
        set_(self, "device", str(dev))
        set_(self, "threads", threads)
        set_(self, "memory_format", mf)

    # ---------------------------------------------------------------- torch views
    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def torch_memory_format(self) -> torch.memory_format:
        return MEMORY_FORMATS[self.memory_format]

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    def replace(self, **changes: Any) -> "Conditions":
        """A copy with ``changes`` applied and validated (``memory_format=None`` re-resolves the default)."""
        return replace(self, **changes)

    # ---------------------------------------------------------------- records
    def env(self) -> dict[str, Any]:
        """The environment record every figure carries: these fields plus the device's name and torch's version."""
        return {
            "device": self.device,
            "device_name": device_name(self.torch_device),
            "torch": str(torch.__version__),
            "runtime": self.runtime,
            "dtype": self.dtype,
            "memory_format": self.memory_format,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "threads": self.threads,
        }

    @classmethod
    def from_env(cls, env: dict[str, Any], **changes: Any) -> "Conditions":
        """The conditions an environment record (:meth:`env`, a ``Measurement.env``, ``model.pt``'s
        ``meta['latency']['env']``) was measured under, with ``changes`` applied (e.g. another device).

        Raises:
            ValueError: a record without one of the fields (named).
        """
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in env and n not in changes]
        if missing:
            raise ValueError(f"latency env: the record lacks {missing}; it was not written by search.latency")
        kw = {n: env[n] for n in names if n in env}
        kw["input_shape"] = tuple(kw.get("input_shape", ()))
        kw.update(changes)
        return cls(**kw)
