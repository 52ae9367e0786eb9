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

Repeated runs of one (τin, τout) point are averaged before fitting: a model predicts the expected
cost of a query, and the spread between repeats (run-to-run noise, e.g. a CPU's neighbours' load)
is reported beside the fit as ``repeat_spread`` rather than counted as model error.
The form is chosen per (LLM, device, target) by k-fold cross-validation over those points, so the
score measures prediction at unseen points. The cross-validated R² is gated by ``min_r2``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import FitError
from .modelstore import FEATURES, FitMetrics, FittedModel, FittedModels
from .schema import TARGETS
from .version import package_version

__all__ = [
    "FORMS",
    "fit_models",
    "fit_pair",
]

#: form name -> feature names, simplest first (ties in the CV score go to the simpler form)
FORMS: dict[str, tuple[str, ...]] = {
    "paper": ("tin", "tout", "tin*tout"),
    "paper+c": ("1", "tin", "tout", "tin*tout"),
    "quad_out": ("1", "tin", "tout", "tin*tout", "tout^2"),
    "full_quad": ("1", "tin", "tout", "tin*tout", "tout^2", "tin^2"),
}

# a more complex form must beat a simpler one's CV score by this factor to be chosen
_PARSIMONY = 0.98


def _design(features: Iterable[str], tin: np.ndarray, tout: np.ndarray) -> np.ndarray:
    x = np.asarray(tin, dtype=float)
    y = np.asarray(tout, dtype=float)
    return np.column_stack([FEATURES[f](x, y, np.ones_like(x)) for f in features])


def _nnls_fit(X: np.ndarray, y: np.ndarray, relative: bool) -> np.ndarray:
    from scipy.optimize import nnls  # here: planning loads fitted models and never needs scipy's import time

    w = 1.0 / y if relative else np.ones_like(y)
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


def _cv_predictions(
    features: tuple[str, ...], tin: np.ndarray, tout: np.ndarray, y: np.ndarray, folds: int, relative: bool
) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    X = _design(features, tin, tout)
    groups = pd.factorize(pd.Series(list(zip(tin, tout))))[0]
    oof = np.empty_like(y)
    for train, test in GroupKFold(n_splits=folds).split(X, y, groups):
        coef = _nnls_fit(X[train], y[train], relative)
        oof[test] = np.maximum(X[test] @ coef, 0.0)
    return oof


def _point_means(rows: pd.DataFrame, target: str) -> tuple[pd.DataFrame, float]:
    """Mean of ``target`` per (input_tokens, output_tokens) and the median spread of repeated points."""
    g = rows.groupby(["input_tokens", "output_tokens"], sort=True)[target]
    stats = g.agg(["mean", "min", "max", "size"])
    rep = stats[stats["size"] > 1]
    spread = float(np.median((rep["max"] - rep["min"]) / rep["mean"])) if len(rep) else float("nan")
    points = stats["mean"].rename(target).reset_index()
    return points, spread


def fit_pair(
    rows: pd.DataFrame, llm: str, device: str, target: str, *, folds: int = 5, relative: bool = True,
    forms: Mapping[str, tuple[str, ...]] = FORMS, holdout: pd.DataFrame | None = None,
) -> FittedModel:
    """Fit every candidate form to one (LLM, device, target) and keep the best by CV score.

    The CV score is the mean squared relative error of out-of-fold predictions (the quantity the
    fit minimises); a form with more terms must beat a simpler one by 2% to be chosen. Repeats of a
    point are averaged first. Rows in ``holdout`` (measured off the design) are not fitted; the
    final model's error on them (also averaged per point) is kept.
    """
    points, spread = _point_means(rows, target)
    tin = points["input_tokens"].to_numpy(dtype=float)
    tout = points["output_tokens"].to_numpy(dtype=float)
    y = points[target].to_numpy(dtype=float)
    n_points = len(points)
    if n_points < folds:
        raise FitError(
            f"{llm} on {device}: only {n_points} distinct (input_tokens, output_tokens) points; "
            f"{folds}-fold cross-validation needs at least {folds}"
        )
    results: dict[str, dict[str, Any]] = {}
    best: str | None = None
    for name, feats in forms.items():
        oof = _cv_predictions(feats, tin, tout, y, folds, relative)
        rel = np.abs(oof - y) / y
        score = float(np.mean(rel**2))
        results[name] = {
            "cv_r2": _r2(y, oof),
            "cv_median_rel_error": float(np.median(rel)),
            "cv_p95_rel_error": float(np.quantile(rel, 0.95)),
            "cv_score": score,
        }
        if best is None or score < _PARSIMONY * results[best]["cv_score"]:
            best = name
    assert best is not None
    feats = forms[best]
    X = _design(feats, tin, tout)
    coef = _nnls_fit(X, y, relative)
    chosen = results[best]
    hold_med = hold_max = float("nan")
    n_hold = 0
    if holdout is not None and len(holdout):
        holdout, _ = _point_means(holdout, target)
        hy = holdout[target].to_numpy(dtype=float)
        hx = _design(feats, holdout["input_tokens"].to_numpy(dtype=float), holdout["output_tokens"].to_numpy(dtype=float))
        hrel = np.abs(np.maximum(hx @ coef, 0.0) - hy) / hy
        hold_med, hold_max, n_hold = float(np.median(hrel)), float(np.max(hrel)), len(hy)
    metrics = FitMetrics(
        r2=_r2(y, np.maximum(X @ coef, 0.0)),
        cv_r2=chosen["cv_r2"],
        cv_median_rel_error=chosen["cv_median_rel_error"],
        cv_p95_rel_error=chosen["cv_p95_rel_error"],
        n_samples=len(rows),
        n_points=n_points,
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
    )


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


_PROVENANCE_TEXT_COLUMNS = (
    "gpu_name",
    "cpu_name",
    "driver",
    "torch_version",
    "transformers_version",
    "dtype",
    "energy_source",
    "measured_at",
    "host",
)


def fit_models(
    data: pd.DataFrame,
    *,
    min_r2: float = 0.96,
    folds: int = 5,
    batch_size: int = 1,
    relative: bool = True,
    sources: Iterable[str] = (),
) -> FittedModels:
    """Fit ``energy_j`` and ``runtime_s`` for every (llm, device) in a characterization table.

    Only rows with ``batch_size`` equal to the argument are used (plans run one query at a time).
    Rows whose ``split`` is ``holdout`` are not fitted: each model's error on them is reported.
    Raises :class:`FitError` listing every (llm, device, target) whose cross-validated R² is below
    ``min_r2``; the error's ``models`` attribute holds all the fits, for a report.
    """
    if not 0 <= min_r2 <= 1:
        raise FitError(f"min_r2 must be in [0, 1], got {min_r2}")
    if folds < 2:
        raise FitError(f"folds must be at least 2, got {folds}")
    rows = data[data["batch_size"] == batch_size]
    if rows.empty:
        raise FitError(f"no rows with batch_size = {batch_size} to fit")
    models: dict[tuple[str, str], dict[str, FittedModel]] = {}
    info: dict[tuple[str, str], dict[str, Any]] = {}
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    versions = _versions()
    for (llm, dev), g_all in rows.groupby(["llm", "device"], sort=True):
        is_hold = (g_all["split"].astype(str).str.strip() == "holdout").to_numpy() if "split" in g_all else np.zeros(len(g_all), bool)
        hold = g_all[is_hold]
        g = g_all[~is_hold]
        if g.empty:
            raise FitError(f"{llm} on {dev}: only held-back rows (split=holdout); nothing to fit")
        models[(llm, dev)] = {t: fit_pair(g, llm, dev, t, folds=folds, relative=relative, holdout=hold) for t in TARGETS}
        meas: dict[str, Any] = {}
        if "idle_power_w" in g and g["idle_power_w"].notna().any():
            meas["idle_power_w"] = round(float(g["idle_power_w"].median()), 3)
        if "num_devices" in g and g["num_devices"].notna().any():
            meas["num_devices"] = int(g["num_devices"].max())
        for col in _PROVENANCE_TEXT_COLUMNS:
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
                "batch_size": batch_size,
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
