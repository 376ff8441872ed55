"""Datasets, selected by one string everywhere (``--data``).

* ``digits`` (default, embedded): scikit-learn's bundled handwritten digits
  (1,797 8x8 images, 10 classes), upscaled to 32x32 RGB, fixed stratified
  80/20 train/val split. Fully offline.
* ``cifar10[:ROOT]``: torchvision's CIFAR-10 under ROOT (default
  ``~/.cache/shufflenas/cifar10``); 45,000/5,000 train/val split of the
  official training set. Never downloads unless ``download=True``
  (``python -m nas_data download cifar10[:ROOT]``).
* ``imagefolder:PATH``: any ImageFolder tree (``PATH/<class>/<image>``), e.g.
  ``../shared/data/cifar10/train``; a deterministic held-out validation split
  (``val_fraction`` of each class, chosen by a hash of the file name so it
  does not move when files are added). Images are resized to ``image_size``.
  Append ``@N`` to keep at most N images per class (``imagefolder:PATH@500``).

Small datasets are decoded once into memory as ``uint8`` tensors (ImageFolder
trees are also cached on disk as ``.npz`` keyed by the file list, size and
mtime). Training batches use standard augmentation on the fly (random crop
with 4-pixel padding, horizontal flips except for digits) drawn from an
explicit ``torch.Generator``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nas_common import atomic_write, cache_root
from search_space import Task

__all__ = ["Data", "load_data", "parse_spec", "IMG_EXTENSIONS"]

log = logging.getLogger(__name__)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Data:
    """In-memory train/val split: images ``uint8 (N, 3, H, W)``, labels ``int64 (N,)``."""

    spec: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hflip: bool = True
    crop_padding: int = 4
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def task(self, small_input: bool | None = None) -> Task:
        """The :class:`~search_space.Task` of networks for this data: its classes and image side,
        with stem variant ``small_input`` (``None``: every variant a space declares)."""
        return Task(self.num_classes, self.image_size, small_input)

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "train": int(self.train_y.numel()),
            "val": int(self.val_y.numel()),
            **self.info,
        }

    def _normalize(self, x: Tensor, device: torch.device | str, channels_last: bool) -> Tensor:
        x = x.to(device, non_blocking=True).float().div_(255)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random crop (zero padding) and, unless disabled, horizontal flip of a uint8 batch."""
        n, _, h, w = x.shape
        p = self.crop_padding
        if p:
            padded = F.pad(x, (p, p, p, p))
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            x = _crop(padded, dy, dx, h, w)
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return x

    def batches(
        self,
        split: str = "train",
        *,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        drop_last: bool = False,
        max_batches: int | None = None,
        min_last: int = 1,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield normalised ``(x, y)`` batches of ``split`` (``train`` or ``val``): ``x`` float
        ``(B, 3, H, W)``, ``y`` int64 ``(B,)``.

        ``min_last``: a last batch smaller than this joins the batch before it (so a
        training step never sees a batch of one, which BatchNorm cannot normalise
        at 1x1 maps: ``min_last=2``). :meth:`num_batches` gives the count.

        Raises:
            ValueError: unknown split, batch_size < 1, shuffling without a generator.
        """
        if split not in ("train", "val"):
            raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        xs, ys = (self.train_x, self.train_y) if split == "train" else (self.val_x, self.val_y)
        n = ys.numel()
        if (shuffle or augment) and generator is None:
            raise ValueError("generator: shuffling/augmentation needs an explicit torch.Generator")
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for k, (i, j) in enumerate(_bounds(n, batch_size, drop_last, min_last)):
            if max_batches is not None and k >= max_batches:
                return
            idx = order[i:j]
            x = xs[idx]
            if augment:
                x = self.augment(x, generator)
            yield self._normalize(x, device, channels_last), ys[idx].to(device)


    def num_batches(self, split: str, *, batch_size: int, drop_last: bool = False, min_last: int = 1) -> int:
        """How many batches :meth:`batches` yields with these settings (no ``max_batches``)."""
        n = (self.train_y if split == "train" else self.val_y).numel()
        return len(_bounds(n, batch_size, drop_last, min_last))


def _bounds(n: int, batch_size: int, drop_last: bool, min_last: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each batch: full batches, then the remainder (dropped with
    ``drop_last``; merged into the previous batch when smaller than ``min_last``)."""
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    out = [(i, min(i + batch_size, stop)) for i in range(0, stop, batch_size)]
    if len(out) >= 2 and out[-1][1] - out[-1][0] < min_last:
        out[-2:] = [(out[-2][0], out[-1][1])]
    return out


def _crop(padded: Tensor, dy: Tensor, dx: Tensor, h: int, w: int) -> Tensor:
    n = padded.shape[0]
    out = torch.empty((n, padded.shape[1], h, w), dtype=padded.dtype)
    for k in range(n):
        y0, x0 = int(dy[k]), int(dx[k])
        out[k] = padded[k, :, y0 : y0 + h, x0 : x0 + w]
    return out


# ------------------------------------------------------------------------- parsing
def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a data spec into ``(kind, argument)``; ``ValueError`` on unknown kinds."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"data: expected 'digits', 'cifar10[:ROOT]' or 'imagefolder:PATH', got {spec!r}")
    kind, _, arg = spec.strip().partition(":")
    if kind not in ("digits", "cifar10", "imagefolder"):
        raise ValueError(f"data: unknown dataset {kind!r}; expected 'digits', 'cifar10[:ROOT]' or 'imagefolder:PATH'")
    if kind == "digits" and arg:
        raise ValueError(f"data: 'digits' takes no argument, got {spec!r}")
    if kind == "imagefolder" and not arg:
        raise ValueError("data: 'imagefolder' needs a path: imagefolder:PATH")
    return kind, (arg or None)


def load_data(spec: str = "digits", *, image_size: int | None = None, val_fraction: float = 0.1, download: bool = False) -> Data:
    """Load the dataset named by ``spec`` into memory (see module docstring)."""
    kind, arg = parse_spec(spec)
    if kind == "digits":
        return _digits(spec, image_size or 32)
    if kind == "cifar10":
        return _cifar10(spec, arg, download)
    return _imagefolder(spec, arg, image_size or 32, val_fraction)


def _split_stratified(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = max(1, int(round(len(idx) * val_fraction)))
        va.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def _digits(spec: str, size: int) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N,1,8,8) in [0,1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    x = (x * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = d.target.astype(np.int64)
    tr, va = _split_stratified(y, 0.2, seed=0)
    yt = torch.from_numpy(y)
    mean = float(x[torch.from_numpy(tr)].float().mean() / 255)
    std = float(x[torch.from_numpy(tr)].float().std() / 255)
    return Data(
        spec, x[tr], yt[tr], x[va], yt[va], [str(i) for i in range(10)], (mean,) * 3, (std,) * 3,
        hflip=False, crop_padding=2, info={"source": "sklearn.datasets.load_digits, upscaled 8x8 -> 32x32"},
    )


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _cifar10(spec: str, root: str | None, download: bool) -> Data:
    from torchvision.datasets import CIFAR10

    root_p = Path(root).expanduser() if root else cache_root("cifar10")
    try:
        ds = CIFAR10(str(root_p), train=True, download=download)
    except RuntimeError as e:
        raise ValueError(
            f"data: CIFAR-10 not found under {root_p} ({e}). Get it once with "
            f"`python -m nas_data download cifar10:{root_p}` (needs network), or point "
            f"`--data imagefolder:PATH` at an ImageFolder copy"
        ) from None
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    y = np.asarray(ds.targets, dtype=np.int64)
    tr, va = _split_stratified(y, 0.1, seed=0)
    yt = torch.from_numpy(y)
    return Data(spec, x[tr], yt[tr], x[va], yt[va], list(ds.classes), CIFAR_MEAN, CIFAR_STD,
                info={"root": str(root_p)})


def _val_member(name: str, val_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


def _imagefolder(spec: str, arg: str, size: int, val_fraction: float) -> Data:
    path_s, _, cap = arg.rpartition("@") if "@" in arg else (arg, "", "")
    per_class = None
    if cap:
        if not cap.isdigit() or int(cap) < 1:
            raise ValueError(f"data: '@{cap}' must be a positive image count per class in {spec!r}")
        per_class = int(cap)
    root = Path(path_s).expanduser()
    if not root.exists():
        raise ValueError(f"data: ImageFolder path {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"data: ImageFolder path {str(root)!r} is not a directory")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: must lie in (0, 1), got {val_fraction}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for ci, c in enumerate(classes):
        imgs = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
        if per_class is not None:
            imgs = imgs[:per_class]
        files += [(p, ci) for p in imgs]
    used = sorted({classes[ci] for _, ci in files})
    if not files:
        raise ValueError(f"data: ImageFolder {str(root)!r} is empty: no images ({', '.join(IMG_EXTENSIONS)}) in class sub-folders")
    if len(used) < 2:
        raise ValueError(f"data: ImageFolder {str(root)!r} has {len(used)} class with images ({used}); classification needs at least 2")
    empty = [c for c in classes if c not in used]
    if empty:
        raise ValueError(f"data: ImageFolder class folder(s) {empty} under {str(root)!r} contain no images")
    key = hashlib.sha1(repr((str(root.resolve()), size, [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files])).encode()).hexdigest()[:16]
    cache = cache_root("imagefolder", f"{key}.npz")
    if cache.is_file():
        z = np.load(cache)
        x_np, y_np = z["x"], z["y"]
    else:
        x_np, y_np = _decode(files, size)
        atomic_write(cache, lambda tmp: np.savez(tmp, x=x_np, y=y_np))
    is_val = np.array([_val_member(f"{classes[ci]}/{p.name}", val_fraction) for p, ci in files])
    if is_val.all() or not is_val.any():
        raise ValueError(f"data: ImageFolder {str(root)!r} is too small for a train/val split ({len(files)} images)")
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    tr, va = torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))
    xf = x[tr].float() / 255
    mean = tuple(float(v) for v in xf.mean((0, 2, 3)))
    std = tuple(float(v) for v in xf.std((0, 2, 3)).clamp_min(1e-3))
    return Data(spec, x[tr], y[tr], x[va], y[va], used, mean, std,
                info={"root": str(root), "per_class": per_class, "val_fraction": val_fraction})


def _decode(files: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    x = np.empty((len(files), 3, size, size), dtype=np.uint8)
    y = np.empty(len(files), dtype=np.int64)
    try:
        from tqdm import tqdm

        it = tqdm(files, desc="decoding images", unit="img", disable=len(files) < 2000, leave=False)
    except ImportError:  # pragma: no cover
        it = files
    for k, (p, ci) in enumerate(it):
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                x[k] = np.asarray(im).transpose(2, 0, 1)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ValueError(f"data: cannot read image {str(p)!r}: {e}") from None
        y[k] = ci
    return x, y
