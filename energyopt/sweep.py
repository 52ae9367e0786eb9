"""Series of plans: the least-energy plan over accuracy floors, ζ values or deadline scales, and the
marginal energy cost of accuracy above one plan.

Each point of a series is a full plan (same solver, same checks). The baselines (round-robin,
random, …; see :mod:`energyopt.methods.baselines`) are planned once on the unswept problem,
through the same packing and checker as every plan, and drawn as points, so a planner sees what
each point of accuracy or each tightening of the deadlines costs, and where today's routing
rules sit against the front.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .inputs import load_inputs
from .methods import Limits
from .methods.baselines import baseline_choice, baseline_names
from .methods.strong import remembered_cuts
from .plan import plan, schedule_choice
from .problem import Problem, build_problem
from .schedule import Schedule, Summary
from .schema import SWEEP_COLUMNS

__all__ = ["VARY", "default_values", "sweep", "pareto_mask", "accuracy_cost", "baseline_rows"]

VARY = ("min-mean-accuracy", "zeta", "deadline-scale")

Progress = Callable[[str], None]


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


def _row(method: str, vary: str, value: float, s: Summary) -> dict[str, Any]:
    planned = s.status.has_plan
    nan = np.nan
    return {
        "method": method, "vary": vary, "value": value, "status": str(s.status), "queries": s.queries,
        "total_energy_j": s.total_energy_j if planned else nan,
        "total_energy_kwh": s.total_energy_kwh if planned else nan,
        "token_weighted_mean_accuracy": s.token_weighted_mean_accuracy if planned else nan,
        "mean_accuracy": s.mean_accuracy if planned else nan,
        "deadlines_met": s.deadlines_met if planned else nan,
        "queries_with_deadline": s.queries_with_deadline,
        "accuracy_floors_met": s.accuracy_floors_met if planned else nan,
        "makespan_s": s.makespan_s if planned else nan,
        "gap": s.gap if planned else nan,
        "total_s": s.timings_s.get("total_s", nan),
        "pareto": False,
    }


def baseline_rows(problem: Problem, vary: str, *, seed: int = 0) -> list[dict[str, Any]]:
    """One row per routing rule, planned (packed, priced, checked) on ``problem``."""
    rows = []
    for name in baseline_names(problem):
        choice = baseline_choice(problem, name, seed=seed)
        s = schedule_choice(problem, choice).summary()
        assert choice.dep_of_q is not None
        unrouted = int((choice.dep_of_q < 0).sum())
        r = _row(name, vary, 1.0 if vary == "deadline-scale" else np.nan, s)
        r.update(status="baseline" if unrouted == 0 else f"baseline ({unrouted} unrouted)", mean_accuracy=np.nan,
                 deadlines_met=s.deadlines_met, accuracy_floors_met=s.accuracy_floors_met, gap=np.nan, total_s=np.nan,
                 queries_with_deadline=int(problem.queries["deadline_s"].notna().sum()))
        rows.append(r)
    return rows


def sweep(
    workload: Any,
    fleet: Any,
    models: Any,
    vary: str,
    values: Sequence[float] | None = None,
    *,
    baselines: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
    **plan_kw: Any,
) -> pd.DataFrame:
    """Solve the series and plan the baselines; one row per plan or baseline (``SWEEP_COLUMNS``).

    ``plan_kw`` are :func:`~energyopt.plan.plan` options held fixed over the series (the swept
    one is set per point); a time limit holds per plan. ``zeta`` sweeps use the trade-off
    objective; the others minimise energy.
    """
    if vary not in VARY:
        raise DataError(f"--vary must be one of {', '.join(VARY)}, got {vary!r}")
    # the plans of a series share their model's layout: each starts from the cuts of the one before
    with remembered_cuts():
        return _sweep(workload, fleet, models, vary, values, baselines=baselines, seed=seed, progress=progress,
                      **plan_kw)


def _sweep(workload: Any, fleet: Any, models: Any, vary: str, values: Sequence[float] | None, *, baselines: bool,
           seed: int, progress: Progress | None, **plan_kw: Any) -> pd.DataFrame:
    say = progress or (lambda s: None)
    wl, fl, fm = load_inputs(workload, fleet, models)
    kw = dict(plan_kw)
    if vary == "zeta":
        kw["objective"] = "tradeoff"
    has_dl = wl["deadline_s"].notna().to_numpy()
    if vary == "deadline-scale" and not has_dl.any():
        src = wl.attrs.get("source", "the workload")
        raise DataError(f"{src}: no query has a deadline_s; --vary deadline-scale needs deadlines to scale")
    rows: list[dict[str, Any]] = []
    base_problem = None
    if values is None and vary == "min-mean-accuracy":
        say("plan without an accuracy floor, to start the series ...")
        first = plan(wl, fl, fm, **{**kw, "min_mean_accuracy": None})
        s0 = first.summary()
        if not s0.status.has_plan:
            raise DataError(f"no plan without an accuracy floor ({s0.status}: {first.message}); nothing to sweep")
        base_problem = first.problem
        assert s0.token_weighted_mean_accuracy is not None
        values = default_values(vary, base_accuracy=s0.token_weighted_mean_accuracy,
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
        say(f"[{k}/{len(values)}] {vary} = {v:g}: {s.status}"
            + (f", {s.total_energy_kwh:.6g} kWh, accuracy {s.token_weighted_mean_accuracy:.4f}"
               if s.status.has_plan else f" ({short_reason(sched.message)})"))
        rows.append(_row("optimal", vary, v, s))
        if base_problem is None and vary != "deadline-scale":
            base_problem = sched.problem
    out = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    opt = out["method"] == "optimal"
    if vary == "deadline-scale":  # tighter (smaller scale) is better
        merit = -out["value"].to_numpy(dtype=float)
    else:
        merit = out["token_weighted_mean_accuracy"].to_numpy(dtype=float)
    out.loc[opt, "pareto"] = pareto_mask(out.loc[opt, "total_energy_j"].to_numpy(), merit[opt.to_numpy()])
    if baselines:
        if base_problem is None:
            base_problem = build_problem(wl, fl, fm, objective=kw.get("objective", "energy"),
                                         zeta=kw.get("zeta", 0.5), idle=kw.get("idle", False),
                                         strict_range=kw.get("strict_range", False))
        out = pd.concat([out, pd.DataFrame(baseline_rows(base_problem, vary, seed=seed), columns=list(SWEEP_COLUMNS))],
                        ignore_index=True)
    return out


def short_reason(message: str, width: int = 160) -> str:
    """A reason for a progress line: whole, or shortened at a word with " ..." (never mid-word)."""
    return textwrap.shorten(message, width, placeholder=" ...")


def accuracy_cost(schedule: Schedule, *, steps: int = 5, limits: Limits | None = None, progress: Progress | None = None,
                  **plan_kw: Any) -> pd.DataFrame:
    """Least energy at ``steps`` raised accuracy floors above the plan's, and the marginal cost.

    Row 0 is the plan itself. Each further row is a plan at a token-weighted accuracy floor
    evenly spaced up to the most the fleet can reach (every query on its most accurate option);
    ``marginal_j_per_point`` is the energy added per 0.01 of accuracy since the previous feasible
    row. The plans minimise energy (a trade-off plan's curve is that of its energy). ``limits``
    is shared by the whole series (e.g. what is left of the command's time limit): once it is
    spent, the remaining floors get the status "skipped: time limit".
    """
    say = progress or (lambda s: None)
    s = schedule.summary()
    problem = schedule.problem
    assert problem.inputs is not None
    wl, fl, fm = problem.inputs
    a0 = s.token_weighted_mean_accuracy
    a_max = problem.max_mean_accuracy()
    rows = [{"min_mean_accuracy": s.min_mean_accuracy, "status": str(s.status), "token_weighted_mean_accuracy": a0,
             "total_energy_j": s.total_energy_j, "marginal_j_per_point": np.nan}]
    kw = {k: v for k, v in plan_kw.items() if k not in ("objective", "zeta", "min_mean_accuracy")}
    kw.setdefault("idle", problem.idle)
    kw.setdefault("strict_range", problem.strict_range)
    if a0 is not None and a_max > a0 + 1e-6:
        with remembered_cuts():
            rows += _accuracy_rows(wl, fl, fm, a0, a_max, steps, limits, say, kw)
    t = pd.DataFrame(rows)
    prev = None
    for i, r in t.iterrows():
        if not np.isfinite(r["total_energy_j"]):
            continue
        if prev is not None:
            da = r["token_weighted_mean_accuracy"] - t.at[prev, "token_weighted_mean_accuracy"]
            if da > 1e-9:
                t.at[i, "marginal_j_per_point"] = (r["total_energy_j"] - t.at[prev, "total_energy_j"]) / (da * 100)
        prev = i
    return t


def _accuracy_rows(wl: Any, fl: Any, fm: Any, a0: float, a_max: float, steps: int, limits: Limits | None, say: Progress,
                   kw: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of :func:`accuracy_cost` above the plan's own: one plan per raised floor."""
    rows: list[dict[str, Any]] = []
    for k, floor in enumerate(np.linspace(a0, a_max, steps + 1)[1:], 1):
        if limits is not None and limits.expired():
            rows.append({"min_mean_accuracy": float(floor), "status": "skipped: time limit",
                         "token_weighted_mean_accuracy": np.nan, "total_energy_j": np.nan,
                         "marginal_j_per_point": np.nan})
            continue
        say(f"accuracy cost [{k}/{steps}]: least energy at token-weighted accuracy >= {floor:.4f} ...")
        o = plan(wl, fl, fm, objective="energy", min_mean_accuracy=min(float(floor), 1.0), limits=limits, **kw).summary()
        ok = o.status.has_plan
        rows.append({"min_mean_accuracy": float(floor), "status": str(o.status),
                     "token_weighted_mean_accuracy": o.token_weighted_mean_accuracy if ok else np.nan,
                     "total_energy_j": o.total_energy_j if ok else np.nan, "marginal_j_per_point": np.nan})
    return rows
