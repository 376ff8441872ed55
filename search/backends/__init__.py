"""Search drivers: one objective (``search.evaluate.Scorer``), several backends.

Every backend is a module with a ``run`` function of the :class:`Backend` protocol (anchor:
NNI's ``Strategy``, which explores a space with an evaluator it is handed): it receives the
objective (an architecture -> its :class:`~search.records.TrialRecord`) and returns every
trial's record, failed ones and rejected suggestions (rejection sampling) included. :func:`get_backend` resolves a backend by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol, Sequence

from search.records import TrialRecord
from search_space import Arch, SearchSpace, Task

__all__ = ["Backend", "BACKENDS", "get_backend"]

BACKENDS = ("optuna", "ray")


class Backend(Protocol):
    def __call__(self, objective: Callable[[Arch], TrialRecord], space: SearchSpace, *, run_dir: Path,
                 n_trials: int, seed: int, task: Task, seeds: Sequence[tuple[str, Arch]] = (),
                 on_trial: Callable[[TrialRecord], None] | None = None, resume: bool = False,
                 pareto: bool = False, reject: Callable[[Arch], TrialRecord | None] | None = None,
                 max_rejections: int = 0, **options) -> list[TrialRecord]:
        """Search ``space`` until ``n_trials`` trials finished (continuing ``run_dir``'s study when
        ``resume``) for networks of ``task`` (classes; its stem variant, ``None`` = searched); ``seeds`` (name, arch) are evaluated first; ``on_trial`` sees each record (for
        progress: Ray numbers them in the order Tune returns them, the returned records by study trial);
        ``pareto``: latency is a second objective (else top-1 alone; the budget is a constraint either way).
        Rejection sampling: a suggestion for which ``reject`` returns a record (the objective's
        pre-filter, :class:`search.evaluate.BudgetFilter`: predicted far over the budget, not scored)
        is told to the sampler as that infeasible trial, marked ``rejected`` and drawn again, up to
        ``max_rejections`` times in a row; rejected trials do not count towards ``n_trials`` and
        ``on_trial`` does not see them (0: every suggestion is a trial).
        Backend-specific ``options``: Ray's ``concurrency``, ``address``, ``verbose``, ``max_failures``."""


def get_backend(name: str) -> Backend:
    """The ``run`` function of backend ``name``.

    Raises:
        ValueError: an unknown name (lists the available ones).
    """
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown backend {name!r}; available: {list(BACKENDS)}")
    return importlib.import_module(f"search.backends.{name}").run
