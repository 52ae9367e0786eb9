"""The model store: fitted runtime [s] and energy [J] models, their JSON files, their predictions.

:mod:`energyopt.fit` makes models from measurements and returns :class:`FittedModels`; every
other module only loads, saves and predicts with them, through this module, so planning never
imports the fitting code (nor scipy or scikit-learn).

One JSON file per (LLM, device), ``models/<llm>__<device>.json``, holds both targets
(``energy_j`` [J], ``runtime_s`` [s]): form, feature names, coefficients, intercept, fit quality,
the token ranges measured, and the measurement and provenance records (see README, "Data
formats"). Each target is a linear combination of the features in :data:`FEATURES` of the input
token count τin, the output token count τout and the batch size b (a query's energy [J] is its
share of its batch's energy; its runtime [s] is its latency while it shares the device with b − 1
others). A model measured at batch size 1 only predicts batch size 1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, excerpt, key_text, unknown_key_hint
from .io import json_value_text, read_json_object
from .schema import TARGET_UNITS, TARGETS
from .writers import write_atomic

__all__ = [
    "FORMAT_VERSION",
    "FEATURES",
    "PREFILL_KNEES_TOKENS",
    "FitMetrics",
    "FittedModel",
    "FittedModels",
]

#: version of the model file layout; a file of another version is refused
FORMAT_VERSION = 1

#: feature name -> function of the (tin, tout) arrays (float64) and b, an array like them or one
#: batch size for every row (then a feature of b alone is that one number); a stored model names its features
FEATURES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray | float], np.ndarray | float]] = {
    "1": lambda x, y, b: np.ones_like(x),
    "tin": lambda x, y, b: x,
    "tout": lambda x, y, b: y,
    "tin*tout": lambda x, y, b: x * y,
    "tout^2": lambda x, y, b: y * y,
    "tin^2": lambda x, y, b: x * x,
    # KV cache off (each output token re-reads the whole context): cost grows a degree faster
    "tin*tout^2": lambda x, y, b: x * y * y,
    "tout^3": lambda x, y, b: y * y * y,
    # batches: what a batch shares (the weights read once per step) falls as 1/b per query; what
    # each query adds to a step (its KV cache) makes every query's step slower by a factor of b
    "1/b": lambda x, y, b: 1.0 / b,
    "tin/b": lambda x, y, b: x / b,
    "tout/b": lambda x, y, b: y / b,
    "tin*tout/b": lambda x, y, b: x * y / b,
    "b": lambda x, y, b: b * np.ones_like(x),
    "b*tin": lambda x, y, b: b * x,
    "b*tout": lambda x, y, b: b * y,
    "b*tin*tout": lambda x, y, b: b * x * y,
    "b*tout^2": lambda x, y, b: b * y * y,
    "b*tin^2": lambda x, y, b: b * x * x,  # a batch's prefill attention, quadratic in each prompt
    # decode attention over the batch's context that grows slower than b: on a small model the
    # attention kernel is latency-bound at moderate batches, so each doubling of b adds about as much
    "log(b)*tin*tout": lambda x, y, b: np.log(b) * x * y,
    "log(b)*tout^2": lambda x, y, b: np.log(b) * y * y,
}


def _prefill_knee(knee_tokens: int, per_query: bool) -> Callable[[np.ndarray, np.ndarray, np.ndarray | float],
                                                                np.ndarray | float]:
    if per_query:
        return lambda x, y, b: np.maximum(b * x - knee_tokens, 0.0) / b
    return lambda x, y, b: np.maximum(b * x - knee_tokens, 0.0)


#: knees [tokens] of the batch's prefill: below ``b·τin`` = knee a prefill costs about what its
#: launches and weight reads cost (in the intercept); beyond it, it is compute-bound and grows with
#: every token of the batch. The fitter chooses the knee per (LLM, device) by cross-validation.
PREFILL_KNEES_TOKENS = (4096, 16384, 65536)
for _k in PREFILL_KNEES_TOKENS:
    FEATURES[f"relu(b*tin-{_k})"] = _prefill_knee(_k, per_query=False)  # the batch's latency
    FEATURES[f"relu(b*tin-{_k})/b"] = _prefill_knee(_k, per_query=True)  # a query's share of the energy
del _k


def _query_prefill_knee(knee_tokens: int, per_batch: bool) -> Callable[[np.ndarray, np.ndarray, np.ndarray | float],
                                                                      np.ndarray | float]:
    if per_batch:
        return lambda x, y, b: b * np.maximum(x - knee_tokens, 0.0)
    return lambda x, y, b: np.maximum(x - knee_tokens, 0.0)


#: knees [tokens] of one query's own prefill, in an engine that prefills each query on its own
#: (``decode_attention=ragged``): below it the prefill's time is its kernel launches from the host,
#: beyond it the device's compute, which grows with every prompt token (max(host, device) bent into
#: a hinge). Chosen per (LLM, device) by cross-validation, like the batch knees.
ENGINE_KNEES_TOKENS = (512, 1024, 2048)
for _k in ENGINE_KNEES_TOKENS:
    FEATURES[f"relu(tin-{_k})"] = _query_prefill_knee(_k, per_batch=False)  # a query's energy
    FEATURES[f"b*relu(tin-{_k})"] = _query_prefill_knee(_k, per_batch=True)  # the batch's latency
del _k

#: features that are a feature of the tokens alone times a factor of the batch size:
#: name -> (that token feature, the factor as a function of b). :meth:`FittedModels.predict_matrix`
#: computes the token feature once for every batch size; a test holds each entry to FEATURES.
SEPARABLE_FEATURES: dict[str, tuple[str, Callable[[float], float]]] = {
    **{f: (f, lambda b: 1.0) for f in ("1", "tin", "tout", "tin*tout", "tout^2", "tin^2", "tin*tout^2", "tout^3")},
    "1/b": ("1", lambda b: 1.0 / b),
    "tin/b": ("tin", lambda b: 1.0 / b),
    "tout/b": ("tout", lambda b: 1.0 / b),
    "tin*tout/b": ("tin*tout", lambda b: 1.0 / b),
    "b": ("1", lambda b: b),
    "b*tin": ("tin", lambda b: b),
    "b*tout": ("tout", lambda b: b),
    "b*tin*tout": ("tin*tout", lambda b: b),
    "b*tout^2": ("tout^2", lambda b: b),
    "b*tin^2": ("tin^2", lambda b: b),
    "log(b)*tin*tout": ("tin*tout", lambda b: float(np.log(b))),
    "log(b)*tout^2": ("tout^2", lambda b: float(np.log(b))),
    **{f"relu(tin-{k})": (f"relu(tin-{k})", lambda b: 1.0) for k in ENGINE_KNEES_TOKENS},
    **{f"b*relu(tin-{k})": (f"relu(tin-{k})", lambda b: b) for k in ENGINE_KNEES_TOKENS},
}

# token range of a published model whose source states none
_UNSTATED = 10**12


@dataclass(frozen=True)
class FitMetrics:
    """Quality of one fit. ``cv_*`` are computed on out-of-fold predictions."""

    r2: float
    cv_r2: float
    cv_median_rel_error: float
    cv_p95_rel_error: float
    n_samples: int
    n_points: int
    # error on held-back rows (split=holdout), measured off the fitting design; NaN when none
    holdout_median_rel_error: float = float("nan")
    holdout_max_rel_error: float = float("nan")
    n_holdout: int = 0
    # median over repeated points of (max - min) / mean of the repeats; NaN when no point was repeated
    repeat_spread: float = float("nan")


@dataclass
class FittedModel:
    """One fitted target (``energy_j`` or ``runtime_s``) of one (LLM, device)."""

    llm: str
    device: str
    target: str
    form: str
    features: tuple[str, ...]
    coefficients: np.ndarray
    metrics: FitMetrics
    input_tokens_range: tuple[int, int]
    output_tokens_range: tuple[int, int]
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)
    origin: str = "fitted"  # "fitted" here (coefficients >= 0) or "published" (taken as printed)
    batch_size_range: tuple[int, int] = (1, 1)  # the batch sizes measured
    # per batch size: cross-validated R² and median relative error, or for a batch size held back,
    # the error predicting it from the others ("held_back": True)
    by_batch_size: dict[int, dict[str, Any]] = field(default_factory=dict)
    outliers: list[dict[str, Any]] = field(default_factory=list)  # points reported and not fitted

    def predict_raw(self, input_tokens: Any, output_tokens: Any, batch_size: Any = 1) -> np.ndarray:
        """The model's value as is; only a published model's can be negative."""
        x = np.atleast_1d(np.asarray(input_tokens, dtype=float))
        y = np.atleast_1d(np.asarray(output_tokens, dtype=float))
        b = np.atleast_1d(np.asarray(batch_size, dtype=float))
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape, b.shape))
        for f, c in zip(self.features, self.coefficients):  # term by term: no design matrix for a million queries
            out += c * FEATURES[f](x, y, b)
        return out

    def predict(self, input_tokens: Any, output_tokens: Any, batch_size: Any = 1) -> np.ndarray:
        """Predicted target for arrays of token counts (and batch sizes), never below 0."""
        return np.maximum(self.predict_raw(input_tokens, output_tokens, batch_size), 0.0)

    def extrapolated(self, input_tokens: Any, output_tokens: Any, batch_size: Any = None) -> np.ndarray:
        """True where a prediction lies outside what was measured: an input or output token count
        outside :attr:`input_tokens_range` or :attr:`output_tokens_range`, or (where ``batch_size``
        is given) a batch size outside :attr:`batch_size_range`. A batch size between two measured
        ones is within the range (interpolated, not extrapolated)."""
        x = np.atleast_1d(np.asarray(input_tokens))
        y = np.atleast_1d(np.asarray(output_tokens))
        (x0, x1), (y0, y1) = self.input_tokens_range, self.output_tokens_range
        out = (x < x0) | (x > x1) | (y < y0) | (y > y1)
        if batch_size is not None:
            b = np.atleast_1d(np.asarray(batch_size))
            lo, hi = self.batch_size_range
            out = out | (b < lo) | (b > hi)
        return out

    def covers_batch_size(self, batch_size: int) -> bool:
        """Whether ``batch_size`` lies within the batch sizes measured (a model measured at batch
        size 1 only says nothing about batches)."""
        lo, hi = self.batch_size_range
        return lo <= batch_size <= hi

    def to_dict(self) -> dict[str, Any]:
        coef = {f: float(c) for f, c in zip(self.features, self.coefficients)}
        return {
            "origin": self.origin,
            "form": self.form,
            "features": list(self.features),
            "coefficients": {f: v for f, v in coef.items() if f != "1"},
            "intercept": coef.get("1", 0.0),
            "unit": TARGET_UNITS[self.target],
            "r2": self.metrics.r2,
            "cv_r2": self.metrics.cv_r2,
            "cv_median_rel_error": self.metrics.cv_median_rel_error,
            "cv_p95_rel_error": self.metrics.cv_p95_rel_error,
            "n_samples": self.metrics.n_samples,
            "n_points": self.metrics.n_points,
            "holdout_median_rel_error": _none_if_nan(self.metrics.holdout_median_rel_error),
            "holdout_max_rel_error": _none_if_nan(self.metrics.holdout_max_rel_error),
            "n_holdout": self.metrics.n_holdout,
            "repeat_spread": _none_if_nan(self.metrics.repeat_spread),
            "input_tokens_range": None if self.input_tokens_range[1] == _UNSTATED else list(self.input_tokens_range),
            "output_tokens_range": None if self.output_tokens_range[1] == _UNSTATED else list(self.output_tokens_range),
            "batch_size_range": list(self.batch_size_range),
            "by_batch_size": {str(b): {k: _none_if_nan(v) if isinstance(v, float) else v for k, v in m.items()}
                              for b, m in sorted(self.by_batch_size.items())},
            "outliers": self.outliers,
            "candidates": self.candidates,
        }

    @classmethod
    def from_dict(cls, llm: str, device: str, target: str, d: Mapping[str, Any], where: str) -> FittedModel:
        """One target of a model file, validated strictly: every key known (else a "did you mean"),
        every value of its type; ``where`` (the file) and the key path name a problem."""
        doc = _Obj(d, target, where)
        doc.only(TARGET_KEYS)
        origin = doc.text("origin", default="fitted")
        if origin not in ("fitted", "published"):
            raise doc.error("origin", f"must be 'fitted' or 'published', got {excerpt(origin)}")
        unit = doc.text("unit", default=TARGET_UNITS[target])
        if unit != TARGET_UNITS[target]:
            raise doc.error("unit", f"must be {TARGET_UNITS[target]!r} (what {target} is in), got {excerpt(unit)}")
        features, arr = _features_and_coefficients(doc, origin)
        published = origin == "published"  # its figures are what its source printed, or null
        metrics = FitMetrics(
            r2=doc.number("r2", null=published), cv_r2=doc.number("cv_r2", null=published),
            cv_median_rel_error=doc.number("cv_median_rel_error", null=published),
            cv_p95_rel_error=doc.number("cv_p95_rel_error", null=published),
            n_samples=doc.whole("n_samples"), n_points=doc.whole("n_points"),
            holdout_median_rel_error=doc.number("holdout_median_rel_error", null=True, default=math.nan),
            holdout_max_rel_error=doc.number("holdout_max_rel_error", null=True, default=math.nan),
            n_holdout=doc.whole("n_holdout", null=True, default=0),
            repeat_spread=doc.number("repeat_spread", null=True, default=math.nan),
        )
        if published and d.get("input_tokens_range") is None:
            xr, yr = (0, _UNSTATED), (0, _UNSTATED)  # the source states no range: never flagged
        else:
            xr, yr = doc.span("input_tokens_range", low=0), doc.span("output_tokens_range", low=0)
        return cls(
            llm=llm, device=device, target=target, form=doc.text("form"), features=features, coefficients=arr,
            metrics=metrics, input_tokens_range=xr, output_tokens_range=yr,
            candidates=_candidates(doc), origin=origin,
            batch_size_range=doc.span("batch_size_range", low=1, default=(1, 1), what="batch size"),
            by_batch_size=_by_batch_size(doc), outliers=_outliers(doc),
        )


#: the keys of one target in a model file (what :meth:`FittedModel.to_dict` writes)
TARGET_KEYS = ("origin", "form", "features", "coefficients", "intercept", "unit", "r2", "cv_r2", "cv_median_rel_error",
               "cv_p95_rel_error", "n_samples", "n_points", "holdout_median_rel_error", "holdout_max_rel_error",
               "n_holdout", "repeat_spread", "input_tokens_range", "output_tokens_range", "batch_size_range",
               "by_batch_size", "outliers", "candidates")
#: the keys of a model file's top level (what :meth:`FittedModels.save` writes)
FILE_KEYS = ("format_version", "llm", "device", *TARGETS, "measurement", "provenance")
#: per batch size: cross-validated figures, or for a batch size held back its error predicted from the others
BY_BATCH_SIZE_KEYS = ("cv_r2", "cv_median_rel_error", "n_points", "held_back", "median_rel_error", "max_rel_error")
#: a point reported as an outlier and not fitted
OUTLIER_KEYS = ("input_tokens", "output_tokens", "batch_size", "measured")
#: each candidate form's cross-validated figures
CANDIDATE_KEYS = ("cv_r2", "cv_median_rel_error", "cv_p95_rel_error", "cv_score")
#: text provenance of the measurements, as the characterization CSV names it
MEASUREMENT_TEXT_KEYS = ("gpu_name", "cpu_name", "driver", "torch_version", "transformers_version", "dtype",
                         "energy_source", "measured_at", "host")
MEASUREMENT_KEYS = ("idle_power_w", "num_devices", *MEASUREMENT_TEXT_KEYS)
#: how a model was made: from fitting (energyopt fit) or from a publication (data/published/)
PROVENANCE_KEYS = ("training_data", "sources", "fitted_at", "folds", "loss", "min_r2", "batch_size", "batch_sizes",
                   "held_back_batch_sizes", "versions", "source", "file")

_ABSENT = object()


class _Obj:
    """A JSON object of a model file, at key path ``path`` (``energy_j``,
    ``energy_j.by_batch_size.8``) of the file ``where``, read strictly: each accessor checks the
    value's type and raises a one-line DataError naming the file and the key."""

    def __init__(self, value: Any, path: str, where: str):
        if not isinstance(value, dict):
            raise DataError(f"{where}: key {path} must be a JSON object, got {json_value_text(value)}")
        self.d, self.path, self.where = value, path, where

    def name(self, key: str) -> str:
        """The key path of ``key`` in this object, as messages name it."""
        return f"{self.path}.{key_text(key)}" if self.path else key_text(key)

    def error(self, key: str, message: str) -> DataError:
        return DataError(f"{self.where}: key {self.name(key)} {message}")

    def only(self, known: tuple[str, ...]) -> None:
        """Every key is one of ``known``: a key the reader does not know is a typo, not a comment."""
        for key in self.d:
            if key not in known:
                raise DataError(f"{self.where}: unknown key {self.name(key)}{unknown_key_hint(key, known)}")

    def get(self, key: str, default: Any = _ABSENT) -> Any:
        if key in self.d:
            return self.d[key]
        if default is _ABSENT:
            raise self.error(key, "is missing")
        return default

    def text(self, key: str, default: Any = _ABSENT) -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be text, got {json_value_text(value)}")
        return value

    def number(self, key: str, *, null: bool = False, default: Any = _ABSENT) -> float:
        """A number (JSON's true is not 1); null (as NaN) where ``null``."""
        value = self.get(key, default)
        if value is None and null:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number{' or null' if null else ''}, got {json_value_text(value)}")
        try:
            return float(value)
        except OverflowError:
            raise self.error(key, f"must be a number a float can hold, got {json_value_text(value)}") from None

    def whole(self, key: str, *, null: bool = False, default: Any = _ABSENT) -> int:
        """A whole number >= 0; null (as 0) where ``null``."""
        value = self.get(key, default)
        if value is None and null:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"must be a whole number >= 0, got {json_value_text(value)}")
        return value

    def span(self, key: str, *, low: int, default: Any = _ABSENT, what: str = "token count") -> tuple[int, int]:
        """``[smallest, largest]``, whole numbers with ``low <= smallest <= largest``."""
        value = self.get(key, default)
        if isinstance(value, tuple):
            return value
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in value) and low <= value[0] <= value[1])
        if not ok:
            raise self.error(key, f"must be [smallest, largest] {what} >= {low}, got {json_value_text(value)}")
        return int(value[0]), int(value[1])

    def child(self, key: str) -> _Obj:
        return _Obj(self.get(key), self.name(key), self.where)


#: the largest coefficient (in size) a model file may hold, and the largest prediction [J or s] of
#: one query a plan may rest on: beyond them the numbers overflow or swamp the solvers' tolerances
MAX_COEFFICIENT = 1e9
MAX_PREDICTION = 1e18


def _features_and_coefficients(doc: _Obj, origin: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The features (each known, each once) and their coefficients, the intercept for ``1``; a
    coefficient of a feature the model does not list is an error (it would be ignored)."""
    raw = doc.get("features")
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        raise doc.error("features", f"must be a list of feature names, got {json_value_text(raw)}")
    for f in raw:
        if f not in FEATURES:
            raise doc.error("features", f"has an unknown feature {excerpt(f)}{unknown_key_hint(f, tuple(FEATURES))}")
    if len(set(raw)) != len(raw):
        raise doc.error("features", f"lists a feature twice: {excerpt(raw)}")
    features = tuple(raw)
    coefs = doc.child("coefficients")
    coefs.only(tuple(f for f in features if f != "1"))
    intercept = doc.number("intercept")
    arr = np.array([intercept if f == "1" else coefs.number(f) for f in features], dtype=float)
    if not np.all(np.isfinite(arr)):
        raise doc.error("coefficients", "must be finite numbers")
    big = np.flatnonzero(np.abs(arr) > MAX_COEFFICIENT)
    if big.size:  # (the largest shipped or published one is about 400)
        f = features[int(big[0])]
        raise doc.error("intercept" if f == "1" else f"coefficients.{f}",
                        f"is {arr[big[0]]:g}; a coefficient above {MAX_COEFFICIENT:g} in size makes no prediction of a "
                        "query's joules or seconds")
    if origin == "fitted" and np.any(arr < 0):
        raise doc.error("coefficients", "must be >= 0 for a fitted model")
    return features, arr


def _figures(obj: _Obj, known: tuple[str, ...]) -> dict[str, Any]:
    """An object of figures: known keys, each a number, true/false or null (as NaN)."""
    obj.only(known)
    out: dict[str, Any] = {}
    for key, value in obj.d.items():
        if isinstance(value, bool):
            out[key] = value
        else:
            out[key] = obj.number(key, null=True)
            if isinstance(value, int) and out[key].is_integer():
                out[key] = value  # counts stay whole numbers
    return out


def _candidates(doc: _Obj) -> dict[str, dict[str, float]]:
    if "candidates" not in doc.d:
        return {}
    cands = doc.child("candidates")
    return {name: _figures(cands.child(name), CANDIDATE_KEYS) for name in cands.d}


def _by_batch_size(doc: _Obj) -> dict[int, dict[str, Any]]:
    if "by_batch_size" not in doc.d:
        return {}
    per_size = doc.child("by_batch_size")
    out: dict[int, dict[str, Any]] = {}
    for key in per_size.d:
        if not (key.isdigit() and key.isascii() and int(key) >= 1):
            raise per_size.error(key, "must be a batch size (a whole number >= 1) with an object of figures")
        out[int(key)] = _figures(per_size.child(key), BY_BATCH_SIZE_KEYS)
    return out


def _outliers(doc: _Obj) -> list[dict[str, Any]]:
    raw = doc.get("outliers", [])
    if not isinstance(raw, list):
        raise doc.error("outliers", f"must be a list of points, got {json_value_text(raw)}")
    return [_figures(_Obj(point, f"{doc.path}.outliers[{i}]", doc.where), OUTLIER_KEYS) for i, point in enumerate(raw)]


def _read_model_file(f: Path) -> tuple[str, str, dict[str, FittedModel], dict[str, Any]]:
    """One model file: its LLM, device, both targets' models, and its measurement and provenance
    records. Every key at every level must be one :meth:`FittedModels.save` writes."""
    doc = _Obj(read_json_object(f), "", str(f))  # the top level: keys named alone
    doc.only(FILE_KEYS)
    version = doc.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:  # JSON's true equals 1 in Python
        raise DataError(f"{f}: key format_version is {json_value_text(version)}; expected {FORMAT_VERSION}")
    llm, dev = doc.text("llm"), doc.text("device")
    if not llm.strip() or not dev.strip():
        raise DataError(f"{f}: keys llm and device must name an LLM and a device, got {excerpt(llm)} and {excerpt(dev)}")
    fitted = {}
    for t in TARGETS:
        value = doc.get(t)
        if not isinstance(value, dict):
            raise DataError(f"{f}: key {t} must be an object, got {json_value_text(value)}")
        fitted[t] = FittedModel.from_dict(llm, dev, t, value, str(f))
    extra: dict[str, Any] = {}
    for key, known in (("measurement", MEASUREMENT_KEYS), ("provenance", PROVENANCE_KEYS)):
        if key in doc.d:
            record = _Obj(doc.d[key], key, str(f))
            record.only(known)
            extra[key] = record.d
    if "measurement" in extra:
        _check_measurement(_Obj(extra["measurement"], "measurement", str(f)))
    return llm, dev, fitted, extra


def _check_measurement(m: _Obj) -> None:
    """The measurement record's numbers are numbers (or null) and its provenance text is text or a
    list of texts (several values measured)."""
    for key, value in m.d.items():
        if key in MEASUREMENT_TEXT_KEYS:
            if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise m.error(key, f"must be text or a list of texts, got {json_value_text(value)}")
        else:
            m.number(key, null=True)


def _none_if_nan(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _held_back_batch_error(fm: FittedModel) -> float:
    """The largest median relative error over the batch sizes held back (NaN: none)."""
    errs = [float(f["median_rel_error"]) for f in fm.by_batch_size.values() if f.get("held_back")]
    return max(errs) if errs else float("nan")


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def _check_scale(raw: np.ndarray, target: str, pairs: list[tuple[str, str]], tin: np.ndarray, tout: np.ndarray,
                 sizes: list[int]) -> None:
    """A [queries × pairs] array of raw predictions holds only finite numbers below
    :data:`MAX_PREDICTION` in size, else a DataError names the first pair and query beyond."""
    if raw.size == 0 or raw.min() >= -MAX_PREDICTION and raw.max() <= MAX_PREDICTION:  # (NaN fails; no copy made)
        return
    with np.errstate(invalid="ignore"):
        i, j = (int(x[0]) for x in np.nonzero(~(np.abs(raw) <= MAX_PREDICTION)))
    llm, dev = pairs[j]
    raise DataError(f"the {target} model of {llm} on {dev} predicts {raw[i, j]:g} at {int(tin[i])} x {int(tout[i])} tokens, "
                    f"batch size {sizes[j]}: not a number within ±{MAX_PREDICTION:g}, no prediction of one query; "
                    "check its coefficients")


class FittedModels:
    """All fitted models, keyed by (llm, device), with both targets each."""

    def __init__(
        self,
        models: dict[tuple[str, str], dict[str, FittedModel]],
        info: dict[tuple[str, str], dict[str, Any]] | None = None,
    ):
        self.models = models
        self.info = info or {k: {} for k in models}
        self.source: str | None = None  # the directory they were loaded from

    # -- lookup ----------------------------------------------------------------------------
    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self.models)

    def __contains__(self, pair: object) -> bool:
        return pair in self.models

    def __len__(self) -> int:
        return len(self.models)

    def get(self, llm: str, device: str) -> dict[str, FittedModel]:
        try:
            return self.models[(llm, device)]
        except KeyError:
            have = ", ".join(f"{a}/{b}" for a, b in self.pairs()) or "none"
            raise DataError(f"no fitted model for LLM {llm!r} on device {device!r}; models exist for: {have}") from None

    def measured_ranges(self, llm: str, device: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """The input tokens, output tokens and batch sizes that both targets of (llm, device) were
        measured on, each as (smallest, largest): where a prediction is not extrapolated."""
        m = self.get(llm, device)
        out = []
        for attr in ("input_tokens_range", "output_tokens_range", "batch_size_range"):
            lows, highs = zip(*(getattr(m[t], attr) for t in TARGETS))
            out.append((max(lows), min(highs)))
        return out[0], out[1], out[2]

    def predict(self, llm: str, device: str, input_tokens: Any, output_tokens: Any, batch_size: int = 1) -> pd.DataFrame:
        """Predicted ``energy_j`` [J] and ``runtime_s`` [s] per query at ``batch_size``, vectorised
        over arrays of token counts.

        The column ``extrapolated`` is True where a token count lies outside the range the energy
        or the runtime model was measured on (:meth:`FittedModel.extrapolated`); ``valid`` is False
        where a published model's raw value is <= 0 (a planner must not use such a prediction: it
        would make the option look free).
        """
        m = self.get(llm, device)
        self._check_batch_size(llm, device, batch_size)
        tin = np.atleast_1d(np.asarray(input_tokens, dtype=float))
        tout = np.atleast_1d(np.asarray(output_tokens, dtype=float))
        if np.any(tin < 1) or np.any(tout < 1):
            raise DataError("input_tokens and output_tokens must be >= 1")
        tin, tout = np.broadcast_arrays(tin, tout)
        e = m["energy_j"].predict_raw(tin, tout, batch_size)
        r = m["runtime_s"].predict_raw(tin, tout, batch_size)
        for t, v in (("energy_j", e), ("runtime_s", r)):
            _check_scale(v[:, None], t, [(llm, device)], tin, tout, [batch_size])
        return pd.DataFrame(
            {
                "energy_j": np.maximum(e, 0.0),
                "runtime_s": np.maximum(r, 0.0),
                "extrapolated": m["energy_j"].extrapolated(tin, tout, batch_size)
                | m["runtime_s"].extrapolated(tin, tout, batch_size),
                "valid": (e > 0) & (r > 0),
            }
        )

    #: the query an empty slot of a batched instance is priced as: the shortest prompt the models
    #: cover and a typical output, whose cost is nearly all the weights' share of each decode step
    EMPTY_SLOT_TOKENS = (8, 128)

    def empty_slot_power_w(self, llm: str, device: str, batch_size: int) -> float | None:
        """Predicted power [W] of one slot of an instance at ``batch_size`` that holds no query:
        a decode step reads the weights for the whole batch, so an empty slot costs about what a
        query with next to no context does, per second (its 1/b share of the batch's energy over the
        batch's runtime at :attr:`EMPTY_SLOT_TOKENS`). None where the models cannot say."""
        try:
            p = self.predict(llm, device, [self.EMPTY_SLOT_TOKENS[0]], [self.EMPTY_SLOT_TOKENS[1]], batch_size)
        except (DataError, KeyError):
            return None
        e, t = float(p["energy_j"].iloc[0]), float(p["runtime_s"].iloc[0])
        return e / t if t > 0 and bool(p["valid"].iloc[0]) else None

    def _check_batch_size(self, llm: str, device: str, batch_size: int) -> None:
        m = self.get(llm, device)
        if not all(m[t].covers_batch_size(batch_size) for t in TARGETS):
            lo, hi = m["energy_j"].batch_size_range
            raise DataError(f"the models of {llm} on {device} were measured at batch sizes {lo}..{hi}, not at "
                            f"{batch_size}; characterize it at that batch size (energyopt characterize --batch-sizes)")

    def predict_matrix(self, pairs: list[tuple[str, str]], input_tokens: np.ndarray,
                       output_tokens: np.ndarray, batch_sizes: list[int] | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict` for many (llm, device) pairs at once, each at its batch size (default
        1): ``energy_j``, ``runtime_s`` and ``valid`` as [queries × pairs] arrays. A feature that
        is a function of the tokens times one of the batch size (:data:`SEPARABLE_FEATURES`) is
        one column of token features, its factor of b going into each pair's coefficients; the
        others (the batch's prefill knees) are a column per batch size. Each target is then one
        matrix product into its whole [queries × pairs] array (a million queries × 20 pairs at
        three batch sizes in about the time of one batch size)."""
        tin = np.asarray(input_tokens, dtype=float)
        tout = np.asarray(output_tokens, dtype=float)
        if np.any(tin < 1) or np.any(tout < 1):
            raise DataError("input_tokens and output_tokens must be >= 1")
        sizes = [1] * len(pairs) if batch_sizes is None else [int(b) for b in batch_sizes]
        for (llm, dev), b in zip(pairs, sizes):
            self._check_batch_size(llm, dev, b)
        models = [self.get(llm, dev) for llm, dev in pairs]
        column: dict[tuple[str, int], int] = {}  # (token feature, 0) or (feature, batch size) -> column of F
        coef: dict[str, list[tuple[int, int, float]]] = {t: [] for t in TARGETS}  # (column, pair, coefficient)
        for j, b in enumerate(sizes):
            for t in TARGETS:
                for f, c in zip(models[j][t].features, models[j][t].coefficients):
                    if f in SEPARABLE_FEATURES:
                        base, factor = SEPARABLE_FEATURES[f]
                        key, c = (base, 0), float(c) * factor(float(b))
                    else:
                        key = (f, b)
                    coef[t].append((column.setdefault(key, len(column)), j, float(c)))
        F = np.empty((len(column), len(tin))).T  # column by column: each feature written contiguously
        for (f, b), k in column.items():
            F[:, k] = FEATURES[f](tin, tout, np.float64(max(b, 1)))
        raw = {}
        for t in TARGETS:
            C = np.zeros((len(column), len(pairs)))
            for k, j, c in coef[t]:
                C[k, j] += c
            raw[t] = np.ascontiguousarray(np.einsum("nk,kd->nd", F, C))  # faster than matmul for so few features
        for t in TARGETS:
            _check_scale(raw[t], t, pairs, tin, tout, sizes)
        valid = (raw["energy_j"] > 0) & (raw["runtime_s"] > 0)
        energy = np.maximum(raw["energy_j"], 0.0, out=raw["energy_j"])
        runtime = np.maximum(raw["runtime_s"], 0.0, out=raw["runtime_s"])
        return energy, runtime, valid

    def extrapolated_matrix(self, pairs: list[tuple[str, str]], input_tokens: np.ndarray, output_tokens: np.ndarray,
                            batch_sizes: list[int] | None = None) -> np.ndarray:
        """:meth:`predict`'s ``extrapolated`` for many (llm, device) pairs at once, each at its batch
        size (default 1), as a [queries × pairs] bool array: True where the query's token counts
        (or the batch size) lie outside what either target of the pair was measured on
        (:meth:`measured_ranges`). One vector per distinct set of ranges, then one gather (a
        million queries × 20 pairs in about 20 ms)."""
        tin = np.asarray(input_tokens)
        tout = np.asarray(output_tokens)
        sizes = [1] * len(pairs) if batch_sizes is None else [int(b) for b in batch_sizes]
        column_of: dict[tuple[Any, ...], int] = {}
        which = []
        for (llm, dev), b in zip(pairs, sizes):
            tokens_in, tokens_out, (b0, b1) = self.measured_ranges(llm, dev)  # both targets measured there
            which.append(column_of.setdefault((tokens_in, tokens_out, not b0 <= b <= b1), len(column_of)))
        distinct = np.empty((len(tin), len(column_of)), dtype=bool)
        for ((x0, x1), (y0, y1), outside_batch_sizes), k in column_of.items():
            if outside_batch_sizes:
                distinct[:, k] = True
            else:
                distinct[:, k] = (tin < x0) | (tin > x1) | (tout < y0) | (tout > y1)
        return np.take(distinct, which, axis=1)  # C order, like the other [queries × pairs] arrays

    def table(self) -> pd.DataFrame:
        """One row per (llm, device, target): form and fit quality."""
        rows = []
        for (llm, dev) in self.pairs():
            for t in TARGETS:
                fm = self.models[(llm, dev)][t]
                rows.append(
                    {
                        "llm": llm,
                        "device": dev,
                        "target": t,
                        "form": fm.form if fm.origin == "fitted" else f"{fm.form} (published)",
                        "cv_r2": fm.metrics.cv_r2,
                        "r2": fm.metrics.r2,
                        "median_rel_err": fm.metrics.cv_median_rel_error,
                        "p95_rel_err": fm.metrics.cv_p95_rel_error,
                        "n": fm.metrics.n_samples,
                        "points": fm.metrics.n_points,
                        "holdout_med_err": fm.metrics.holdout_median_rel_error,
                        "holdout_max_err": fm.metrics.holdout_max_rel_error,
                        "holdout_n": fm.metrics.n_holdout,
                        "repeat_spread": fm.metrics.repeat_spread,
                        "batch_sizes": "-".join(str(b) for b in sorted({*fm.batch_size_range})),
                        "held_back_batch_err": _held_back_batch_error(fm),
                        "outliers": len(fm.outliers),
                    }
                )
        return pd.DataFrame(rows)

    def failing(self, min_r2: float) -> list[str]:
        """Every (llm, device, target), and every batch size of it, whose cross-validated R² is
        below ``min_r2`` (a batch size with too few points for an R² is not gated on its own)."""
        out = []
        for pair in self.pairs():
            for m in (self.models[pair][t] for t in TARGETS):
                if not m.metrics.cv_r2 >= min_r2:
                    out.append(f"{m.llm}/{m.device}/{m.target} (CV R² {m.metrics.cv_r2:.4f})")
                for b, fig in sorted(m.by_batch_size.items()):
                    r2 = fig.get("cv_r2", float("nan"))
                    if not fig.get("held_back") and isinstance(r2, float) and np.isfinite(r2) and r2 < min_r2:
                        out.append(f"{m.llm}/{m.device}/{m.target} at batch size {b} (CV R² {r2:.4f})")
        return out

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> list[Path]:
        """Write one JSON file per (llm, device) into ``directory``; returns the paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        written = []
        for llm, dev in self.pairs():
            doc = {
                "format_version": FORMAT_VERSION,
                "llm": llm,
                "device": dev,
                **{t: self.models[(llm, dev)][t].to_dict() for t in TARGETS},
                **self.info.get((llm, dev), {}),
            }
            path = d / f"{_safe_name(llm)}__{_safe_name(dev)}.json"
            write_atomic(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
            written.append(path)
        return written

    @classmethod
    def load(cls, directory: str | Path) -> FittedModels:
        """Read every ``*.json`` model file in ``directory``, validating each."""
        d = Path(directory)
        if not d.is_dir():
            raise DataError(f"{d}: models directory not found")
        files = sorted(d.glob("*.json"))
        if not files:
            raise DataError(f"{d}: no model files (*.json); run `energyopt fit` first")
        models: dict[tuple[str, str], dict[str, FittedModel]] = {}
        info: dict[tuple[str, str], dict[str, Any]] = {}
        for f in files:
            llm, dev, fitted, extra = _read_model_file(f)
            if (llm, dev) in models:
                raise DataError(f"{f}: a second model file for {key_text(llm)} on {key_text(dev)}")
            models[(llm, dev)] = fitted
            info[(llm, dev)] = extra
        out = cls(models, info)
        out.source = str(d.resolve())
        return out
