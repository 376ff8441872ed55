"""The one training engine: recipe, optimizer and schedule, the step, the epoch loop,
checkpoint and resume, accuracy.

``fit(model, data, recipe, make_step, ...)`` owns the epoch loop, progress bars, the
per-epoch history, the checkpoint format and the resume rule (:func:`read_checkpoint`).
What a step trains is injected: SPOS supernet training (``supernet.train.train_supernet``)
passes a step that asks its path sampler for the path before each step (NNI's
``RandomSamplingLightningModule`` resamples the same way); retraining a static network
(``supernet.train.train_model``) passes a plain SGD step.

SGD with momentum, linear warm-up then cosine decay stepped every iteration, label
smoothing, no weight decay on BN parameters and biases, global gradient-norm clipping;
channels_last on CPU (about 7x faster for depthwise/grouped convs on these machines), AMP
(fp16 + GradScaler) on CUDA. Deterministic under a seed: the shuffling, the augmentation
and the sampler of epoch e draw from generators seeded by ``(seed, e)``
(:func:`epoch_generators`); the checkpoint is written atomically after every epoch and a
resumed run ends with the result of an uninterrupted one. Data-parallel workers
(:mod:`nas_training.distributed`) run the same loop on their shard.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from nas_common import atomic_save, progress_bar
from nas_data import Data

from .distributed import LOCAL, Replica

__all__ = ["Recipe", "fit", "read_checkpoint", "sgd_step", "finish_step", "shard_loss", "training_setup",
           "make_optimizer", "make_scheduler", "epoch_generators", "accuracy", "StepFn", "TRAIN_MIN_BATCH"]

log = logging.getLogger(__name__)
TRAIN_MIN_BATCH = 2  # a last training batch of one joins the one before: BatchNorm cannot normalise 1 value


@dataclass(frozen=True)
class Recipe:
    """Training recipe, recorded in every checkpoint."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: int = 2
    grad_clip: float | None = 5.0  # max global grad norm (None = off); random paths spike the gradient
    seed: int = 0
    flops_min: float | None = None  # MFLOPs at the data's image size (SPOS FLOPs window)
    flops_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        for name in ("lr", "weight_decay", "label_smoothing", "momentum"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing: must lie in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.warmup_epochs:
            raise ValueError(f"warmup_epochs: must be >= 0, got {self.warmup_epochs}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip: must be > 0 or None, got {self.grad_clip}")
        if self.flops_min is not None and self.flops_max is not None and self.flops_min > self.flops_max:
            raise ValueError(f"flops_min: {self.flops_min} is above flops_max {self.flops_max}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"recipe: unknown key(s) {extra}; known {sorted(known)}")
        return cls(**d)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD with weight decay on conv/linear weights only (not on BN parameters or biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 0, stepped every iteration."""
    total = recipe.epochs * steps_per_epoch
    warm = min(recipe.warmup_epochs, recipe.epochs - 1) * steps_per_epoch  # never the whole run

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _min_last(replica: Replica) -> int:
    """Smallest last batch: BatchNorm needs 2 images (over all workers: the statistics are global).
    Independent of the worker count, so the steps, the schedule and the paths are too."""
    return TRAIN_MIN_BATCH


def shard_loss(crit: nn.Module, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``crit(out, y)``; 0 for a worker's empty shard, still joined to the graph (its backward
    takes part in the synchronised BatchNorm's all-reduce)."""
    return crit(out, y) if y.numel() else out.sum() * 0.0


def training_setup(model: nn.Module, data: Data, recipe: Recipe, dev: torch.device, replica: Replica = LOCAL):
    """Device and memory format (channels_last on CPU), optimizer, per-step schedule, AMP scaler (CUDA)."""
    channels_last = dev.type == "cpu"
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    n = data.train_y.numel()
    if n < 2:
        raise ValueError(f"data: {data.spec} has {n} training image(s); training (BatchNorm) needs at least 2")
    if recipe.batch_size < replica.world_size:
        raise ValueError(f"batch_size: {recipe.batch_size} is the global batch and cannot feed "
                         f"{replica.world_size} workers; use at least {replica.world_size}")
    steps = data.num_batches("train", batch_size=recipe.batch_size, min_last=_min_last(replica))
    opt = make_optimizer(model, recipe)
    sched = make_scheduler(opt, recipe, steps)
    use_amp = dev.type == "cuda"
    return channels_last, steps, opt, sched, use_amp, torch.amp.GradScaler("cuda", enabled=use_amp)


def sgd_step(forward: Callable[[], torch.Tensor], y: torch.Tensor, crit: nn.Module, model: nn.Module,
             opt: torch.optim.Optimizer, sched, scaler: torch.amp.GradScaler, recipe: Recipe,
             use_amp: bool, after_step: Callable[[], None] | None = None, *, replica: Replica = LOCAL,
             loss_weight: float = 1.0, update: ParamUpdate | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step (AMP on CUDA, gradient clipping, LR schedule); returns ``(logits, loss)``.
    ``after_step`` runs right after the optimizer step (the masked path-only update restores there).
    On a data-parallel ``replica``, ``y`` is this worker's shard and ``loss_weight`` its weight
    (:meth:`Replica.shard`): BatchNorm uses the global batch and the gradients are averaged.
    ``update``: see :func:`finish_step`."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp), replica.synced_batch_norm():
        out = forward()
        loss = shard_loss(crit, out, y)
    scaler.scale(loss * loss_weight if loss_weight != 1.0 else loss).backward()
    finish_step(model, opt, sched, scaler, recipe, after_step, replica, update=update)
    return out, loss


class ParamUpdate(Protocol):
    """An update that replaces the optimizer step: the gradients live on ``params()`` (not on
    the model's parameters) and ``step()`` applies them (``supernet.path_update.PathOnlyUpdate``)."""

    def params(self) -> list[torch.Tensor]: ...

    def step(self) -> None: ...


def finish_step(model: nn.Module, opt: torch.optim.Optimizer, sched, scaler: torch.amp.GradScaler, recipe: Recipe,
                after_step: Callable[[], None] | None, replica: Replica = LOCAL, *,
                update: ParamUpdate | None = None) -> None:
    """All-reduce the gradients (data-parallel), clip them, step, schedule. With ``update``, its
    ``params()`` hold the gradients and ``update.step()`` replaces the optimizer step.

    Raises:
        ValueError: ``update`` with an enabled AMP scaler (its gradients are not the optimizer's)."""
    if update is not None and scaler.is_enabled():
        raise ValueError("update: a custom parameter update does not support AMP; use the optimizer step")
    params = list(update.params()) if update is not None else list(model.parameters())
    replica.all_reduce_grads(params)  # before clipping: every worker clips and steps the same gradient
    if recipe.grad_clip:
        if update is None:
            scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(params, recipe.grad_clip)
    if update is None:
        scaler.step(opt)
    else:
        update.step()
    if after_step is not None:
        after_step()
    scaler.update()
    if update is None:
        sched.step()
        return
    with warnings.catch_warnings():  # the update stands in for opt.step(), which the scheduler checks for
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        sched.step()


def epoch_generators(seed: int, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
    return np.random.default_rng([seed, epoch]), torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@torch.no_grad()
def accuracy(model: Callable, batches, *, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (in %) of ``model`` over ``(x, y)`` batches.

    An ``nn.Module`` is evaluated in eval mode and handed back in the mode it came in.

    Raises:
        ValueError: no samples in ``batches``.
    """
    correct = total = 0
    was_training = isinstance(model, nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        for x, y in batches:
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.numel())
    finally:
        if was_training:
            model.train()
    if total == 0:
        raise ValueError("batches: no samples to evaluate")
    return 100.0 * correct / total


StepFn = Callable[[torch.Tensor, torch.Tensor, float, np.random.Generator, int], tuple[torch.Tensor, torch.Tensor]]


def read_checkpoint(path: Path | None, fmt: str, config: dict[str, Any], what: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` to resume from, or None when there is none yet.

    The one resume rule of both trainings: the file must be a ``fmt`` checkpoint trained with
    exactly ``config`` (recipe, data, space and knobs).

    Raises:
        ValueError: not a ``what`` checkpoint, or one trained with other settings (names them).
    """
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(f"resume: {path} is not a {what} checkpoint")
    diff = sorted(k for k in set(config) | set(state["config"]) if state["config"].get(k) != config.get(k))
    if diff:
        raise ValueError(f"resume: checkpoint {path} was trained with a different {', '.join(diff)}; "
                         f"use a new output folder or the same settings")
    return state


def fit(model: nn.Module, data: Data, recipe: Recipe, make_step: Callable[..., StepFn], *, device: torch.device,
        fmt: str, config: dict[str, Any], checkpoint: Path | None = None, state: dict[str, Any] | None = None,
        desc: str = "train", validate: bool = False, progress: bool = True, stop_after_epoch: int | None = None,
        replica: Replica = LOCAL, report: Callable[[dict], None] | None = None,
        after_epoch: Callable[[nn.Module], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one training engine: the epoch loop, progress, per-epoch history, checkpoint and resume.

    ``make_step(opt, sched, scaler, use_amp)`` returns the step, ``step(x, y, weight, rng, global_step)
    -> (logits, loss)``: for SPOS it asks its path sampler what to train (``rng`` and the global
    step seed the path, so every worker and a resumed run draw the same ones); for a static model
    it is a plain SGD step. ``state`` (from :func:`read_checkpoint`) continues a run with the result
    of an uninterrupted one. With ``validate``, each epoch records ``val_acc`` (top-1 %, validation
    split). ``after_epoch(model)`` runs after each epoch's training, before validation and the
    checkpoint (e.g. BN recalibration, ``search.finetune``); the dict it returns is recorded in that
    epoch's history entry. After every epoch the checkpoint (format ``fmt``, ``config``, epoch, model, optimizer,
    schedule, scaler, history, seconds, workers) is written atomically to ``checkpoint`` by rank 0.
    Returns the last checkpoint dict (``state`` if no epoch ran).
    """
    channels_last, steps, opt, sched, use_amp, scaler = training_setup(model, data, recipe, device, replica)
    history: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = list(state["history"])
        start_epoch, elapsed = state["epoch"], state.get("train_seconds", 0.0)
        log.debug("resuming %s at epoch %d/%d", checkpoint, start_epoch, recipe.epochs)  # per fine-tune step: quiet
    step_fn = make_step(opt, sched, scaler, use_amp)
    ckpt: dict[str, Any] = state or {}
    for epoch in range(start_epoch, recipe.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        t0 = time.perf_counter()
        loss, acc = _train_epoch(model, data, recipe, step_fn, epoch, steps, device=device, channels_last=channels_last,
                                 desc=desc, progress=progress, replica=replica)
        elapsed += time.perf_counter() - t0
        entry = {"epoch": epoch + 1, "train_loss": loss, "train_acc": acc, "lr": opt.param_groups[0]["lr"],
                 "seconds": time.perf_counter() - t0}
        if after_epoch is not None:
            entry.update(after_epoch(model))
        if validate:
            model.eval()
            entry["val_acc"] = accuracy(model, data.batches("val", batch_size=256, device=device,
                                                            channels_last=channels_last))
        history.append(entry)
        log.info("%s epoch %d/%d loss %.4f acc %.2f%%%s", desc, epoch + 1, recipe.epochs, loss, acc,
                 f" val top-1 {entry['val_acc']:.2f}%" if validate else "")
        ckpt = {"format": fmt, "config": config, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "history": history, "metrics": entry, "train_seconds": elapsed, "torch": str(torch.__version__),
                "device": str(device), "workers": replica.world_size}
        if checkpoint is not None and replica.is_main:
            atomic_save(ckpt, checkpoint)
        if report is not None:
            report(dict(entry))
    return ckpt


def _train_epoch(model: nn.Module, data: Data, recipe: Recipe, step_fn: StepFn, epoch: int, steps: int, *,
                 device: torch.device, channels_last: bool, desc: str, progress: bool,
                 replica: Replica) -> tuple[float, float]:
    """One epoch of ``step_fn`` over the shuffled, augmented training split; (loss, top-1 %) over
    every worker's images."""
    rng, gen = epoch_generators(recipe.seed, epoch)
    model.train()
    tot_loss = tot_correct = tot_n = 0.0
    bar = progress_bar(steps, f"{desc} epoch {epoch + 1}/{recipe.epochs}", "step", progress and replica.is_main)
    for k, (x, y) in enumerate(data.batches("train", batch_size=recipe.batch_size, shuffle=True, augment=True,
                                            generator=gen, device=device, channels_last=channels_last,
                                            min_last=_min_last(replica))):
        x, y, weight = replica.shard(x, y)
        out, loss = step_fn(x, y, weight, rng, epoch * steps + k)
        n = y.numel()
        tot_loss += float(loss.detach()) * n
        tot_correct += int((out.argmax(1) == y).sum())
        tot_n += n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{tot_loss / tot_n:.3f}", acc=f"{100 * tot_correct / tot_n:.1f}%")
    if bar is not None:
        bar.close()
    tot_loss, tot_correct, tot_n = replica.all_reduce_sums(tot_loss, tot_correct, tot_n)
    return tot_loss / tot_n, 100 * tot_correct / tot_n
