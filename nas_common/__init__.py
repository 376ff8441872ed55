"""Shared plumbing, in one small module: the cache root, atomic writes, device resolution and
progress bars.

* :func:`cache_root` is read at call time: ``$SHUFFLENAS_CACHE`` if set, else
  ``~/.cache/shufflenas`` (decoded ImageFolder arrays, latency tables, supernets).
* :func:`atomic_write` writes to a temporary file beside the target, then renames it over
  the target (``os.replace``): a reader never sees a torn file, and an interrupted write
  leaves the old one. :func:`atomic_save` is ``torch.save`` through it.
* :func:`resolve_device`: ``None`` = the GPU when present, else the CPU; anything else is
  checked with one line naming the devices available.
* :func:`progress_bar`: a tqdm bar, or None when progress is off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["cache_root", "atomic_write", "atomic_save", "resolve_device", "progress_bar"]


def cache_root(*parts: str) -> Path:
    """``$SHUFFLENAS_CACHE`` (default ``~/.cache/shufflenas``) joined with ``parts``, read now."""
    return Path(os.environ.get("SHUFFLENAS_CACHE") or Path.home() / ".cache" / "shufflenas").joinpath(*parts)


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename ``tmp`` over ``path``; creates the parent folder. ``tmp`` keeps
    the suffix (``model.tmp.pt2``), for writers that check it (``torch.export.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save(obj: Any, path: Path | str) -> None:
    """``torch.save`` to a temporary file, then rename over ``path`` (never a torn checkpoint)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _available() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The target device: ``None`` = the GPU when present, else the CPU.

    Raises:
        ValueError: an unknown or unsupported device, or ``cuda`` without a GPU (names the available ones).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: unknown device {device!r}; available: {_available()}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} requested but no CUDA GPU is available; available: {_available()}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: unsupported device {str(device)!r}; available: {_available()}")
    return dev


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True):
    """A transient tqdm bar (``leave=False``), or None when ``enabled`` is False."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
