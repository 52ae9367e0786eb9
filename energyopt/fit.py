"""Fitting regression models of runtime [s] and energy [J] per query, per (LLM, device).

This module makes the models (forms, cross-validation, NNLS, the R² gate) and returns
:class:`~energyopt.modelstore.FittedModels`; loading, saving and predicting live in
:mod:`energyopt.modelstore`.

Each candidate form is a linear combination of non-negative features of the input token count τin
and the output token count τout::

    paper        a0·τin + a1·τout + a2·τin·τout                  (Wilkins et al. 2024, no intercept)
    paper+c      c + a0·τin + a1·τout + a2·τin·τout
    quad_out     c + a0·τin + a1·τout + a2·τin·τout + a3·τout²   (KV cache on: decode cost grows with context)
    full_quad    quad_out + a4·τin²                              (prefill attention is quadratic in τin)

Coefficients are fitted by non-negative least squares. Every feature is ≥ 0 for τ ≥ 1, so every
prediction is ≥ 0 by construction: no form can predict negative energy for long prompts, which the
paper's published coefficients do. The loss is the squared *relative* error by default, so the
typical short query is predicted as well as the long ones.

    kv_off       quad_out + a5·τin·τout² + a6·τout³              (KV cache off: each step re-reads the context)

**Batch sizes.** Where an (LLM, device) was measured at several batch sizes b, the targets are a
query's share of its batch's energy (``energy_per_query_j``, or ``energy_j / batch_size``) and its
latency while it shares the device (the batch's ``runtime_s``), and the forms add b: what a batch
shares (the weights read once per decode step, fixed overheads) falls as 1/b per query; what each
query adds to every step (its KV cache) makes every query's step slower in proportion to b::

    energy  batch       e/b + a0·τin + a1·τout/b + a2·τin·τout + a3·τout²
            batch+      batch + a4·τout
            batch_prefill  batch+ + a5·τin²                      (prefill attention, per query)
            batch_full  batch+ + a5·τin/b + a6·τin·τout/b
            batch_power batch+ + b·(a5·τin + a6·τin·τout + a7·τout²)   (power grows with the queries served)
    engine  batch_engine  batch_prefill + c                      (rows measured through an engine that
                        prefills each query on its own, decode_attention=ragged: that prefill's fixed
                        cost, launches and a read of the weights, is the query's alone)
    runtime latency     c + a0·b·τin + a1·τout + a2·b·τin·τout + a3·b·τout²
            latency_prefill  latency + a4·b·τin²              (the batch's prefill attention)
            latency_compute  latency_prefill + a5·b·τout      (decode steps compute-bound at large b)
            latency+    latency_compute + a6·τin + a7·τin·τout + a8·τout²
            latency_log latency_compute + log b·(a6·τin·τout + a7·τout²)   (decode attention over the
                        batch's context that grows slower than b: a small model's kernel is latency-bound)
            latency_engine(_log)  latency_compute (latency_log) + a9·b   (the same engine: b prefills'
                        fixed costs per batch)
            latency_engine_knee{K}  latency_engine_log + a10·b·max(0, τin − K)   (the same engine,
                        each prefill the longer of the host's launches and the device's compute:
                        beyond K prompt tokens the compute shows; K in ENGINE_KNEES_TOKENS)
            batch_engine_knee{K}    batch_engine + a9·max(0, τin − K)    (its energy likewise)
    knees   latency_knee{K}  latency_log + a8·max(0, b·τin − K)      (the batch's prefill turns
            batch_knee{K}    batch_prefill + a8·max(0, b·τin − K)/b    compute-bound beyond K tokens)

The knee K [tokens of the whole batch's prompts] is one of ``PREFILL_KNEES_TOKENS`` (4k, 16k,
64k), each a form of its own: cross-validation chooses it, as it chooses every form. Below the
knee a prefill costs about its launches and weight reads (in the intercept and the τin terms);
beyond it every prompt token of the batch adds compute. A 0.5B model on an H200 prefills 2,048
tokens at batch 1 in no more time than 8, and 128 × 2,048 in over a second.

The gate holds per batch size (each one's cross-validated R²), and batch sizes held back
(``holdout_batch_sizes``) are predicted from the others and scored, like held-back token points.

Repeated runs of one (τin, τout, b) point are averaged before fitting: a model predicts the
expected cost of a query, and the spread between repeats (run-to-run noise, e.g. a CPU's
neighbours' load) is reported beside the fit as ``repeat_spread`` rather than counted as model
error. The form is chosen per (LLM, device, target) by k-fold cross-validation over those points,
so the score measures prediction at unseen points; forms whose cross-validated R² reaches
``min_r2`` at every batch size are preferred. The cross-validated R² is gated by ``min_r2``.

**Outliers.** A point whose out-of-fold prediction is off by more than a factor ``OUTLIER_FACTOR``
either way (and ten times the median error), e.g. a warm-up run ten times slow, is reported and
not fitted. A
measurement near zero must not drag a relative-error fit: each point's weight is capped at that
of 5% of the median measurement.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import FitError
from .modelstore import (
    ENGINE_KNEES_TOKENS,
    FEATURES,
    MEASUREMENT_TEXT_KEYS,
    PREFILL_KNEES_TOKENS,
    FitMetrics,
    FittedModel,
    FittedModels,
)
from .schema import TARGETS
from .version import package_version

__all__ = [
    "FORMS",
    "BATCH_FORMS",
    "OUTLIER_FACTOR",
    "fit_models",
    "fit_pair",
    "per_query_targets",
]

#: form name -> feature names, simplest first (ties in the CV score go to the simpler form)
FORMS: dict[str, tuple[str, ...]] = {
    "paper": ("tin", "tout", "tin*tout"),
    "paper+c": ("1", "tin", "tout", "tin*tout"),
    "quad_out": ("1", "tin", "tout", "tin*tout", "tout^2"),
    "full_quad": ("1", "tin", "tout", "tin*tout", "tout^2", "tin^2"),
    "kv_off": ("1", "tin", "tout", "tin*tout", "tout^2", "tin*tout^2", "tout^3"),
}

#: per target, the forms for data measured at several batch sizes (see the module docstring)
BATCH_FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "energy_j": {
        "batch": ("1/b", "tin", "tout/b", "tin*tout", "tout^2"),
        "batch+": ("1/b", "tin", "tout/b", "tout", "tin*tout", "tout^2"),
        "batch_prefill": ("1/b", "tin", "tin^2", "tout/b", "tout", "tin*tout", "tout^2"),
        "batch_full": ("1/b", "tin", "tin/b", "tout/b", "tout", "tin*tout", "tin*tout/b", "tout^2"),
        # a device draws more power the more queries it serves at once: the latency's b-terms appear too
        "batch_power": ("1/b", "tin", "b*tin", "tout/b", "tout", "tin*tout", "b*tin*tout", "tout^2", "b*tout^2"),
    },
    "runtime_s": {
        "latency": ("1", "b*tin", "tout", "b*tin*tout", "b*tout^2"),
        "latency_prefill": ("1", "b*tin", "b*tin^2", "tout", "b*tin*tout", "b*tout^2"),
        # a decode step that is compute-bound at large batches: every query adds its own work
        "latency_compute": ("1", "b*tin", "b*tin^2", "tout", "b*tout", "b*tin*tout", "b*tout^2"),
        "latency+": ("1", "tin", "b*tin", "b*tin^2", "tout", "b*tout", "tin*tout", "b*tin*tout", "tout^2", "b*tout^2"),
        # decode attention over the batch's context that saturates (grows with log b) on top of b·
        "latency_log": ("1", "b*tin", "b*tin^2", "tout", "b*tout", "b*tin*tout", "b*tout^2", "log(b)*tin*tout",
                        "log(b)*tout^2"),
    },
}
# a prefill that turns compute-bound beyond a knee of the batch's prompt tokens, one form per knee
for _k in PREFILL_KNEES_TOKENS:
    BATCH_FORMS["energy_j"][f"batch_knee{_k // 1024}k"] = (*BATCH_FORMS["energy_j"]["batch_prefill"],
                                                            f"relu(b*tin-{_k})/b")
    BATCH_FORMS["runtime_s"][f"latency_knee{_k // 1024}k"] = (*BATCH_FORMS["runtime_s"]["latency_log"],
                                                               f"relu(b*tin-{_k})")
del _k
#: extra forms for rows measured through an engine that prefills each query on its own
#: (``decode_attention=ragged``: energyopt replay's engine): a fixed cost per query's prefill
ENGINE_FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "energy_j": {"batch_engine": ("1", "1/b", "tin", "tin^2", "tout/b", "tout", "tin*tout", "tout^2")},
    "runtime_s": {
        "latency_engine": ("1", "b", "b*tin", "b*tin^2", "tout", "b*tout", "b*tin*tout", "b*tout^2"),
        "latency_engine_log": ("1", "b", "b*tin", "b*tin^2", "tout", "b*tout", "b*tin*tout", "b*tout^2",
                               "log(b)*tin*tout", "log(b)*tout^2"),
    },
}
for _k in ENGINE_KNEES_TOKENS:
    ENGINE_FORMS["energy_j"][f"batch_engine_knee{_k}"] = (*ENGINE_FORMS["energy_j"]["batch_engine"], f"relu(tin-{_k})")
    ENGINE_FORMS["runtime_s"][f"latency_engine_knee{_k}"] = (*ENGINE_FORMS["runtime_s"]["latency_engine_log"],
                                                               f"b*relu(tin-{_k})")
del _k

# a more complex form must beat a simpler one's CV score by this factor to be chosen
_PARSIMONY = 0.98
#: a point whose out-of-fold prediction is off by more than this factor (and ten times the median
#: log-error) is an outlier
OUTLIER_FACTOR = 3.0
# a point's weight in the relative loss is at most that of this fraction of the median measurement
_WEIGHT_FLOOR = 0.05


def _design(features: Iterable[str], tin: np.ndarray, tout: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    x = np.asarray(tin, dtype=float)
    y = np.asarray(tout, dtype=float)
    bb = np.ones_like(x) if b is None else np.asarray(b, dtype=float)
    return np.column_stack([FEATURES[f](x, y, bb) for f in features])


def _loss_weights(y: np.ndarray, relative: bool) -> np.ndarray:
    """Per point: 1/y for the relative loss, capped so that a measurement near zero cannot dominate."""
    if not relative:
        return np.ones_like(y)
    return 1.0 / np.maximum(y, _WEIGHT_FLOOR * float(np.median(y)))


def _nnls_fit(X: np.ndarray, y: np.ndarray, relative: bool) -> np.ndarray:
    from scipy.optimize import nnls  # here: planning loads fitted models and never needs scipy's import time

    w = _loss_weights(y, relative)
    A = X * w[:, None]
    b = y * w
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, b, maxiter=50 * X.shape[1])
    return coef / scale


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_res = float(np.sum((y - yhat) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def _cv_predictions(X: np.ndarray, y: np.ndarray, folds: int, relative: bool) -> np.ndarray:
    """Out-of-fold predictions, each row of ``X`` a distinct point (a group of its own)."""
    from sklearn.model_selection import GroupKFold

    oof = np.empty_like(y)
    for train, test in GroupKFold(n_splits=folds).split(X, y, np.arange(len(y))):
        coef = _nnls_fit(X[train], y[train], relative)
        oof[test] = np.maximum(X[test] @ coef, 0.0)
    return oof


def per_query_targets(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``energy_j`` as each query's share of its batch's energy
    (``energy_per_query_j`` where measured, else ``energy_j / batch_size``); ``runtime_s`` is a
    query's latency in its batch as measured."""
    out = rows.copy()
    share = out["energy_j"].to_numpy(dtype=float) / out["batch_size"].to_numpy(dtype=float)
    if "energy_per_query_j" in out:
        given = pd.to_numeric(out["energy_per_query_j"], errors="coerce").to_numpy(dtype=float)
        share = np.where(np.isnan(given), share, given)
    out["energy_j"] = share
    return out


def _point_means(rows: pd.DataFrame, target: str) -> tuple[pd.DataFrame, float]:
    """Mean of ``target`` per (input_tokens, output_tokens, batch_size) and the median spread of
    repeated points."""
    g = rows.groupby(["input_tokens", "output_tokens", "batch_size"], sort=True)[target]
    stats = g.agg(["mean", "min", "max", "size"])
    rep = stats[stats["size"] > 1]
    spread = float(np.median((rep["max"] - rep["min"]) / rep["mean"])) if len(rep) else float("nan")
    points = stats["mean"].rename(target).reset_index()
    return points, spread


def _choose_form(X_of: dict[str, np.ndarray], y: np.ndarray, b: np.ndarray, folds: int, relative: bool,
                 min_r2: float) -> tuple[str, dict[str, dict[str, float]], np.ndarray]:
    """The form with the best CV score (a richer one must beat a simpler one by 2%) among those
    whose cross-validated R² reaches ``min_r2`` at every batch size (all forms, if none does);
    every form's scores; the chosen form's out-of-fold predictions."""
    results: dict[str, dict[str, float]] = {}
    oofs: dict[str, np.ndarray] = {}
    passing: dict[str, bool] = {}
    for name, X in X_of.items():
        oof = _cv_predictions(X, y, folds, relative)
        rel = np.abs(oof - y) / y
        oofs[name] = oof
        results[name] = {
            "cv_r2": _r2(y, oof),
            "cv_median_rel_error": float(np.median(rel)),
            "cv_p95_rel_error": float(np.quantile(rel, 0.95)),
            "cv_score": float(np.mean(rel**2)),
        }
        per_size = [f["cv_r2"] for f in _by_batch_size(y, oof, b).values() if np.isfinite(f["cv_r2"])]
        passing[name] = results[name]["cv_r2"] >= min_r2 and all(r2 >= min_r2 for r2 in per_size)
    eligible = [n for n in X_of if passing[n]] or list(X_of)
    best = eligible[0]
    for name in eligible[1:]:
        if results[name]["cv_score"] < _PARSIMONY * results[best]["cv_score"]:
            best = name
    return best, results, oofs[best]


def _outliers(y: np.ndarray, oof: np.ndarray) -> np.ndarray:
    """Points far off what the others predict: measured and predicted differ by more than a factor
    ``OUTLIER_FACTOR`` either way (a run 10× slow, or one that lost its work), and by ten times the
    median such difference (log-ratios, so that high and low outliers count alike)."""
    err = np.abs(np.log(np.maximum(oof, 1e-300) / y))
    return (err > np.log(OUTLIER_FACTOR)) & (err > 10 * np.median(err))


def _by_batch_size(y: np.ndarray, oof: np.ndarray, b: np.ndarray) -> dict[int, dict[str, float]]:
    """Cross-validated figures per batch size (R² where it has three points or more)."""
    out: dict[int, dict[str, float]] = {}
    for size in np.unique(b):
        sel = b == size
        rel = np.abs(oof[sel] - y[sel]) / y[sel]
        out[int(size)] = {
            "cv_r2": _r2(y[sel], oof[sel]) if sel.sum() >= 3 else float("nan"),
            "cv_median_rel_error": float(np.median(rel)),
            "n_points": int(sel.sum()),
        }
    return out


def fit_pair(
    rows: pd.DataFrame, llm: str, device: str, target: str, *, folds: int = 5, relative: bool = True,
    forms: Mapping[str, tuple[str, ...]] | None = None, holdout: pd.DataFrame | None = None,
    holdout_batch: pd.DataFrame | None = None, min_r2: float = 0.96,
) -> FittedModel:
    """Fit every candidate form to one (LLM, device, target) and keep the best by CV score.

    The CV score is the mean squared relative error of out-of-fold predictions (the quantity the
    fit minimises); a form with more terms must beat a simpler one by 2% to be chosen. Repeats of a
    point are averaged first; outliers (see the module docstring) are dropped and reported. Rows in
    ``holdout`` (measured off the design) and ``holdout_batch`` (batch sizes held back) are not
    fitted; the final model's error on them (also averaged per point) is kept.
    """
    points, spread = _point_means(rows, target)
    b_all = points["batch_size"].to_numpy(dtype=float)
    batched = len(np.unique(b_all)) > 1
    if forms is None:
        forms = BATCH_FORMS[target] if batched else FORMS
    if len(points) < folds:
        raise FitError(
            f"{llm} on {device}: only {len(points)} distinct (input_tokens, output_tokens, batch_size) points; "
            f"{folds}-fold cross-validation needs at least {folds}"
        )
    keep = np.ones(len(points), dtype=bool)
    for _round in range(2):  # choose, drop the outliers, choose again on the rest
        pts = points[keep]
        tin = pts["input_tokens"].to_numpy(dtype=float)
        tout = pts["output_tokens"].to_numpy(dtype=float)
        b = pts["batch_size"].to_numpy(dtype=float)
        y = pts[target].to_numpy(dtype=float)
        X_of = {name: _design(feats, tin, tout, b) for name, feats in forms.items()}
        best, results, oof = _choose_form(X_of, y, b, folds, relative, min_r2)
        # a point is far off by the form that explains the points best, gate or not: a form that
        # misses a whole effect (an engine's per-query prefill) must not make its points outliers
        closest = min(results, key=lambda n: results[n]["cv_score"])
        far = _outliers(y, _cv_predictions(X_of[closest], y, folds, relative) if closest != best else oof)
        if _round == 1 or not far.any() or keep.sum() - far.sum() < folds:
            break
        keep[np.flatnonzero(keep)[far]] = False
    outliers = [
        {"input_tokens": int(r.input_tokens), "output_tokens": int(r.output_tokens), "batch_size": int(r.batch_size),
         "measured": round(float(getattr(r, target)), 6)}
        for r in points[~keep].itertuples()
    ]
    feats = tuple(forms[best])
    X = X_of[best]
    coef = _nnls_fit(X, y, relative)
    chosen = results[best]
    by_b = _by_batch_size(y, oof, b)
    hold_med = hold_max = float("nan")
    n_hold = 0
    if holdout is not None and len(holdout):
        hrel = _held_back_errors(holdout, target, feats, coef)
        hold_med, hold_max, n_hold = float(np.median(hrel)), float(np.max(hrel)), len(hrel)
    if holdout_batch is not None and len(holdout_batch):
        hb, _ = _point_means(holdout_batch, target)
        hrel = _held_back_errors(holdout_batch, target, feats, coef)
        for size in np.unique(hb["batch_size"]):
            sel = (hb["batch_size"] == size).to_numpy()
            by_b[int(size)] = {"held_back": True, "median_rel_error": float(np.median(hrel[sel])),
                               "max_rel_error": float(np.max(hrel[sel])), "n_points": int(sel.sum())}
    metrics = FitMetrics(
        r2=_r2(y, np.maximum(X @ coef, 0.0)),
        cv_r2=chosen["cv_r2"],
        cv_median_rel_error=chosen["cv_median_rel_error"],
        cv_p95_rel_error=chosen["cv_p95_rel_error"],
        n_samples=len(rows),
        n_points=int(keep.sum()),
        holdout_median_rel_error=hold_med,
        holdout_max_rel_error=hold_max,
        n_holdout=n_hold,
        repeat_spread=spread,
    )
    return FittedModel(
        llm=llm,
        device=device,
        target=target,
        form=best,
        features=feats,
        coefficients=coef,
        metrics=metrics,
        input_tokens_range=(int(tin.min()), int(tin.max())),
        output_tokens_range=(int(tout.min()), int(tout.max())),
        candidates={k: {m: round(v, 6) for m, v in r.items()} for k, r in results.items()},
        batch_size_range=(int(b.min()), int(b.max())),
        by_batch_size=by_b if batched or holdout_batch is not None and len(holdout_batch) else {},
        outliers=outliers,
    )


def _held_back_errors(rows: pd.DataFrame, target: str, feats: tuple[str, ...], coef: np.ndarray) -> np.ndarray:
    """Relative error of the model on held-back rows, averaged per point first."""
    pts, _ = _point_means(rows, target)
    hy = pts[target].to_numpy(dtype=float)
    hx = _design(feats, pts["input_tokens"].to_numpy(dtype=float), pts["output_tokens"].to_numpy(dtype=float),
                 pts["batch_size"].to_numpy(dtype=float))
    return np.abs(np.maximum(hx @ coef, 0.0) - hy) / hy


def _data_hash(rows: pd.DataFrame) -> str:
    cols = ["llm", "device", "input_tokens", "output_tokens", "batch_size", "runtime_s", "energy_j"]
    canon = rows[cols].sort_values(cols).to_csv(index=False, float_format="%.9g")
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


def _versions() -> dict[str, str]:
    import scipy
    import sklearn

    return {
        "energyopt": package_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
    }


def _refuse_dry_run(data: pd.DataFrame) -> None:
    """Rows of ``characterize --dry-run`` are simulated: never fitted."""
    if "energy_source" in data.columns:
        dry = int((data["energy_source"].astype(str) == "dry_run").sum())
        if dry:
            raise FitError(f"{dry} rows are a dry run's (energy_source=dry_run: simulated, not measured); "
                           "fit measured rows only")


def fit_models(
    data: pd.DataFrame,
    *,
    min_r2: float = 0.96,
    folds: int = 5,
    batch_sizes: Iterable[int] | None = None,
    holdout_batch_sizes: Iterable[int] = (),
    relative: bool = True,
    sources: Iterable[str] = (),
) -> FittedModels:
    """Fit ``energy_j`` (per query) and ``runtime_s`` (per query) for every (llm, device) in a
    characterization table, over every batch size measured (or those in ``batch_sizes``).

    Rows whose ``split`` is ``holdout`` are not fitted, nor rows at ``holdout_batch_sizes``: each
    model's error on them is reported. Raises :class:`FitError` listing every (llm, device,
    target, batch size) whose cross-validated R² is below ``min_r2``; the error's ``models``
    attribute holds all the fits, for a report.
    """
    if not 0 <= min_r2 <= 1:
        raise FitError(f"min_r2 must be in [0, 1], got {min_r2}")
    if folds < 2:
        raise FitError(f"folds must be at least 2, got {folds}")
    _refuse_dry_run(data)
    rows = per_query_targets(data)
    if batch_sizes is not None:
        wanted = sorted({int(b) for b in batch_sizes})
        rows = rows[rows["batch_size"].isin(wanted)]
        if rows.empty:
            raise FitError(f"no rows with batch_size in {wanted} to fit")
    held_sizes = sorted({int(b) for b in holdout_batch_sizes})
    models: dict[tuple[str, str], dict[str, FittedModel]] = {}
    info: dict[tuple[str, str], dict[str, Any]] = {}
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    versions = _versions()
    for (llm, dev), g_all in rows.groupby(["llm", "device"], sort=True):
        if "split" in g_all:
            is_hold = (g_all["split"].astype(str).str.strip() == "holdout").to_numpy()
        else:
            is_hold = np.zeros(len(g_all), bool)
        in_held_size = g_all["batch_size"].isin(held_sizes).to_numpy()
        hold = g_all[is_hold & ~in_held_size]
        hold_batch = g_all[in_held_size]
        g = g_all[~is_hold & ~in_held_size]
        if g.empty:
            raise FitError(f"{llm} on {dev}: only held-back rows (split=holdout or a held-back batch size); nothing to fit")
        if len(hold_batch) and g["batch_size"].nunique() < 2:
            raise FitError(f"{llm} on {dev}: batch sizes {held_sizes} are held back, but the rest was measured at "
                           f"one batch size only ({int(g['batch_size'].iloc[0])}); nothing to predict them from")
        engine = "decode_attention" in g and set(g["decode_attention"].dropna().astype(str)) == {"ragged"}
        batched = g["batch_size"].nunique() > 1
        forms_of = {t: {**BATCH_FORMS[t], **ENGINE_FORMS[t]} if engine and batched else None for t in TARGETS}
        models[(llm, dev)] = {t: fit_pair(g, llm, dev, t, folds=folds, relative=relative, holdout=hold,
                                          holdout_batch=hold_batch, min_r2=min_r2, forms=forms_of[t])
                              for t in TARGETS}
        meas: dict[str, Any] = {}
        if "idle_power_w" in g and g["idle_power_w"].notna().any():
            meas["idle_power_w"] = round(float(g["idle_power_w"].median()), 3)
        if "num_devices" in g and g["num_devices"].notna().any():
            meas["num_devices"] = int(g["num_devices"].max())
        for col in MEASUREMENT_TEXT_KEYS:  # the keys a model file's measurement record may have
            if col in g:
                vals = sorted({str(v) for v in g[col].dropna()})
                if vals:
                    meas[col] = vals if len(vals) > 1 else vals[0]
        info[(llm, dev)] = {
            "measurement": meas,
            "provenance": {
                "training_data": _data_hash(g),
                "sources": sorted(set(sources)),
                "fitted_at": now,
                "folds": folds,
                "loss": "relative" if relative else "absolute",
                "min_r2": min_r2,
                "batch_sizes": sorted(int(b) for b in g["batch_size"].unique()),
                "held_back_batch_sizes": sorted(int(b) for b in hold_batch["batch_size"].unique()),
                "versions": versions,
            },
        }
    result = FittedModels(models, info)
    bad = result.failing(min_r2)
    if bad:
        err = FitError(f"cross-validated R² below {min_r2} for: {'; '.join(bad)}")
        err.models = result  # type: ignore[attr-defined]
        raise err
    return result
