"""The Ray cluster: joining or starting one, its dashboard, and training on several workers.

* :func:`init_ray` joins ``address`` (``ray start --head`` prints it) or starts a local
  cluster with its dashboard on 127.0.0.1, and prints how a person opens the dashboard.
* :func:`check_workers` refuses, in one line, more training workers than the cluster has
  CPUs (or GPUs).
* :func:`run_workers` runs a training function on N Ray Train workers
  (``ray.train.torch.TorchTrainer``: one process per worker, a ``torch.distributed`` process
  group, gloo on CPU and nccl on GPU); the function receives its
  :class:`~nas_training.distributed.Replica`.

Several nodes: ``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the
others, then pass ``--address HEAD:6379``. The checkpoint path must be on storage every
node sees (a shared file system), as rank 0 writes it and every worker reads it on resume.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable

from .distributed import Replica

__all__ = ["init_ray", "dashboard_hint", "check_reachable", "check_workers", "run_workers", "error_line"]

log = logging.getLogger(__name__)


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast on an address nobody answers at (``ray.init`` would retry for minutes).

    Raises:
        ValueError: ``address`` is not ``HOST:PORT`` or nothing listens there.
    """
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address: expected HOST:PORT (as printed by `ray start --head`), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"address: cannot reach a Ray cluster at {address!r} ({e})") from None


def init_ray(address: str | None, *, num_cpus: int | None = None) -> Any:
    """Join ``address`` or start a local cluster with the dashboard on 127.0.0.1; returns the context.

    Raises:
        ValueError: an unreachable or malformed ``address``.
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    if address and address != "auto":
        check_reachable(address)
    try:
        if address:
            ctx = ray.init(address=address, log_to_driver=False)
        else:
            ctx = ray.init(include_dashboard=True, dashboard_host="127.0.0.1", num_cpus=num_cpus,
                           log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueError(f"address: cannot reach a Ray cluster at {address!r} ({e})") from None
    url = getattr(ctx, "dashboard_url", None)
    if url:
        print(dashboard_hint(url), flush=True)
    return ctx


def dashboard_hint(url: str) -> str:
    """How a person opens the dashboard at ``url``: Ray 2.60's new local clusters use token
    authentication (``RAY_AUTH_MODE=token``), and the page asks for the token kept in
    ``~/.ray/auth_token`` (``ray get-auth-token`` prints it)."""
    line = f"Ray dashboard: http://{url}"
    token = Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" or token.is_file():
        line += (f" (it asks for a token: paste the one in {token}, which `ray get-auth-token` prints; "
                 f"or start the cluster with RAY_AUTH_MODE=disabled on a trusted machine)")
    return line


def error_line(error: BaseException) -> str:
    """One line for a Ray error: the root cause (Ray wraps a worker's exception in RayTaskError,
    TuneError or Train V2's WorkerGroupError, whose own first line says nothing)."""
    error = _first_worker_failure(error)
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    causes = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "^", "ray::", "~")) and ":" in ln]
    return (causes[-1] if causes else lines[-1] if lines else type(error).__name__)[:300]


def _first_worker_failure(error: BaseException) -> BaseException:
    failures = getattr(error, "worker_failures", None)  # Ray Train V2: {rank: exception}
    return next(iter(failures.values())) if failures else error


def _root_cause(error: BaseException) -> BaseException:
    error = _first_worker_failure(error)
    return getattr(error, "cause", None) or getattr(error, "__cause__", None) or error


def _local_cpus() -> int:
    """CPUs this process may use (its affinity mask; Ray's local cluster counts the same)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _capacity(address: str | None, use_gpu: bool) -> int:
    """CPUs (or GPUs) the cluster offers; the local machine's when no cluster is running yet."""
    import ray

    if address is None and not ray.is_initialized():
        if use_gpu:
            import torch

            return torch.cuda.device_count()
        return _local_cpus()
    init_ray(address)
    return int(ray.cluster_resources().get("GPU" if use_gpu else "CPU", 0))


def check_workers(workers: int, *, address: str | None = None, use_gpu: bool = False,
                  flag: str = "train_workers") -> None:
    """Refuse, before any work starts, a worker count the cluster cannot hold (one CPU, or
    one GPU, per worker).

    Raises:
        ValueError: ``workers`` < 1, or more than the cluster's CPUs (GPUs); names ``flag``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{flag}: must be a positive integer, got {workers!r}")
    if workers == 1:
        return
    have = _capacity(address, use_gpu)
    kind = "GPUs" if use_gpu else "CPUs"
    if workers > have:
        where = f"the Ray cluster at {address}" if address else "this machine"
        raise ValueError(f"{flag}: {workers} workers need {workers} {kind}, {where} has {have}; "
                         f"use {max(have, 1)} or fewer, or add nodes (`ray start --address ...`)")


def _worker_entry(config: dict) -> None:
    """Body of every Ray Train worker: its replica, threads and device, then the function."""
    import ray.train
    import torch

    ctx = ray.train.get_context()
    replica = Replica(ctx.get_world_rank(), ctx.get_world_size())
    torch.set_num_threads(config["threads"])
    kwargs = dict(config["kwargs"])
    if config["use_gpu"]:
        import ray.train.torch

        kwargs["device"] = ray.train.torch.get_device()
    config["fn"](replica=replica, report=ray.train.report, **kwargs)


def run_workers(fn: Callable[..., Any], kwargs: dict[str, Any], *, workers: int, address: str | None = None,
                use_gpu: bool = False, storage: Path | str, name: str) -> None:
    """Run ``fn(replica=..., report=..., **kwargs)`` on ``workers`` Ray Train workers and wait.

    ``report(metrics)`` (``ray.train.report``) shows per-epoch metrics in the Ray dashboard.
    Each worker reserves one GPU (``use_gpu``) or one CPU, and runs as many torch threads as
    the cluster has CPUs per worker. Results travel through files ``fn`` writes (rank 0's
    checkpoint).

    Raises:
        ValueError: too many workers for the cluster; an unreachable ``address``; a
            ``ValueError`` a worker raised (bad settings), as the same one line.
        RuntimeError: a worker failed otherwise (its root cause's line).
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    check_workers(workers, address=address, use_gpu=use_gpu)
    init_ray(address)
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
    trainer = TorchTrainer(
        _worker_entry,
        train_loop_config={"fn": fn, "kwargs": kwargs, "threads": 1 if use_gpu else threads, "use_gpu": use_gpu},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker=None if use_gpu else {"CPU": 1}),
        run_config=RunConfig(name=name, storage_path=str(Path(storage).resolve())),
    )
    print(f"training on {workers} Ray Train workers ({'nccl' if use_gpu else 'gloo'}, "
          f"{'1 GPU' if use_gpu else f'{threads} CPU thread(s)'} each); per-epoch metrics in the Ray dashboard",
          flush=True)
    try:
        result = trainer.fit()
        error = result.error
    except Exception as e:  # Ray Train V2 raises TrainingFailedError where V1 returned it
        error = e
    if error is not None:
        cause = _root_cause(error)
        if isinstance(cause, ValueError):
            raise ValueError(str(cause)) from None
        raise RuntimeError(f"train_workers: a Ray Train worker failed ({error_line(error)})")
