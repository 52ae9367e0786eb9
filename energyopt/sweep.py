"""Pareto sweeps: the least-energy plan over a series of accuracy floors, ζ values or deadline scales.

Each point of the series is a full plan (same solver, same checks). The baselines (round-robin,
random, …; see :mod:`energyopt.baselines`) are priced once on the unswept problem and drawn as
points, so a planner sees what each point of accuracy or each tightening of the deadlines costs,
and where today's routing rules sit against the front.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .baselines import baseline_choice, baseline_names, evaluate_choice
from .errors import DataError
from .plan import load_inputs, plan
from .problem import build_problem

__all__ = ["VARY", "default_values", "sweep", "pareto_mask"]

VARY = ("min-mean-accuracy", "zeta", "deadline-scale")

SWEEP_COLUMNS = [
    "method", "vary", "value", "status", "queries", "total_energy_j", "total_energy_kwh", "token_weighted_mean_accuracy",
    "mean_accuracy", "deadlines_met", "queries_with_deadline", "accuracy_floors_met", "makespan_s", "gap",
    "total_s", "pareto",
]


def default_values(vary: str, *, base_accuracy: float | None = None, max_accuracy: float | None = None) -> list[float]:
    """The series swept when none is given.

    ``min-mean-accuracy``: 7 floors from the unconstrained plan's accuracy to the most a plan can
    reach; ``zeta``: 0, 0.1, …, 1; ``deadline-scale``: 0.5× to 4× the workload's deadlines.
    """
    if vary == "zeta":
        return [round(z, 2) for z in np.linspace(0, 1, 11)]
    if vary == "deadline-scale":
        return [0.5, 0.75, 1.0, 1.5, 2.0, 4.0]
    if vary == "min-mean-accuracy":
        if base_accuracy is None or max_accuracy is None:
            raise ValueError("base_accuracy and max_accuracy are needed")
        hi = max(max_accuracy, base_accuracy)
        return [float(v) for v in np.linspace(base_accuracy, hi, 7)]
    raise DataError(f"--vary must be one of {', '.join(VARY)}, got {vary!r}")


def _check_values(vary: str, values: Sequence[float]) -> None:
    if not len(values):
        raise DataError("--values: no values given")
    for v in values:
        if not np.isfinite(v):
            raise DataError(f"--values: {v} is not a finite number")
        if vary in ("min-mean-accuracy", "zeta") and not 0 <= v <= 1:
            raise DataError(f"--values: {v:g} is outside [0, 1], as {vary} must be")
        if vary == "deadline-scale" and not v > 0:
            raise DataError(f"--values: a deadline scale must be > 0, got {v:g}")


def pareto_mask(energy: np.ndarray, merit: np.ndarray) -> np.ndarray:
    """Points not dominated by another of no more energy and no less merit (one strictly better)."""
    e = np.asarray(energy, dtype=float)
    m = np.asarray(merit, dtype=float)
    ok = np.isfinite(e) & np.isfinite(m)
    out = np.zeros(len(e), dtype=bool)
    for i in np.flatnonzero(ok):
        dom = ok & (e <= e[i] + 1e-9) & (m >= m[i] - 1e-12) & ((e < e[i] - 1e-9) | (m > m[i] + 1e-12))
        out[i] = not dom.any()
    return out


def _row(method: str, vary: str, value: float, s: dict) -> dict:
    planned = s["status"] in ("optimal", "feasible")
    return {
        "method": method, "vary": vary, "value": value, "status": s["status"], "queries": s["queries"],
        "total_energy_j": s["total_energy_j"] if planned else np.nan,
        "total_energy_kwh": s["total_energy_kwh"] if planned else np.nan,
        "token_weighted_mean_accuracy": s["token_weighted_mean_accuracy"] if planned else np.nan,
        "mean_accuracy": s["mean_accuracy"] if planned else np.nan,
        "deadlines_met": s["deadlines_met"] if planned else np.nan,
        "queries_with_deadline": s["queries_with_deadline"],
        "accuracy_floors_met": s["assigned"] if planned else np.nan,
        "makespan_s": s["makespan_s"] if planned else np.nan,
        "gap": s["gap"] if planned else np.nan,
        "total_s": s["timings_s"].get("total_s", np.nan),
        "pareto": False,
    }


def sweep(
    workload,
    fleet,
    models,
    vary: str,
    values: Sequence[float] | None = None,
    *,
    baselines: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    **plan_kw,
) -> pd.DataFrame:
    """Solve the series and price the baselines; one row per plan or baseline (``SWEEP_COLUMNS``).

    ``plan_kw`` are :func:`~energyopt.plan.plan` options held fixed over the series (the swept
    one is set per point). ``zeta`` sweeps use the trade-off objective; the others minimise energy.
    """
    say = progress or (lambda s: None)
    if vary not in VARY:
        raise DataError(f"--vary must be one of {', '.join(VARY)}, got {vary!r}")
    wl, fl, fm = load_inputs(workload, fleet, models)
    kw = dict(plan_kw)
    if vary == "zeta":
        kw["objective"] = "tradeoff"
    has_dl = wl["deadline_s"].notna().to_numpy()
    if vary == "deadline-scale" and not has_dl.any():
        src = wl.attrs.get("source", "the workload")
        raise DataError(f"{src}: no query has a deadline_s; --vary deadline-scale needs deadlines to scale")
    rows: list[dict] = []
    base_problem = None
    if values is None and vary == "min-mean-accuracy":
        say("plan without an accuracy floor, to start the series ...")
        first = plan(wl, fl, fm, **{**kw, "min_mean_accuracy": None})
        s0 = first.summary()
        if s0["status"] not in ("optimal", "feasible"):
            raise DataError(f"no plan without an accuracy floor ({s0['status']}: {first.message}); nothing to sweep")
        base_problem = first.problem
        values = default_values(vary, base_accuracy=s0["token_weighted_mean_accuracy"],
                                max_accuracy=first.problem.max_mean_accuracy())
        rows.append(_row("optimal", vary, np.nan, s0))
        values = values[1:]  # the first floor is the unconstrained plan's own accuracy
    elif values is None:
        values = default_values(vary)
    values = [float(v) for v in values]
    _check_values(vary, values)
    for k, v in enumerate(values, 1):
        say(f"[{k}/{len(values)}] {vary} = {v:g} ...")
        pk = dict(kw)
        w = wl
        if vary == "min-mean-accuracy":
            pk["min_mean_accuracy"] = v
        elif vary == "zeta":
            pk["zeta"] = v
        else:
            w = wl.copy()
            w["deadline_s"] = wl["deadline_s"] * v
        sched = plan(w, fl, fm, **pk)
        s = sched.summary()
        say(f"[{k}/{len(values)}] {vary} = {v:g}: {s['status']}"
            + (f", {s['total_energy_kwh']:.6g} kWh, accuracy {s['token_weighted_mean_accuracy']:.4f}"
               if s["status"] in ("optimal", "feasible") else f" ({sched.message[:120]})"))
        rows.append(_row("optimal", vary, v, s))
        if base_problem is None and vary != "deadline-scale":
            base_problem = sched.problem
    out = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    opt = out["method"] == "optimal"
    if vary == "deadline-scale":  # tighter (smaller scale) is better
        merit = -out["value"].to_numpy(dtype=float)
    else:
        merit = out["token_weighted_mean_accuracy"].to_numpy(dtype=float)
    out.loc[opt, "pareto"] = pareto_mask(out.loc[opt, "total_energy_j"].to_numpy(), merit[opt.to_numpy()])
    if baselines:
        if base_problem is None:
            base_problem = build_problem(wl, fl, fm, objective=kw.get("objective", "energy"),
                                         zeta=kw.get("zeta", 0.5), idle=kw.get("idle", False))
        brows = []
        for name in baseline_names(base_problem):
            r = evaluate_choice(base_problem, name, baseline_choice(base_problem, name, seed=seed))
            brows.append({
                "method": name, "vary": vary, "value": 1.0 if vary == "deadline-scale" else np.nan,
                "status": "baseline" if r.unrouted == 0 else f"baseline ({r.unrouted} unrouted)",
                "queries": base_problem.n_queries,
                "total_energy_j": r.total_energy_j, "total_energy_kwh": r.total_energy_j / 3.6e6,
                "token_weighted_mean_accuracy": r.token_weighted_mean_accuracy, "mean_accuracy": np.nan,
                "deadlines_met": r.deadlines_met, "queries_with_deadline": r.queries_with_deadline,
                "accuracy_floors_met": r.accuracy_floors_met, "makespan_s": r.makespan_s, "gap": np.nan,
                "total_s": np.nan, "pareto": False,
            })
        out = pd.concat([out, pd.DataFrame(brows, columns=SWEEP_COLUMNS)], ignore_index=True)
    return out
