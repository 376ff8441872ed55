"""``Task``: what the networks of a run are built for (classes, input side, stem variant)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    """The task a search, a supernet, a sampler or a latency table is made for.

    One value replaces the ``num_classes`` / ``image_size`` / ``small_input`` triple
    that every layer used to pass on by hand.

    Args:
        num_classes: classifier outputs (``fc`` width).
        image_size: input side in pixels (square ``(N, 3, S, S)`` inputs).
        small_input: stem variant: ``False`` the ImageNet stem (stride-2 conv + max pool,
            torchvision's), ``True`` the small-input stem (stride-1 conv, no pool), ``None``
            every variant the search space declares (the search's setting).

    Raises:
        ValueError: a bad field (named).
    """

    num_classes: int = 1000
    image_size: int = 224
    small_input: bool | None = None

    def __post_init__(self) -> None:
        for name in ("num_classes", "image_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"task: {name} must be a positive integer, got {v!r}")
        if self.small_input is not None and not isinstance(self.small_input, bool):
            raise ValueError(f"task: small_input must be True, False or None (both stems), got {self.small_input!r}")

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """``(batch, 3, image_size, image_size)``."""
        return (batch, 3, self.image_size, self.image_size)

    def stem_variants(self, declared: tuple[bool, ...]) -> tuple[bool, ...]:
        """The stem variants this task covers among those a space ``declared``: its own, or all (``None``)."""
        return tuple(declared) if self.small_input is None else (self.small_input,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
