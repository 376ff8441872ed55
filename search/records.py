"""One search trial as a typed record, shared by the objective, both backends, the run and the
reports (anchor: Optuna's ``FrozenTrial``: one immutable value per trial, whatever ran it).

A record keeps the predicted and the measured latency apart: ``pred_ms`` is the latency
predictor's figure, ``measured_ms`` an end-to-end measurement (near the budget during the
search, or the final pick's interleaved one), and :attr:`TrialRecord.latency_ms` is the
measured figure when there is one. ``feasible`` is the search's verdict when the trial ran
(the budget constraint on the latency it had then) and is never rewritten afterwards.
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["TrialRecord", "write_trials_csv", "read_trials_csv", "CSV_COLUMNS"]

_STATES = ("complete", "failed")


@dataclass(frozen=True)
class TrialRecord:
    """One trial of the search.

    Attributes:
        number: the trial's number in its study (0-based; -1 until a backend numbers it); a
            stratified stem search numbers its studies' trials as one search, the ImageNet stem's first.
        arch: the architecture's canonical string (:class:`search_space.Arch`).
        source: ``"sampled"``, or the preset name a seed trial was enqueued under.
        acc: inherited top-1 on the validation split, % (0 when not evaluated).
        pred_ms: predicted latency, ms (batch 1, the run's runtime and threads).
        measured_ms: measured median latency, ms, or None when never measured.
        evaluated: whether the supernet scored it (the predictor pre-filters far-over-budget ones).
        feasible: the search's verdict: within the budget (and above the floor) when it ran.
        params, mflops: parameter count and MFLOPs at the run's input size.
        constraint: Optuna's constraint value (<= 0 feasible): distance to the nearer bound, ms.
        state: ``"complete"`` or ``"failed"``; a failed trial keeps its ``error`` line.
        rejected: a suggestion the pre-filter rejected and the sampler drew again (rejection
            sampling, ``max_rejections``): told to the sampler, not counted among the trials.
    """

    number: int
    arch: str
    source: str = "sampled"
    acc: float = 0.0
    pred_ms: float | None = None
    measured_ms: float | None = None
    evaluated: bool = False
    feasible: bool = False
    params: int | None = None
    mflops: float | None = None
    constraint: float | None = None
    state: str = "complete"
    error: str | None = None
    rejected: bool = False

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise ValueError(f"state: unknown trial state {self.state!r}; available: {list(_STATES)}")

    @property
    def latency_ms(self) -> float | None:
        """The measured latency when there is one, else the predicted one (ms)."""
        return self.measured_ms if self.measured_ms is not None else self.pred_ms

    def replace(self, **changes: Any) -> "TrialRecord":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields plus the derived ``latency_ms`` (for JSON, CSV and Ray Tune's metrics)."""
        return {**dataclasses.asdict(self), "latency_ms": self.latency_ms}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialRecord":
        """Inverse of :meth:`to_dict`; derived keys (``latency_ms``) are ignored.

        Raises:
            ValueError: an unknown key or a missing ``number``/``arch``, named.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields - {"latency_ms"})
        if unknown:
            raise ValueError(f"trial record: unknown key(s) {unknown}; known: {sorted(fields)}")
        missing = [k for k in ("number", "arch") if d.get(k) is None]
        if missing:
            raise ValueError(f"trial record: missing {missing} in {dict(d)}")
        return cls(**{k: v for k, v in d.items() if k in fields})


CSV_COLUMNS = ["number", "source", "arch", "acc", "latency_ms", "pred_ms", "measured_ms", "feasible", "evaluated",
               "params", "mflops", "constraint", "state", "error", "rejected"]
_FLOATS = ("acc", "pred_ms", "measured_ms", "mflops", "constraint")
_OPTIONAL = ("constraint", "rejected")  # trials.csv files written before they were columns still load


def write_trials_csv(records: Iterable[TrialRecord], path: Path) -> None:
    """``trials.csv``: one row per trial, by number; ``latency_ms`` is :attr:`TrialRecord.latency_ms`."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(records, key=lambda r: r.number):
            w.writerow(r.to_dict())


def read_trials_csv(path: Path) -> list[TrialRecord]:
    """The records :func:`write_trials_csv` wrote, with numbers and booleans restored.

    Raises:
        ValueError: the file lacks one of :data:`CSV_COLUMNS` (names the file and the columns).
    """
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or []) and c not in _OPTIONAL]
        if missing:
            raise ValueError(f"{path}: not a trials.csv of this ShuffleNAS (missing columns {missing})")
        for row in reader:
            d: dict[str, Any] = {k: (None if v in ("", "None") else v) for k, v in row.items() if k != "latency_ms"}
            for k in _FLOATS:
                if d.get(k) is not None:
                    d[k] = float(d[k])
            for k in ("number", "params"):
                if d.get(k) is not None:
                    d[k] = int(d[k])
            for k in ("feasible", "evaluated", "rejected"):
                d[k] = d.get(k) == "True"
            out.append(TrialRecord.from_dict(d))
    return out
