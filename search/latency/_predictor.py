"""``LatencyPredictor``: lookup table + calibration, its cache and the exact fastest-arch search.

A per-block lookup table measured on the device (:mod:`._table`) plus a linear
calibration fitted on end-to-end measurements of random architectures
(features: table sums per unit type, block counts, FLOPs, memory access cost
and activation size: blocks timed alone run with hot caches, in a network they
do not; on this CPU the calibration with MAC cut the error of the table-sum fit
by half). The calibration may give each stem variant its own coefficients (the
small-input stem keeps every block's maps 4x larger in side, another cache
regime) or one shared set; cross-validation on the calibration measurements
decides (:meth:`LatencyPredictor.fit_calibration`).
Persisted as JSON keyed by the :class:`Conditions`, the task, the space and the
torch version; a cache whose key differs, or that cannot be read, is rebuilt
with a warning. Anchor: once-for-all's ``LatencyTable`` (one key builder, the
search sees only ``predict``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas_common import atomic_write, cache_root, progress_bar
from search_space import Arch, SearchSpace, Site, Stage, Task, count_flops, count_mac
from supernet import ShuffleNet

from ._conditions import Conditions
from ._measure import measure_many
from ._table import entries, measure_table, probe_arch, stem_key, table_specs

__all__ = ["LatencyPredictor", "PREDICTOR_FORMAT", "predictor_key", "cache_path"]

log = logging.getLogger(__name__)
PREDICTOR_FORMAT = "shufflenas.latency/6"
_STEM_FEATURES = ("lut_v1_ms", "lut_v2_ms", "lut_stem_head_ms", "n_v1", "n_v1_shuffle", "n_v2", "mflops", "mmac", "mact",
                  "const")
_STEMS = ("imagenet", "small")  # Arch.small_input False / True
_MODELS = ("per_stem", "shared")


def _fit_relative(X: np.ndarray, y: np.ndarray, small: np.ndarray, model: str) -> np.ndarray:
    """Coefficients minimising ``sum(((X @ c - y) / y) ** 2)``; ``X`` holds :meth:`LatencyPredictor.features`
    rows (two halves by stem variant). ``per_stem`` fits each half on its own rows; ``shared`` fits
    one set on the halves added together and copies it into both. Rows of one stem variant only:
    both are that fit, copied into both halves (the other variant is predicted by the same law,
    never by zeros)."""
    half = X.shape[1] // 2
    if model == "shared" or small.all() or not small.any():
        c, *_ = np.linalg.lstsq((X[:, :half] + X[:, half:]) / y[:, None], np.ones(len(y)), rcond=None)
        return np.r_[c, c]
    coef = np.zeros(X.shape[1])
    for h, rows in enumerate((~small, small)):
        cols = slice(h * half, (h + 1) * half)
        coef[cols], *_ = np.linalg.lstsq(X[rows, cols] / y[rows, None], np.ones(int(rows.sum())), rcond=None)
    return coef


def _cv_mape(X: np.ndarray, y: np.ndarray, small: np.ndarray, model: str, folds: int = 5, repeats: int = 3) -> float:
    """Cross-validated MAPE (%) of :func:`_fit_relative`'s ``model``: ``repeats`` seeded shuffles of
    ``folds`` folds, each architecture predicted by the fit on the other folds. The folds are
    stratified by stem variant (each variant's architectures dealt over the folds apart), so every
    training fold holds (folds - 1) / folds of each variant's architectures."""
    errs = []
    for rep in range(repeats):
        rng = np.random.default_rng(rep)
        dealt = [rng.permutation(np.flatnonzero(rows)) for rows in (~small, small)]
        for k in range(folds):
            test = np.concatenate([d[k::folds] for d in dealt])
            train = np.setdiff1d(np.arange(len(y)), test)
            c = _fit_relative(X[train], y[train], small[train], model)
            errs.append(np.abs(X[test] @ c - y[test]) / y[test])
    return float(np.mean(np.concatenate(errs)) * 100)


def predictor_key(space: SearchSpace, conditions: Conditions, task: Task) -> dict[str, Any]:
    """The cache key: the conditions' environment record (minus batch), the task, the space's hash
    and the file format. Two predictors with equal keys were measured alike."""
    env = conditions.env()
    env.pop("batch")
    env["device"] = conditions.torch_device.type  # cuda and cuda:0 are one device's table
    return {
        "format": PREDICTOR_FORMAT,
        **env,
        "space": hashlib.sha1(json.dumps(space.to_dict(), sort_keys=True).encode()).hexdigest()[:12],
        **task.to_dict(),
    }


def cache_path(key: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """``<cache>/latency/predictor-<device>-<runtime>-<hash of key>.json`` (cache root read now)."""
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    device = str(key["device"]).split(":")[0]
    return Path(cache_dir or cache_root("latency")) / f"predictor-{device}-{key['runtime']}-{h}.json"


def _check_task(conditions: Conditions, task: Task) -> None:
    if conditions.input_shape != task.input_shape(1):
        raise ValueError(f"conditions: the predictor is measured at input_shape {task.input_shape(1)} (batch 1, "
                         f"the task's {task.image_size}px), got {conditions.input_shape}")


@dataclass
class LatencyPredictor:
    """Lookup table + calibration for one :class:`Conditions` and :class:`~search_space.Task`.

    Build with :meth:`build` (loads the JSON cache when its key matches);
    :meth:`predict` returns milliseconds for any arch of the space.
    """

    key: dict[str, Any]
    lut: dict[str, float]
    coef: list[float]  # latency = coef . features(arch)
    fit: dict[str, Any] = field(default_factory=dict)

    STEM_FEATURES = _STEM_FEATURES
    STEMS = _STEMS
    FEATURES = tuple(f"{stem}:{name}" for stem in _STEMS for name in _STEM_FEATURES)

    @property
    def conditions(self) -> Conditions:
        """The conditions the table was measured under (batch 1)."""
        return Conditions.from_env({**self.key, "batch": 1})

    @property
    def task(self) -> Task:
        return Task(self.key["num_classes"], self.key["image_size"], self.key["small_input"])

    # ---------------------------------------------------------------- prediction
    def features(self, arch: Arch) -> list[float]:
        """The calibration's inputs: :attr:`STEM_FEATURES` in the half of :attr:`FEATURES` of the
        arch's stem variant, zeros in the other half (so a linear model can give each stem variant
        its own coefficients, or one shared set copied into both halves).

        Per stem variant: table sums per unit type (ms), block counts, MFLOPs, memory access
        cost (ShuffleNet V2's MAC, millions of elements) and ``mact``, the elements of every
        block's input map (millions). Blocks timed alone run with hot caches; in a network they
        do not, and on this CPU the in-network time grew with MAC and the activation size. The
        stem variant changes every block's map size (the small-input stem keeps 4x the side), so
        the factors can differ by stem; :meth:`fit_calibration` decides from the measurements
        whether they get their own coefficients.

        Returns:
            ``len(FEATURES)`` floats.

        Raises:
            ValueError: a block of ``arch`` is not in the table (another space or input size).
        """
        own = self._stem_features(arch)
        zeros = [0.0] * len(own)
        return own + zeros if not arch.small_input else zeros + own

    def _stem_features(self, arch: Arch) -> list[float]:
        size = self.key["image_size"]
        missing = []
        sums = {"v1": 0.0, "v2": 0.0, "other": 0.0}
        for key, spec, _ in entries(arch, size):
            if key not in self.lut:
                missing.append(key)
                continue
            kind = spec[1][:2] if spec[0] == "block" else "other"
            sums[kind] += self.lut[key]
        if missing:
            raise ValueError(
                f"arch: {len(missing)} block(s) not in the latency table (first: {missing[0]}); "
                f"the predictor was built for another space or input size; rebuild it"
            )
        n_v1 = sum(b.unit == "v1" for st in arch.stages for b in st.blocks)
        # V1 units with g > 1 run a channel shuffle (4 more ops); at batch 1 per-op overhead dominates
        n_shuffle = sum(b.unit == "v1" and b.groups > 1 for st in arch.stages for b in st.blocks)
        act = sum(s.in_channels * s.in_size ** 2 for s in arch.sites(size))
        return [sums["v1"], sums["v2"], sums["other"], float(n_v1), float(n_shuffle), float(sum(arch.depths) - n_v1),
                count_flops(arch, size) / 1e6, count_mac(arch, size) / 1e6, act / 1e6, 1.0]

    def raw(self, arch: Arch) -> float:
        """Uncalibrated per-block table sum (ms)."""
        f = self._stem_features(arch)
        return f[0] + f[1] + f[2]

    def fit_summary(self) -> str:
        """One line on the calibration: the model kept, its cross-validated and fit MAPE (%)."""
        f = self.fit
        cv = ", ".join(f"{m.replace('_', ' ')} {v:.2f}%" for m, v in f.get("cv_mape", {}).items())
        return (f"calibration {f.get('model', '?').replace('_', ' ')}{f' (CV MAPE {cv})' if cv else ''} on "
                f"{f.get('n', '?')} archs: MAPE raw {f.get('raw_mape', math.nan):.2f}% -> calibrated "
                f"{f.get('calibrated_mape', math.nan):.2f}%")

    def predict(self, arch: Arch) -> float:
        """Predicted end-to-end latency in milliseconds (the calibrated linear model).

        The linear fit can extrapolate below zero for networks smaller than any it was
        calibrated on (-0.08 ms for the fastest arch of the default space at 32x32 on a
        2-core EPYC). The raw table sum is no floor to clamp to: for tiny blocks it
        exceeded the measured network (0.96 vs 0.58 ms), so callers near the floor measure
        (``search.pipeline`` does) instead of trusting the prediction."""
        return float(np.dot(self.coef, self.features(arch)))

    def fastest(self, space: SearchSpace, small_input: bool | None = None) -> tuple[Arch, float]:
        """A fastest architecture of ``space`` and its predicted latency (ms); with ``small_input``
        (``True``/``False``), a fastest of that stem variant only (``ValueError`` when the table
        does not cover it).

        An exact DP over the table at minimum depths finds, per stem variant, stem width and
        last conv, the blocks with the smallest table sum; of those candidates the one with the
        smallest calibrated prediction is returned. The calibration also weighs block counts,
        FLOPs, memory access and activation size (and may give a table sum a negative weight), so this is
        the fastest by the table, not always the argmin of :meth:`predict` over the space;
        near the budget floor the pipeline measures it instead of trusting the prediction."""
        task = self.task
        size = task.image_size

        def cost(site: Site) -> float:
            return self.lut.get(site.key, math.inf)

        best: Arch | None = None
        best_ms = math.inf
        variants = task.stem_variants(space.small_input)
        if small_input is not None:
            if bool(small_input) not in variants:
                raise ValueError(f"small_input: this predictor's table covers small_input={list(variants)}, not "
                                 f"{bool(small_input)}; build it for that stem variant (search.latency check)")
            variants = (bool(small_input),)
        for small, stem in itertools.product(variants, space.stem_channels):
            sizes = probe_arch(space, task, small).spatial_sizes(size)
            states = {stem: (self.lut.get(stem_key(stem, small, size), math.inf), [])}
            for i, ss in enumerate(space.stages):
                nxt = {}
                for cout in ss.channels:
                    at = Site(i, 1, cout, cout, in_size=sizes[i + 1])
                    rest = min(space.valid_blocks(at), key=lambda b: cost(at.with_block(b)))
                    rest_ms = (ss.min_depth - 1) * cost(at.with_block(rest)) if ss.min_depth > 1 else 0.0
                    for cin, (ms, stages) in states.items():
                        at0 = Site(i, 0, cin, cout, in_size=sizes[i])
                        first = min(space.valid_blocks(at0), key=lambda b: cost(at0.with_block(b)))
                        total = ms + cost(at0.with_block(first)) + rest_ms
                        if total < nxt.get(cout, (math.inf,))[0]:
                            nxt[cout] = (total, stages + [Stage(cout, (first,) + (rest,) * (ss.min_depth - 1))])
                states = nxt
            for _, stages in states.values():
                for last in space.last_conv:
                    arch = Arch(stem=stem, stages=tuple(stages), last_conv=last, num_classes=task.num_classes,
                                small_input=small)
                    pred = self.predict(arch)
                    if pred < best_ms:
                        best, best_ms = arch, pred
        assert best is not None
        return best, best_ms

    # ---------------------------------------------------------------- persistence
    def save(self, path: Path) -> None:
        text = json.dumps({"key": self.key, "lut": self.lut, "coef": self.coef, "fit": self.fit}, indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: Path, expect_key: dict[str, Any] | None = None) -> "LatencyPredictor":
        """Load a cache file.

        Raises:
            ValueError: unreadable, bad coefficients, or built for another key (names the fields that differ).
        """
        try:
            d = json.loads(Path(path).read_text())
            p = cls(key=d["key"], lut={str(k): float(v) for k, v in d["lut"].items()},
                    coef=[float(c) for c in d["coef"]], fit=dict(d.get("fit", {})))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"latency cache {path}: unreadable ({type(e).__name__}: {e})") from None
        if len(p.coef) != len(cls.FEATURES) or not all(math.isfinite(c) for c in p.coef):
            raise ValueError(f"latency cache {path}: coef: expected {len(cls.FEATURES)} finite numbers (FEATURES), "
                             f"got {len(p.coef)}: {p.coef}; rebuild it")
        if expect_key is not None and p.key != expect_key:
            diff = sorted(k for k in set(p.key) | set(expect_key) if p.key.get(k) != expect_key.get(k))
            raise ValueError(f"latency cache {path}: stale, built for another {', '.join(diff)}")
        return p

    # ---------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        space: SearchSpace,
        conditions: Conditions,
        task: Task,
        *,
        calib_archs: int = 100,
        seed: int = 0,
        cache_dir: Path | str | None = None,
        rebuild: bool = False,
        progress: bool = True,
    ) -> "LatencyPredictor":
        """Load the predictor from its cache, or measure the table and fit the calibration.

        Args:
            space: the search space whose blocks are tabulated.
            conditions: the measurement conditions (batch 1, the task's input side).
            task: classes, input side and stem variants (``small_input=None``: every variant the
                space declares; the table holds the blocks at each variant's feature-map sizes and
                the calibration draws from all of them).
            calib_archs: random architectures measured end to end for the calibration, split evenly
                between the task's stem variants (each variant may get its own coefficients), each
                timed in interleaved rounds of 10 runs (:func:`measure_many`): 3 on a CPU, 6 on a
                GPU. Six everywhere until session 21: on a 2-core Xeon at 1 thread, scored on 50
                held-out archs against a 10-round reference session before and one after, the fit
                on 3 rounds put 96 / 78% within +-10% and the fit on 6 rounds 96 / 64%, in 78 s
                instead of 136 s for 100 archs (the protocols ran in a fixed order between the two
                references, so drift is not separated from the protocol;
                ``benchmarks/calibration_cost.py``, ``benchmarks/results/calibration_cost_s21.json``).
            rebuild: ignore an existing cache.

        Raises:
            ValueError: conditions that do not match the task; fewer calibration archs than
                ``len(STEM_FEATURES)`` per stem variant (checked before anything is measured); a table
                that stays inconsistent after re-measurement (a busy machine).
        """
        _check_task(conditions, task)
        stems = task.stem_variants(space.small_input)
        if calib_archs < len(cls.STEM_FEATURES) * len(stems):
            raise ValueError(f"calib_archs: the calibration fits {len(cls.STEM_FEATURES)} coefficients per stem variant, "
                             f"so {len(stems)} variant(s) need at least {len(cls.STEM_FEATURES) * len(stems)} "
                             f"architectures; got {calib_archs}")
        key = predictor_key(space, conditions, task)
        path = cache_path(key, Path(cache_dir) if cache_dir else None)
        if path.exists() and not rebuild:
            try:
                p = cls.load(path, key)
                log.info("latency predictor loaded from %s", path)
                return p
            except ValueError as e:
                warnings.warn(f"{e}; rebuilding it", RuntimeWarning, stacklevel=2)
        t0 = time.perf_counter()
        lut, remeasured = measure_table(table_specs(space, task), conditions, progress)
        table_s = time.perf_counter() - t0
        p = cls(key=key, lut=lut, coef=([1.0] * 3 + [0.0] * (len(cls.STEM_FEATURES) - 3)) * len(cls.STEMS))
        rng = np.random.default_rng(seed)
        archs = [space.sample(rng, num_classes=task.num_classes, small_input=stems[i % len(stems)])
                 for i in range(calib_archs)]
        bar = progress_bar(1, f"calibration ({calib_archs} archs, end to end)", "entry", progress)
        rounds = 3 if conditions.torch_device.type == "cpu" else 6  # 3: measured on a CPU only (docstring)
        meas = measure_many([ShuffleNet(a) for a in archs], conditions, rounds=rounds, per_round=10, seed=seed)
        if bar is not None:
            bar.update(1)
            bar.close()
        p.fit_calibration(archs, [m.median_ms for m in meas])
        p.fit.update(table_entries=len(lut), table_seconds=table_s, total_seconds=time.perf_counter() - t0,
                     remeasured=remeasured)
        p.save(path)
        log.info("latency predictor built in %.0f s (%d entries), saved to %s", time.perf_counter() - t0, len(lut), path)
        return p

    def fit_calibration(self, archs: Sequence[Arch], measured_ms: Sequence[float]) -> None:
        """Fit ``measured = coef . features`` (see :meth:`features`) by least squares on the relative error.

        The fit minimises ``sum(((coef . f_i - y_i) / y_i) ** 2)``, the squared error relative to each
        measurement (weighted least squares with weights ``1 / y_i**2``), because the predictor is
        judged by its relative error (the share within +-10%, MAPE). A plain least-squares fit in ms
        lets the slowest networks dominate: in one refit experiment on a 2-core EPYC at 2 threads
        (100 calibration archs and 50 fresh ones, each measured in two sessions; not a committed
        benchmark) the plain fit left MAPE 4.7-5.1% on the fresh ones and this one 4.3-4.6%.
        Least squares on the relative error biases predictions low by the order of the
        measurements' relative variance (under 1% at 7% noise). The architectures and
        measurements fitted are kept in ``fit["calibration"]``.

        Two models are fitted when the architectures cover both stem variants: ``per_stem`` (each
        variant's coefficients fitted on its own architectures, :meth:`features`) and ``shared``
        (one set for both, copied into both halves). The one with the lower cross-validated MAPE on
        these measurements is kept (5 folds x 3 shuffles, seeded: :func:`_cv_mape`), and both
        figures are recorded in ``fit["cv_mape"]``, the choice in ``fit["model"]``. Where the
        measurement is steady the per-stem model predicts better; where it is noisy its twice as
        many coefficients fit the noise. Measured on a 2-core EPYC (two sessions, 100 calibration
        and 50 fresh architectures each; the CV choice on the calibration data alone picked the
        model that did better on the fresh ones in all four): at 1 thread, where a repeated
        measurement agreed within +-10% for 98% of the networks, per stem 92.8 / 95.2% within
        +-10% in CV against 90.4 / 92.8% shared; at 2 threads (68-80% agreement) shared 83.0 /
        76.4% against 79.2 / 71.8%. With few architectures per stem the per-stem fit has few
        more rows than coefficients in each fold and CV rightly prefers the shared one. With
        architectures of one stem variant only, that fit serves both variants (``shared``).

        Raises:
            ValueError: no architectures, or fewer of a stem variant than :attr:`STEM_FEATURES`; a count of
                measurements that differs from the architectures'; a measurement that is not a
                positive number.
        """
        y = np.asarray(measured_ms, dtype=float).reshape(-1)
        if len(y) != len(archs):
            raise ValueError(f"measured_ms: {len(y)} measurements for {len(archs)} architectures; give one per arch")
        if not len(archs):
            raise ValueError("archs: no architectures to calibrate on")
        bad = np.flatnonzero(~(np.isfinite(y) & (y > 0)))
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"measured_ms[{i}]: every measurement must be a positive number of ms, got {y[i]!r} "
                             f"(arch {archs[i]})")
        need = len(self.STEM_FEATURES)
        small = np.array([bool(a.small_input) for a in archs], dtype=bool)
        for stem, rows in zip(self.STEMS, (~small, small)):
            if 0 < rows.sum() < need:
                raise ValueError(f"archs: the calibration needs at least {need} architectures of each stem variant "
                                 f"it covers, got {int(rows.sum())} with the {stem} stem")
        X = np.array([self.features(a) for a in archs])
        cv = {model: _cv_mape(X, y, small, model) for model in _MODELS} if small.any() and (~small).any() else {}
        model = min(cv, key=cv.get) if cv else "shared"  # one stem variant: both models are the same fit
        coef = _fit_relative(X, y, small, model)
        self.coef = [float(c) for c in coef]
        half = len(self.STEM_FEATURES)
        pred, raw = X @ coef, (X[:, :3] + X[:, half:half + 3]).sum(1)
        self.fit = {
            "n": len(archs),
            "model": model,
            "cv_mape": cv,
            "raw_mape": float(np.mean(np.abs(raw - y) / y) * 100),
            "calibrated_mape": float(np.mean(np.abs(pred - y) / y) * 100),
            "coef": dict(zip(self.FEATURES, self.coef)),
            "calibration": {"archs": [str(a) for a in archs], "measured_ms": [float(v) for v in y]},
        }
