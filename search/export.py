"""Writing and reading a model in a run folder.

A run folder is enough to rebuild, re-measure and ship its model:

* ``arch.yaml``: the architecture (canonical string + structured form);
* ``model.pt``: ``{"format", "arch", "state_dict", "meta"}``; :func:`load_model`
  rebuilds ``ShuffleNet(arch)`` from it (plain PyTorch, no supernet needed);
* ``model.ts``: TorchScript (traced, eval mode), loadable with ``torch.jit.load``
  without this package;
* ``model.onnx``: ONNX (opset 17), when the exporter is available.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from search_space import Arch
from supernet import ShuffleNet

__all__ = ["export_model", "load_model", "MODEL_FORMAT"]

log = logging.getLogger(__name__)
MODEL_FORMAT = "shufflenas.model/1"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def export_model(model: ShuffleNet, out_dir: Path | str, *, input_size: int, meta: dict[str, Any] | None = None,
                 onnx: bool = True) -> dict[str, str]:
    """Write ``arch.yaml``, ``model.pt``, ``model.ts`` (and ``model.onnx``) into ``out_dir``.

    Exports a CPU, eval-mode copy; ``model`` itself is left as it was (device, mode, memory format)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    arch = model.arch
    files: dict[str, str] = {}
    (out / "arch.yaml").write_text(arch.to_yaml())
    files["arch"] = "arch.yaml"
    blob = {"format": MODEL_FORMAT, "arch": str(arch), "state_dict": model.state_dict(), "meta": dict(meta or {})}
    _atomic(out / "model.pt", lambda p: torch.save(blob, p))
    files["model"] = "model.pt"
    x = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, x)
    _atomic(out / "model.ts", lambda p: torch.jit.save(traced, str(p)))
    files["torchscript"] = "model.ts"
    if onnx:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _atomic(out / "model.onnx", lambda p: torch.onnx.export(
                    model, (x,), str(p), input_names=["input"], output_names=["logits"], opset_version=17, dynamo=False))
            files["onnx"] = "model.onnx"
        except Exception as e:  # noqa: BLE001 - ONNX is a convenience; the run stays valid without it
            log.warning("ONNX export skipped: %s", e)
    return files


def load_model(path: Path | str) -> ShuffleNet:
    """Rebuild the exported ``ShuffleNet`` from ``model.pt`` (or a run folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise ValueError(f"model: {str(p)!r} does not exist")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"model: cannot read {str(p)!r} ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"model: {str(p)!r} is not a ShuffleNAS model file")
    model = ShuffleNet(Arch.parse(blob["arch"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    return model.eval()
