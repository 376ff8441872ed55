"""SPOS supernet training (Guo et al., "Single Path One-Shot Neural Architecture
Search with Uniform Sampling", ECCV 2020), retraining of a static network, and
``python -m supernet.train``.

Both run the one training engine (``nas_training.engine.fit``). A supernet step asks
its path sampler (``supernet.sampling``: FairNAS strict fairness by default,
uniform SPOS optionally inside a FLOPs window) which path to train, then trains
that single path (or, with the sandwich rule, the largest, the smallest and
random paths with in-place distillation); a static network's step is plain SGD.
Deterministic under a seed, checkpointed after every epoch, resumable with the
result of an uninterrupted run (see ``nas_training.engine``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nas_common import resolve_device
from nas_data import Data, load_data
from nas_training.distributed import LOCAL, Replica
from nas_training.engine import Recipe, StepFn, finish_step, fit, read_checkpoint, sgd_step, shard_loss
from search_space import Arch, SearchSpace

from .path_update import MaskedPathUpdate, PathOnlyUpdate
from .sampling import in_family, make_path_sampler
from .supernet import SuperNet

__all__ = ["train_supernet", "sandwich_step", "train_model", "load_supernet", "resolve_update", "CKPT_FORMAT",
           "MODEL_CKPT_FORMAT"]

log = logging.getLogger(__name__)
CKPT_FORMAT = "shufflenas.supernet/1"
MODEL_CKPT_FORMAT = "shufflenas.train/1"


def sandwich_step(supernet: SuperNet, x: torch.Tensor, y: torch.Tensor, paths: list[Arch], crit: nn.Module,
                  opt: torch.optim.Optimizer, sched, scaler: torch.amp.GradScaler, recipe: Recipe, use_amp: bool,
                  after_step: Callable[[], None] | None = None, *, replica: Replica = LOCAL,
                  loss_weight: float = 1.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One step of the sandwich rule with in-place distillation (BigNAS, Yu et al., ECCV 2020,
    section 3.1): ``paths[0]`` (the largest network) learns the labels with ``crit``; every other
    path learns the largest's predicted distribution (soft cross-entropy against its detached
    softmax). The gradients of all paths are summed into one optimizer step. Returns
    ``[(logits, loss)]`` per path, in order. ``replica``, ``loss_weight``: as :func:`sgd_step`."""
    opt.zero_grad(set_to_none=True)
    teacher = None
    outs = []
    for k, arch in enumerate(paths):
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp), replica.synced_batch_norm():
            out = supernet(x, arch)
            if k == 0:
                loss = shard_loss(crit, out, y)
                teacher = out.detach().float().softmax(1)
            elif y.numel():
                loss = -(teacher * out.float().log_softmax(1)).sum(1).mean()
            else:
                loss = out.sum() * 0.0
        scaler.scale(loss * loss_weight).backward()  # one path's graph at a time: memory of one path
        outs.append((out.detach(), loss.detach()))
    finish_step(supernet, opt, sched, scaler, recipe, after_step, replica)
    return outs


UPDATES = ("full", "path")


def _stored_update(path: Path) -> str | None:
    """The update a supernet checkpoint trained with (None: no such checkpoint; ``read_checkpoint``
    then says what is wrong with the file). Absent from the config = ``full``, as before the setting."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT or not isinstance(state.get("config"), dict):
        return None
    return state["config"].get("update", "full")


def resolve_update(update: str | None, sandwich: int, device: str | torch.device) -> str:
    """The optimizer update a supernet trains with: ``update`` itself, or for None the default.

    The default is ``path`` where the path-only update runs on path-sized gradients (one path
    per step, no AMP: ``sandwich == 0`` on a CPU) and ``full`` elsewhere (the sandwich rule, or
    CUDA, which trains with AMP), where it would work by masks: 10.6x the static step on this
    CPU against 1.9x for ``full`` and 1.5x for ``path`` (medians over 20 architectures,
    ``benchmarks/supernet_overhead.py``, session 19).
    On the committed ground truth (20 epochs, fair, three seeds) ``path`` ranked at Kendall tau
    0.364-0.537 (mean 0.443) against 0.364-0.449 (mean 0.392) for ``full`` (README, "Which
    supernet ranks").

    Raises:
        ValueError: ``update`` not None and not one of ``UPDATES``.
    """
    if update is None:
        return "path" if not sandwich and torch.device(device).type != "cuda" else "full"
    if update not in UPDATES:
        raise ValueError(f"update: expected one of {list(UPDATES)} or None (the default), got {update!r}")
    return update


def _config(space: SearchSpace, data: Data, recipe: Recipe, num_classes: int, small_input: bool,
            width_sharing: str = "prefix", conv0_head: str = "shared", sampler: str = "uniform",
            update: str = "full", v1_sharing: str = "labels", sandwich: int = 0, family: str | None = None,
            init: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {} if conv0_head == "shared" else {"conv0_head": conv0_head}  # old checkpoints stay resumable
    if v1_sharing != "dense":  # absent = the original scheme, so older checkpoints load as they were trained
        extra["v1_sharing"] = v1_sharing
    if sampler != "uniform":
        extra["sampler"] = sampler
    if update != "full":
        extra["update"] = update
    if sandwich:
        extra["sandwich"] = sandwich
    if family is not None:
        extra["family"] = family
    if init is not None:
        extra["init"] = init
    return {
        **extra,
        "space": space.to_dict(),
        "width_sharing": width_sharing,
        "data": data.spec,
        "image_size": data.image_size,
        "num_classes": num_classes,
        "small_input": small_input,
        "recipe": asdict(recipe),
    }


def train_supernet(
    space: SearchSpace,
    data: Data,
    recipe: Recipe = Recipe(),
    *,
    checkpoint: Path | str | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    small_input: bool | None = False,
    width_sharing: str = "prefix",
    conv0_head: str = "shared",
    v1_sharing: str = "labels",
    sampler: str | None = None,
    update: str | None = None,
    sandwich: int = 0,
    family: str | None = None,
    init: Path | str | None = None,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    workers: int = 1,
    address: str | None = None,
    replica: Replica = LOCAL,
    report: Callable[[dict], None] | None = None,
) -> tuple[SuperNet, dict[str, Any]]:
    """Train a supernet on ``data`` with SPOS; return ``(supernet, checkpoint_dict)``.

    Args:
        space: the search space.
        data: the dataset (``nas_data.load_data``).
        recipe: hyper-parameters and seed.
        checkpoint: file written (atomically) after every epoch.
        resume: continue from ``checkpoint`` if it exists (its config must match).
        device: ``cpu``/``cuda``; default GPU when present.
        small_input: ``False`` (default) trains ImageNet-stem paths, ``True`` small-input-stem
            paths (stride-1 conv1, no maxpool; about 10x the compute at 32x32), ``None`` both:
            the stem variant is a sampled decision like any other, as ``search.run`` searches it.
        width_sharing, conv0_head, v1_sharing: see :class:`SuperNet`.
        sampler: ``fair`` (FairNAS strict fairness) or ``uniform`` (SPOS, the one that takes the
            recipe's FLOPs window); see ``supernet.sampling``. None (default): ``fair``, or
            ``uniform`` when the recipe has a FLOPs window. Kendall tau against the committed
            ground truth (20 epochs, V1 labels): fair 0.36, uniform -0.03.
        update: ``full`` (plain SGD on the shared tensors: weight decay and momentum move
            every element each step) or ``path`` (only the elements the sampled path reads
            change; the rest keep value and momentum bit for bit; ``supernet.path_update``:
            on gradients of the path's size for one path per step, by masks with the sandwich
            rule or AMP). None (default): when resuming, the checkpoint's own update (so a
            checkpoint of either kind, from a GPU or from before this default, resumes without
            the flag); otherwise :func:`resolve_update`, ``path`` for one path per step on a
            CPU, else ``full``.
        sandwich: 0 (default) trains one sampled path per step (SPOS). n >= 1 trains, per step,
            the largest and the smallest network of the space and n sampled paths, the others
            distilled from the largest (:func:`sandwich_step`; BigNAS uses n = 2). About
            (n + 2) paths of compute per step, the largest the most expensive. The history's
            train accuracy is that of the first sampled path, as without the sandwich.
        family: train only paths of this unit family (``"v1"``/``"v2"``, see
            :func:`supernet.sampling.unit_family`): a sub-supernet of few-shot NAS.
        init: a supernet checkpoint whose weights start the training (few-shot NAS starts
            every sub-supernet from the trained one-shot supernet); same space and knobs.

        progress: show a tqdm progress bar.
        stop_after_epoch: stop (as if interrupted) after this many epochs.
        workers: train data-parallel on this many Ray Train workers (``nas_training.cluster``);
            ``recipe.batch_size`` stays the global batch (B/N per worker), BatchNorm is
            synchronised and the result equals 1 worker's to float rounding
            (``nas_training.distributed``). The checkpoint loads into 1 worker and back.
        address: the Ray cluster of the workers (None: a local one).
        replica, report: set by ``nas_training.cluster.run_workers`` inside each worker.

    Raises:
        ValueError: bad device, sampler or update; a checkpoint trained with other settings;
            more workers than the cluster's CPUs (GPUs).
        RuntimeError: a Ray Train worker failed.
    """
    dev = resolve_device(device)
    if workers != 1:
        kw = dict(checkpoint=checkpoint, resume=resume, small_input=small_input, width_sharing=width_sharing,
                  conv0_head=conv0_head, v1_sharing=v1_sharing, sampler=sampler, update=update, sandwich=sandwich,
                  family=family, init=init, progress=progress, stop_after_epoch=stop_after_epoch)
        kw.update(space=space, data=data, recipe=recipe)
        return _on_workers(train_supernet, kw, dev, workers, address, "supernet",
                           load=lambda p: load_supernet(p, device=dev))
    small = None if small_input is None else bool(small_input)
    if update is None and resume and checkpoint is not None:  # a resume continues the training it resumes
        update = _stored_update(Path(checkpoint))
    update = resolve_update(update, sandwich, dev)
    if sampler is None:  # the fair sampler's plan is fixed per step: it takes no FLOPs window or family filter
        windowed = recipe.flops_min is not None or recipe.flops_max is not None
        sampler = "uniform" if windowed or family is not None else "fair"
    if family is not None and sampler != "uniform":
        raise ValueError("family: a few-shot sub-supernet samples its family by rejection; use sampler='uniform'")
    task = data.task(small)
    sample = make_path_sampler(sampler, space, task, seed=recipe.seed, flops_min=recipe.flops_min,
                               flops_max=recipe.flops_max)
    if isinstance(sandwich, bool) or not isinstance(sandwich, int) or sandwich < 0:
        raise ValueError(f"sandwich: expected the number of sampled paths per step (0 = off), got {sandwich!r}")
    if family is not None:
        sample = in_family(sample, family)
    extremes = ([space.extreme(w, num_classes=task.num_classes, small_input=task.small_input)
                 for w in ("largest", "smallest")]
                if sandwich else [])
    config = _config(space, data, recipe, data.num_classes, small, width_sharing, conv0_head, sampler, update, v1_sharing,
                     sandwich, family, None if init is None else str(init))
    ckpt_path = Path(checkpoint) if checkpoint else None
    if resume and ckpt_path is None:
        raise ValueError("resume: needs a checkpoint path")
    state = read_checkpoint(ckpt_path, CKPT_FORMAT, config, "supernet") if resume else None
    if state is not None:
        log.info("resuming %s at epoch %d/%d", ckpt_path, state["epoch"], recipe.epochs)
    torch.manual_seed(recipe.seed)
    supernet = SuperNet(space, num_classes=data.num_classes, width_sharing=width_sharing, conv0_head=conv0_head,
                        v1_sharing=v1_sharing)
    if init is not None and state is None:
        _load_init(supernet, init)
    crit = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def make_step(opt, sched, scaler, use_amp) -> StepFn:
        # the path-only update: on path-sized gradients for one path per step, by masks for several or AMP
        sparse = PathOnlyUpdate(supernet, opt) if update == "path" and not sandwich and not use_amp else None
        masked = MaskedPathUpdate(supernet, opt) if update == "path" and sparse is None else None

        def step(x, y, weight, rng, k):  # SPOS: the sampler picks the path(s) this step trains
            paths = [sample(rng, k)] if not sandwich else extremes + [sample(rng, k * sandwich + r) for r in range(sandwich)]
            saved = masked.freeze(paths) if masked is not None else None
            after = None if saved is None else lambda: masked.restore(saved)
            if sandwich:
                return sandwich_step(supernet, x, y, paths, crit, opt, sched, scaler, recipe, use_amp, after,
                                     replica=replica, loss_weight=weight)[2]
            if sparse is not None:
                return sgd_step(lambda: sparse.forward(x, paths[0]), y, crit, supernet, opt, sched, scaler, recipe,
                                use_amp, replica=replica, loss_weight=weight, update=sparse)
            return sgd_step(lambda: supernet(x, paths[0]), y, crit, supernet, opt, sched, scaler, recipe, use_amp,
                            after_step=after, replica=replica, loss_weight=weight)
        return step

    ckpt = fit(supernet, data, recipe, make_step, device=dev, fmt=CKPT_FORMAT, config=config, checkpoint=ckpt_path,
               state=state, desc="supernet", progress=progress, stop_after_epoch=stop_after_epoch, replica=replica,
               report=report)
    return supernet, ckpt


def train_model(
    model: nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
    checkpoint: Path | str | None = None,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
    workers: int = 1,
    address: str | None = None,
    replica: Replica = LOCAL,
    report: Callable[[dict], None] | None = None,
    after_epoch: Callable[[nn.Module], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train a static model with the same recipe (SGD, schedule, smoothing, augmentation)
    as the supernet; returns per-epoch ``train_loss``, ``train_acc`` and ``val_acc``.

    With ``checkpoint``, a self-describing checkpoint (``config``, recipe, epoch, model,
    optimizer, history) is written atomically after every epoch; ``resume=True`` continues
    from it (its config must match) with the result of an uninterrupted run.

    ``workers``, ``address``: data-parallel on Ray Train workers, exactly as
    :func:`train_supernet`; ``model`` then receives the trained weights from rank 0's
    checkpoint. ``replica``, ``report``: set inside each worker. ``after_epoch``: as
    :func:`nas_training.fit` (one worker only).

    Raises:
        ValueError: a checkpoint of another config; more workers than the cluster holds;
            ``after_epoch`` with more than one worker.
        RuntimeError: a Ray Train worker failed."""
    dev = resolve_device(device)
    if workers != 1 and after_epoch is not None:
        raise ValueError(f"after_epoch: runs in this process only; use workers=1 (got {workers})")
    if workers != 1:
        kw = dict(model=model, data=data, recipe=recipe, progress=progress, desc=desc, checkpoint=checkpoint,
                  resume=resume, config=config, stop_after_epoch=stop_after_epoch)
        state = _on_workers(train_model, kw, dev, workers, address, "model",
                            load=lambda p: torch.load(p, map_location="cpu", weights_only=False))
        model.load_state_dict(state["model"])
        model.to(dev)
        return list(state["history"])
    torch.manual_seed(recipe.seed)
    cfg = {**(config or {}), "recipe": asdict(recipe), "data": data.spec}
    ckpt_path = Path(checkpoint) if checkpoint else None
    state = read_checkpoint(ckpt_path, MODEL_CKPT_FORMAT, cfg, "training") if resume else None
    crit = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def make_step(opt, sched, scaler, use_amp) -> StepFn:
        def step(x, y, weight, rng, k):  # no sampler: the whole model, every step
            return sgd_step(lambda: model(x), y, crit, model, opt, sched, scaler, recipe, use_amp, replica=replica,
                            loss_weight=weight)
        return step

    ckpt = fit(model, data, recipe, make_step, device=dev, fmt=MODEL_CKPT_FORMAT, config=cfg, checkpoint=ckpt_path,
               state=state, desc=desc, validate=True, progress=progress, stop_after_epoch=stop_after_epoch,
               replica=replica, report=report, after_epoch=after_epoch)
    return list(ckpt.get("history", []))


def _on_workers(fn: Callable[..., Any], kwargs: dict[str, Any], dev: torch.device, workers: int,
                address: str | None, name: str, load: Callable[[Path], Any]) -> Any:
    """Run ``fn(**kwargs)`` on ``workers`` Ray Train workers; returns ``load`` of the checkpoint
    rank 0 wrote (``kwargs["checkpoint"]``, else one in a temporary folder, removed after)."""
    import shutil
    import tempfile
    import uuid

    from nas_training.cluster import check_workers, run_workers

    check_workers(workers, address=address, use_gpu=dev.type == "cuda", flag="workers")
    if kwargs["recipe"].batch_size < workers:  # before any worker starts
        raise ValueError(f"batch_size: {kwargs['recipe'].batch_size} is the global batch and cannot feed "
                         f"{workers} workers; use at least {workers}")
    tmp = None if kwargs.get("checkpoint") else Path(tempfile.mkdtemp(prefix="shufflenas-train-"))
    ckpt = Path(kwargs.get("checkpoint") or tmp / f"{name}.pt").resolve()
    kwargs = {**kwargs, "checkpoint": str(ckpt), "device": "cpu" if dev.type == "cpu" else str(dev)}
    if kwargs.get("init") is not None:
        kwargs["init"] = str(Path(kwargs["init"]).resolve())  # Ray Train workers run in another folder
    try:
        run_workers(fn, kwargs, workers=workers, address=address, use_gpu=dev.type == "cuda",
                    storage=ckpt.parent / "ray_train", name=f"{name}-{uuid.uuid4().hex[:8]}")
        if not ckpt.is_file():
            raise ValueError(f"workers: no epoch was trained, so there is no checkpoint at {ckpt}")
        return load(ckpt)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _load_init(supernet: SuperNet, init: Path | str) -> None:
    """Start ``supernet`` from the weights of the checkpoint ``init`` (few-shot NAS)."""
    start, _ = load_supernet(init)
    if start.state_dict().keys() != supernet.state_dict().keys():
        raise ValueError(f"init: {init} is a supernet of another space or with other sharing knobs")
    try:
        supernet.load_state_dict(start.state_dict())
    except RuntimeError as e:
        raise ValueError(f"init: {init} does not fit this supernet ({str(e).splitlines()[0]})") from None


def load_supernet(path: Path | str, *, device: str | torch.device = "cpu") -> tuple[SuperNet, dict[str, Any]]:
    """Rebuild a trained supernet from its self-describing checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"supernet checkpoint: {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"supernet checkpoint: cannot read {str(path)!r} ({e})") from None
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise ValueError(f"supernet checkpoint: {str(path)!r} is not a ShuffleNAS supernet checkpoint")
    cfg = state["config"]
    supernet = SuperNet(SearchSpace.from_dict(cfg["space"]), num_classes=cfg["num_classes"],
                        width_sharing=cfg.get("width_sharing", "prefix"), conv0_head=cfg.get("conv0_head", "shared"),
                        v1_sharing=cfg.get("v1_sharing", "dense"))
    supernet.load_state_dict(state["model"])
    return supernet.to(device), state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m supernet.train", description="Train a weight-sharing supernet with SPOS.")
    ap.add_argument("--data", default="digits", help="digits | cifar10[:ROOT] | imagefolder:PATH[@N]")
    ap.add_argument("--space", default="default", help="built-in space name or YAML path")
    ap.add_argument("--out", default="results/supernet", help="output folder (supernet.pt is written there)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/supernet.pt")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: GPU when present)")
    ap.add_argument("--image-size", type=int, default=None, help="resize ImageFolder images (default 32)")
    ap.add_argument("--small-input", choices=["no", "yes", "both"], default="no",
                    help="stem variant of the trained paths: ImageNet stem (no), small-input stem (yes: "
                         "32x32 maps, ~10x compute) or both (the search's setting)")
    ap.add_argument("--width-sharing", choices=["prefix", "separate"], default="prefix")
    ap.add_argument("--v1-sharing", choices=["dense", "labels", "per_group"], default="labels",
                    help="V1 group counts: one dense weight (positions after the shuffle), the same with "
                         "hidden-channel labels, or separate weights per group count")
    ap.add_argument("--sampler", choices=["uniform", "fair"], default=None,
                    help="path sampling: fair (FairNAS strict fairness per position; the default) or uniform "
                         "(SPOS; the default with a FLOPs window)")
    ap.add_argument("--update", choices=list(UPDATES), default=None,
                    help="full: SGD on whole shared tensors; path: only what the sampled path reads changes "
                         "(value and momentum; gradients of the path's size). Default: path for one path per "
                         "step on a CPU, full with --sandwich or on CUDA (AMP)")
    ap.add_argument("--sandwich", type=int, default=0, metavar="N",
                    help="BigNAS sandwich rule: per step the largest, the smallest and N sampled paths, "
                         "distilled from the largest (0 = off, single path)")
    ap.add_argument("--train-workers", type=int, default=1, metavar="N", help="train on N Ray Train workers, data-parallel (the batch size stays the global batch; BatchNorm synchronised); default 1: in this process")
    ap.add_argument("--address", default=None, help="Ray cluster of the workers (ray start --head); default a local one")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    d = Recipe()
    for f in fields(Recipe):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",) or isinstance(f.default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            typ = int if isinstance(f.default, int) else float
            ap.add_argument(flag, type=typ, default=getattr(d, f.name))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        recipe = Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe)})
        from nas_training.cluster import check_workers

        check_workers(args.train_workers, address=args.address, use_gpu=resolve_device(args.device).type == "cuda")
        space = SearchSpace.load(args.space)
        data = load_data(args.data, image_size=args.image_size)
        out = Path(args.out)
        ckpt = out / "supernet.pt"
        if ckpt.exists() and not args.resume:
            raise ValueError(f"out: {ckpt} exists; pass --resume to continue it or choose another --out")
        _, state = train_supernet(space, data, recipe, checkpoint=ckpt, resume=args.resume, device=args.device,
                                  small_input={"no": False, "yes": True, "both": None}[args.small_input],
                                  width_sharing=args.width_sharing,
                                  v1_sharing=args.v1_sharing,
                                  sampler=args.sampler, update=args.update, sandwich=args.sandwich,
                                  progress=not args.quiet, workers=args.train_workers, address=args.address)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: python -m supernet.train --resume --out {args.out} (same flags)", file=sys.stderr)
        return 130
    m = state.get("metrics", {})
    print(f"supernet: {ckpt} epoch {state.get('epoch')} train loss {m.get('train_loss', float('nan')):.4f} "
          f"acc {m.get('train_acc', float('nan')):.2f}% in {state.get('train_seconds', 0):.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
