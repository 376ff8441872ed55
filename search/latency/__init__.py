"""Latency on the target device: measurement protocol, lookup table, predictor.

* :class:`Conditions` (``_conditions.py``): device, runtime, threads, dtype, memory format
  and input shape as one validated value: the environment record of every figure, the
  predictor's cache key and the argument of every entry point.
* ``measure`` / ``measure_many`` / ``compare`` (``_measure.py``): the protocol (GUIDE.md
  section 4): eval mode, inference mode, preallocated input, explicit threads, warm-up,
  100+ samples, median and IQR with the raw samples, re-measurement when noisy; interleaved
  rounds for several models, ABBA for two.
* ``_table.py``: the per-block lookup table, its entries cut from the real model, one key
  builder, a robust build (outliers against the FLOPs/memory-access cost re-measured; a
  table that stays wrong is refused).
* :class:`LatencyPredictor` (``_predictor.py``): table + calibration, the JSON cache, the
  exact fastest arch.
* ``python -m search.latency build|check`` (``__main__.py``).

Runtimes: ``eager`` (default), ``torchscript`` (trace + freeze), ``compile``
(``torch.compile``), ``onnxruntime`` (the model exported to ONNX, opset 17, run by an ONNX
Runtime ``InferenceSession``: CPU execution provider with ``threads`` intra-op threads, the
CUDA provider on a GPU (needs onnxruntime-gpu; its timing includes the copies of the numpy
input and output); NCHW input, fp32). fp32 by default, fp16/bf16 on CUDA. Batch 1 by default.
"""

from ._conditions import DTYPES, MEMORY_FORMATS, RUNTIMES, Conditions, check_runtime, device_name
from ._measure import Measurement, compare, measure, measure_many, ort_session
from ._predictor import LatencyPredictor

__all__ = [
    "Conditions",
    "RUNTIMES",
    "DTYPES",
    "MEMORY_FORMATS",
    "Measurement",
    "measure",
    "measure_many",
    "compare",
    "LatencyPredictor",
    "device_name",
    "check_runtime",
    "ort_session",
]
