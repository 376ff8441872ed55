"""Where ShuffleNAS keeps its files: the cache root and atomic writes.

* :func:`cache_root` is read at call time: ``$SHUFFLENAS_CACHE`` if set, else
  ``~/.cache/shufflenas`` (decoded ImageFolder arrays, latency tables, supernets).
* :func:`atomic_write` writes to a temporary file beside the target, then renames it over
  the target (``os.replace``): a reader never sees a torn file, and an interrupted write
  leaves the old one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["cache_root", "atomic_write"]


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
