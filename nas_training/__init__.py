"""Training: one engine for supernets and static networks (``engine.py``), data-parallel
replicas with synchronised BatchNorm (``distributed.py``), and Ray clusters and Ray Train
workers (``cluster.py``)."""

from .engine import Recipe, accuracy, fit, make_optimizer, read_checkpoint

__all__ = ["Recipe", "fit", "read_checkpoint", "accuracy", "make_optimizer"]
