"""Writing and reading a model in a run folder.

A run folder is enough to rebuild, re-measure and ship its model:

* ``arch.yaml``: the architecture (canonical string + structured form) and a
  ``deploy`` section: input preprocessing and class names;
* ``model.pt``: ``{"format", "arch", "state_dict", "meta"}``; :func:`load_model`
  rebuilds ``ShuffleNet(arch)`` from it (plain PyTorch, no supernet needed), in
  the memory format its latency was measured in, with ``meta`` and ``transforms``;
* ``model.pt2``: ``torch.export`` program (dynamic batch axis), ``torch.export.load``;
* ``model.ts``: TorchScript (traced, eval mode), loadable with ``torch.jit.load``;
* ``model.onnx``: ONNX (opset 17, dynamic batch axis), when the exporter is available.

The preprocessing follows torchvision's weights API (``weights.transforms()``,
``weights.meta["categories"]``): ``meta["preprocess"]`` holds the input size,
scale, mean and std; ``meta["categories"]`` the class names in logit order.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from nas_common import atomic_write
from search_space import Arch
from supernet import ShuffleNet

__all__ = ["export_model", "load_model", "load_artefact", "measure_artefacts", "preprocessing", "make_transforms",
           "torchvision_equivalent", "MODEL_FORMAT", "ARTEFACTS"]

log = logging.getLogger(__name__)
MODEL_FORMAT = "shufflenas.model/1"
ARTEFACTS = {"model": "model.pt", "export": "model.pt2", "torchscript": "model.ts", "onnx": "model.onnx"}
MAX_BATCH = 4096  # upper bound of the dynamic batch axis of model.pt2




def preprocessing(data) -> dict[str, Any]:
    """The input preprocessing of ``data`` (a ``nas_data.Data``) as plain data:
    uint8 RGB images ``(N, 3, H, W)`` at ``input_size``, scaled by 1/255, then
    ``(x - mean) / std`` per channel. ``resize`` names how ``data`` brought images to size."""
    return {"input": "uint8 RGB (N, 3, H, W)", "input_size": [data.image_size, data.image_size], "scale": 1 / 255,
            "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
            "resize": "bilinear", "source": data.info.get("source", data.spec)}


def make_transforms(preprocess: dict[str, Any]):
    """torchvision ``transforms.v2`` pipeline for ``preprocess`` (see :func:`preprocessing`):
    a PIL image or uint8 ``(3, H, W)`` / ``(N, 3, H, W)`` tensor (any size) -> resized,
    float, normalised tensor of the same batch shape."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),  # PIL images and uint8 tensors alike
        v2.Resize(list(preprocess["input_size"]), interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(preprocess["mean"]), list(preprocess["std"])),
        v2.ToPureTensor(),
    ])


def export_model(model: ShuffleNet, out_dir: Path | str, *, input_size: int, meta: dict[str, Any] | None = None,
                 onnx: bool = True, data=None) -> dict[str, str]:
    """Write ``arch.yaml``, ``model.pt``, ``model.pt2``, ``model.ts`` (and ``model.onnx``) into ``out_dir``.

    Args:
        model: the network; a CPU, eval-mode, NCHW copy is exported and ``model`` is left as it
            was (device, mode, memory format).
        input_size: H = W of the input, pixels.
        meta: stored in ``model.pt``; ``meta["latency"]["env"]`` (a ``Measurement``) records the
            conditions the latency was measured under, which :func:`load_model` restores.
        onnx: also write ``model.onnx`` (skipped with a warning if the exporter fails).
        data: the dataset the model was trained on; its preprocessing and class names go into
            ``meta`` and ``arch.yaml`` (``deploy`` section).

    Returns:
        ``{kind: file name}`` of the files written (kinds: ``arch`` and those of ``ARTEFACTS``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    arch = model.arch
    meta = dict(meta or {})
    if data is not None:
        meta["preprocess"] = preprocessing(data)
        meta["categories"] = list(data.classes)
    files: dict[str, str] = {}
    text = arch.to_yaml()
    if "preprocess" in meta:
        text += yaml.safe_dump({"deploy": {"preprocess": meta["preprocess"], "categories": meta.get("categories")}},
                               sort_keys=False)
    atomic_write(out / "arch.yaml", lambda p: p.write_text(text))
    files["arch"] = "arch.yaml"
    blob = {"format": MODEL_FORMAT, "arch": str(arch), "state_dict": model.state_dict(), "meta": meta}
    atomic_write(out / "model.pt", lambda p: torch.save(blob, p))
    files["model"] = ARTEFACTS["model"]
    x = torch.zeros(2, 3, input_size, input_size)  # batch 2: torch.export specialises a batch of 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream but still ships
        try:
            program = torch.export.export(model, (x,),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},))
            atomic_write(out / ARTEFACTS["export"], lambda p: torch.export.save(program, str(p)))
            files["export"] = ARTEFACTS["export"]
        except Exception as e:  # noqa: BLE001 - like ONNX, a convenience: the run stays valid without it
            log.warning("torch.export artefact (model.pt2) skipped: %s", str(e).splitlines()[0])
        traced = torch.jit.trace(model, x[:1])
        atomic_write(out / ARTEFACTS["torchscript"], lambda p: torch.jit.save(traced, str(p)))
    files["torchscript"] = ARTEFACTS["torchscript"]
    if onnx:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atomic_write(out / ARTEFACTS["onnx"], lambda p: torch.onnx.export(
                    model, (x[:1],), str(p), input_names=["input"], output_names=["logits"], opset_version=17,
                    dynamo=False, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}))
            files["onnx"] = ARTEFACTS["onnx"]
        except Exception as e:  # noqa: BLE001 - ONNX is a convenience; the run stays valid without it
            log.warning("ONNX export skipped: %s", e)
    return files


def load_model(path: Path | str, *, memory_format: str | None = None) -> ShuffleNet:
    """Rebuild the exported ``ShuffleNet`` from ``model.pt`` (or a run folder holding one).

    Returns the model in eval mode, on CPU, in ``memory_format`` (``channels_last`` or
    ``contiguous``); by default the one its latency was measured in (``meta["latency"]["env"]``),
    else contiguous. ``model.meta`` is the stored meta; ``model.transforms`` the torchvision
    preprocessing (:func:`make_transforms`) when it was recorded, else None.

    Raises:
        ValueError: the file is missing, unreadable, not a ShuffleNAS model, or ``memory_format``
            is unknown.
    """
    p = Path(path)
    if p.is_dir():
        p = p / ARTEFACTS["model"]
    if not p.is_file():
        raise ValueError(f"model: {str(p)!r} does not exist")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"model: cannot read {str(p)!r} ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"model: {str(p)!r} is not a ShuffleNAS model file")
    meta = dict(blob.get("meta") or {})
    fmt = memory_format or ((meta.get("latency") or {}).get("env") or {}).get("memory_format") or "contiguous"
    formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    if fmt not in formats:
        raise ValueError(f"memory_format: expected one of {list(formats)}, got {fmt!r}")
    model = ShuffleNet(Arch.parse(blob["arch"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    model = model.to(memory_format=formats[fmt]).eval()
    # plain attributes, not submodules (a transforms pipeline is an nn.Module)
    object.__setattr__(model, "meta", meta)
    object.__setattr__(model, "memory_format", fmt)
    object.__setattr__(model, "transforms", make_transforms(meta["preprocess"]) if "preprocess" in meta else None)
    return model


def load_artefact(run_dir: Path | str, kind: str, *, device: str | torch.device = "cpu", threads: int = 1):
    """One shipped artefact of ``run_dir`` as something callable on a ``(N, 3, H, W)`` float tensor:
    ``model`` (:func:`load_model`), ``export`` (``torch.export.load(...).module()``),
    ``torchscript`` (``torch.jit.load``) or ``onnx`` (an ONNX Runtime session; call it
    through ``search.latency.measure_many([path], Conditions(..., runtime="onnxruntime"))`` or ``.run``).

    Raises:
        ValueError: an unknown kind; a missing, partial or corrupt file (named).
    """
    if kind not in ARTEFACTS:
        raise ValueError(f"artefact: unknown kind {kind!r}; available: {list(ARTEFACTS)}")
    p = Path(run_dir) / ARTEFACTS[kind]
    if kind == "model":
        return load_model(p)
    if not p.is_file():
        raise ValueError(f"{kind}: {str(p)!r} does not exist")
    if kind == "onnx":
        from nas_common import resolve_device
        from search.latency import check_runtime, ort_session

        check_runtime("onnxruntime")
        return ort_session(p, device=resolve_device(device), threads=threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.export.load(str(p)).module() if kind == "export" else torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises several error types for a bad archive
        raise ValueError(f"{kind}: {str(p)!r} is corrupt or partial ({str(e).splitlines()[0][:160]}); "
                         f"re-export it (search.export.export_model)") from None


def measure_artefacts(run_dir: Path | str, files: dict[str, str], conditions, *, seed: int = 0, rounds: int = 10,
                      model_runtime: str = "eager") -> dict[str, Any]:
    """Latency of every shipped artefact in ``files`` (as returned by :func:`export_model`),
    loaded back from ``run_dir`` and measured interleaved under ``conditions``
    (a ``search.latency.Conditions``: device, threads, batch, input shape), each with its own
    runtime and memory format: ``model.pt`` as :func:`load_model` returns it (its recorded memory
    format), run with ``model_runtime`` (``eager``, ``torchscript`` trace + freeze or ``compile``:
    the search's runtime), ``model.pt2`` and ``model.ts`` eager on NCHW input (how a user calls
    them), ``model.onnx`` with ONNX Runtime (skipped with a warning if onnxruntime is not
    installed, or has no CUDA provider on a GPU).

    Returns:
        ``{kind: Measurement}`` (see ``search.latency.measure_many``), in ``ARTEFACTS`` order.
    """
    from search.latency import measure_many, ort_session

    kinds, models, conds = [], [], []
    for kind in ARTEFACTS:
        if kind not in files:
            continue
        if kind == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                log.warning("model.onnx not measured: onnxruntime is not installed")
                continue
            try:
                ort_session(Path(run_dir) / files[kind], device=conditions.torch_device, threads=conditions.threads)
            except ValueError as e:
                log.warning("model.onnx not measured: %s", e)
                continue
            models.append(Path(run_dir) / files[kind])
            conds.append(conditions.replace(runtime="onnxruntime", memory_format="contiguous"))
        else:
            m = load_artefact(run_dir, kind)
            models.append(m)
            conds.append(conditions.replace(runtime=model_runtime if kind == "model" else "eager",
                                            memory_format=getattr(m, "memory_format", "contiguous")))
        kinds.append(kind)
    ms = measure_many(models, conds, rounds=rounds, per_round=10, seed=seed)
    return dict(zip(kinds, ms))


def torchvision_equivalent(arch: Arch) -> tuple[str | None, list[str]]:
    """The ``torchvision.models.ShuffleNetV2`` constructor call that builds ``arch`` with the same
    ``state_dict`` keys and shapes (``load_state_dict(strict=True)`` works), or ``None`` and the
    choices that take ``arch`` outside that class.

    torchvision's class (``torchvision/models/shufflenetv2.py``) has V2 units with split 0.5
    only, the ImageNet stem (3x3 stride-2 conv, max pool), three stages and a last 1x1 conv.
    """
    why = []
    other = sorted({str(b) for st in arch.stages for b in st.blocks if b.unit != "v2" or b.split != 0.5})
    if other:
        why.append(f"units other than V2 with split 0.5 ({', '.join(other)})")
    if arch.small_input:
        why.append("the small-input stem (stride-1 conv1, no max pool)")
    if not arch.last_conv:
        why.append("no last 1x1 conv (conv5)")
    if len(arch.stages) != 3:
        why.append(f"{len(arch.stages)} stages (torchvision has 3)")
    if why:
        return None, why
    call = (f"torchvision.models.ShuffleNetV2(stages_repeats={list(arch.depths)}, "
            f"stages_out_channels={[arch.stem, *arch.widths, arch.last_conv]}, num_classes={arch.num_classes})")
    return call, []
