"""Series of plans: the least-energy (or, with signals, least-carbon or least-cost) plan over
accuracy floors, ζ values, deadline scales, completion windows or a pool's power cap, and the
marginal energy cost of accuracy above one plan.

Each point of a series is a full plan (same solver, same checks). The baselines (round-robin,
random, …; see :mod:`energyopt.methods.baselines`) are planned once on the unswept problem,
through the same packing and checker as every plan, and drawn as points, so a planner sees what
each point of accuracy or each tightening of the deadlines costs, and where today's routing
rules sit against the front.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .accounting import relative_gap, within_gap
from .compare import plan_prices
from .errors import DataError
from .inputs import load_inputs
from .methods import Limits
from .methods.baselines import baseline_choice, baseline_names
from .methods.strong import remembered_cuts
from .plan import plan, schedule_choice
from .problem import Problem, build_problem
from .schedule import Schedule, Summary, engine_totals
from .schema import SWEEP_COLUMNS, BoundSource, Status, Termination
from .signals import Signals
from .timeslots import SLOT_OBJECTIVES, slot_prices

__all__ = ["VARY", "default_values", "sweep", "pareto_mask", "accuracy_cost", "baseline_rows"]

VARY = ("min-mean-accuracy", "zeta", "deadline-scale", "deadline-window", "power-cap")
#: the series that may plan for carbon or cost (per time slot); accuracy floors and ζ may not yet
SLOT_VARY = ("deadline-scale", "deadline-window", "power-cap")
S_PER_H = 3600.0

Progress = Callable[[str], None]


def default_values(vary: str, *, base_accuracy: float | None = None, max_accuracy: float | None = None) -> list[float]:
    """The series swept when none is given.

    ``min-mean-accuracy``: 7 floors from the unconstrained plan's accuracy to the most a plan can
    reach; ``zeta``: 0, 0.1, …, 1; ``deadline-scale``: 0.5× to 4× the workload's deadlines;
    ``deadline-window``: 1, 2, 4, 8, 12, 24 hours. ``power-cap`` has none (its watts depend on the pool).
    """
    if vary == "zeta":
        return [round(z, 2) for z in np.linspace(0, 1, 11)]
    if vary == "deadline-scale":
        return [0.5, 0.75, 1.0, 1.5, 2.0, 4.0]
    if vary == "deadline-window":
        return [1.0, 2.0, 4.0, 8.0, 12.0, 24.0]
    if vary == "power-cap":
        raise DataError("--vary power-cap: give --values W,... (the pool's power_cap_w per plan, in watts)")
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
        if vary == "deadline-window" and not v > 0:
            raise DataError(f"--values: a completion window must be > 0 hours, got {v:g}")
        if vary == "power-cap" and not v > 0:
            raise DataError(f"--values: a power cap must be > 0 W, got {v:g}")


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


def point_inputs(workload: pd.DataFrame, fleet: Any, vary: str, value: float, pool: str | None = None,
                 site: str | None = None) -> tuple[pd.DataFrame, Any]:
    """The workload and fleet of one point of a ``deadline-scale``, ``deadline-window`` or
    ``power-cap`` series (the others change a plan option, not the inputs).

    ``deadline-scale``: every deadline_s times ``value``. ``deadline-window``: ``value`` hours
    ``W`` is the batch's completion window: each query's deadline_s becomes min(its own, W) (W
    where it has none) and the fleet's horizon_s is W. ``power-cap``: ``pool``'s (or ``site``'s)
    power_cap_w is ``value`` [W].
    """
    if vary == "deadline-scale":
        w = workload.copy()
        w["deadline_s"] = workload["deadline_s"] * value
        return w, fleet
    if vary == "deadline-window":
        window_s = value * S_PER_H
        w = workload.copy()
        w["deadline_s"] = workload["deadline_s"].fillna(window_s).clip(upper=window_s)
        return w, dataclasses.replace(fleet, horizon_s=window_s)
    if vary == "power-cap" and site is not None:
        sites = {**fleet.sites, site: dataclasses.replace(fleet.sites[site], power_cap_w=value)}
        return workload, dataclasses.replace(fleet, sites=sites)
    if vary == "power-cap":
        assert pool is not None
        pools = {**fleet.pools, pool: dataclasses.replace(fleet.pools[pool], power_cap_w=value)}
        return workload, dataclasses.replace(fleet, pools=pools)
    return workload, fleet


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
        "engine_deadlines_met": s.engine_deadlines_met if planned and s.engine_deadlines_met is not None else nan,
        "queries_with_deadline": s.queries_with_deadline,
        "accuracy_floors_met": s.accuracy_floors_met if planned else nan,
        "makespan_s": s.makespan_s if planned else nan,
        "gap": s.gap if planned else nan,
        "total_s": s.timings_s.get("total_s", nan),
        "pareto": False, "kg_co2e": nan, "cost": nan, "reason": "",
    }


def baseline_rows(problem: Problem, vary: str, *, seed: int = 0, signals: Signals | None = None,
                  progress: Progress | None = None) -> list[dict[str, Any]]:
    """One row per routing rule, planned (packed, priced, checked) on ``problem``; with
    ``signals`` also priced per time slot (``kg_co2e``, ``cost``) as ``compare`` prices it."""
    say = progress or (lambda s: None)
    rows = []
    for name in baseline_names(problem):
        choice = baseline_choice(problem, name, seed=seed)
        sched = schedule_choice(problem, choice)
        s = sched.summary()
        assert choice.dep_of_q is not None
        unrouted = int((choice.dep_of_q < 0).sum())
        r = _row(name, vary, 1.0 if vary == "deadline-scale" else np.nan, s)
        r.update(status="baseline" if unrouted == 0 else f"baseline ({unrouted} unrouted)", mean_accuracy=np.nan,
                 deadlines_met=s.deadlines_met, accuracy_floors_met=s.accuracy_floors_met, gap=np.nan, total_s=np.nan,
                 queries_with_deadline=int(problem.queries["deadline_s"].notna().sum()))
        if signals is not None:
            r.update(plan_prices(dataclasses.replace(sched, signals=signals), _priced(signals), say, name))
        rows.append(r)
    return rows


def _priced(signals: Signals | None) -> list[str]:
    """The sweep.csv columns the signals price: kg_co2e where they have carbon, cost where price."""
    if signals is None:
        return []
    return [c for c, has in (("kg_co2e", signals.carbon_g_per_kwh is not None),
                             ("cost", signals.price_per_kwh is not None)) if has]


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
    pool: str | None = None,
    signals: Signals | None = None,
    site: str | None = None,
    **plan_kw: Any,
) -> pd.DataFrame:
    """Solve the series and plan the baselines; one row per plan or baseline (``SWEEP_COLUMNS``).

    ``plan_kw`` are :func:`~energyopt.plan.plan` options held fixed over the series (the swept
    one is set per point); a time limit holds per plan. ``zeta`` sweeps use the trade-off
    objective; the others minimise energy, or with ``objective`` ``carbon``/``cost`` (``SLOT_VARY``
    series only) the kgCO2e or cost under ``signals`` (loaded :class:`~energyopt.signals.Signals`),
    planned per time slot. ``pool`` (or ``site``) names the pool (site) of a ``power-cap`` series. With ``signals``
    every plan and baseline is also priced per slot (``kg_co2e``, ``cost``). A point without a
    plan keeps its row, with its status and ``reason``.
    """
    if vary not in VARY:
        raise DataError(f"--vary must be one of {', '.join(VARY)}, got {vary!r}")
    objective = plan_kw.get("objective", "energy")
    if objective in SLOT_OBJECTIVES and vary not in (*SLOT_VARY, "min-mean-accuracy"):
        raise DataError(f"--objective {objective}: --vary {vary} plans for energy only so far; use --vary "
                        f"{', '.join(SLOT_VARY)} or min-mean-accuracy to plan for {objective}")
    if pool is not None and site is not None:
        raise DataError("--pool NAME and --site NAME: give one (the pool or the site whose power_cap_w is swept)")
    if (vary == "power-cap") != (pool is not None or site is not None):
        raise DataError("--pool NAME (or --site NAME): give it with --vary power-cap (the pool or site whose power_cap_w "
                        "is swept), and only then")
    # the plans of a series share their model's layout: each starts from the cuts of the one before
    with remembered_cuts():
        return _sweep(workload, fleet, models, vary, values, baselines=baselines, seed=seed, progress=progress,
                      pool=pool, site=site, signals=signals, **plan_kw)


def _sweep(workload: Any, fleet: Any, models: Any, vary: str, values: Sequence[float] | None, *, baselines: bool,
           seed: int, progress: Progress | None, pool: str | None, signals: Signals | None,
           site: str | None = None, **plan_kw: Any) -> pd.DataFrame:
    say = progress or (lambda s: None)
    wl, fl, fm = load_inputs(workload, fleet, models)
    kw = dict(plan_kw)
    if vary == "zeta":
        kw["objective"] = "tradeoff"
    has_dl = wl["deadline_s"].notna().to_numpy()
    if vary == "deadline-scale" and not has_dl.any():
        src = wl.attrs.get("source", "the workload")
        raise DataError(f"{src}: no query has a deadline_s; --vary deadline-scale needs deadlines to scale")
    if pool is not None and pool not in fl.pools:
        raise DataError(f"{fl.source}: --pool {pool!r}: no such pool; expected one of {', '.join(fl.pools)}")
    if site is not None and site not in fl.sites:
        raise DataError(f"{fl.source}: --site {site!r}: no such site; expected one of the fleet's [sites] "
                        f"({', '.join(fl.sites) or 'none defined'})")
    if signals is not None:
        kw["signals"] = signals
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
    _check_points(wl, fl, vary, values, pool, signals, kw.get("objective", "energy"), site)
    # ζ from the energy end down: the lane cuts each plan finds are remembered for the next, and those
    # of the plans that weigh accuracy more are the ones the accuracy end needs (measured on the
    # example: ζ = 0 first took three rounds of cuts, 60 s; after ζ = 0.1 one round)
    order = sorted(range(len(values)), key=lambda i: -values[i]) if vary == "zeta" else range(len(values))
    done: dict[int, Schedule] = {}
    for k, i in enumerate(order, 1):
        v = values[i]
        say(f"[{k}/{len(values)}] {vary} = {v:g} ...")
        done[i] = _point(wl, fl, fm, vary, v, pool, site, kw, f"[{k}/{len(values)}]", say)
        if base_problem is None and vary in ("min-mean-accuracy", "zeta"):
            base_problem = done[i].problem
    scheds = [done[i] for i in range(len(values))]
    if vary == "zeta":  # one feasible set, ζ weighs its objective: each point takes the series' best plan for it
        scheds = best_of_series(scheds, values, say, mip_rel_gap=kw.get("mip_rel_gap", 1e-4))
    rows += [_point_row(vary, v, s, signals, say) for v, s in zip(values, scheds)]
    out = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    opt = out["method"] == "optimal"
    if vary in SLOT_VARY:  # a tighter deadline, window or cap (smaller value) is better
        merit = -out["value"].to_numpy(dtype=float)
    else:
        merit = out["token_weighted_mean_accuracy"].to_numpy(dtype=float)
    # the front is over what the plans minimise: kgCO2e or cost when they plan for it, else energy
    spent = {"carbon": "kg_co2e", "cost": "cost"}.get(kw.get("objective", "energy"), "total_energy_j")
    out.loc[opt, "pareto"] = pareto_mask(out.loc[opt, spent].to_numpy(dtype=float), merit[opt.to_numpy()])
    if baselines:
        if base_problem is None:
            objective = kw.get("objective", "energy")
            base_problem = build_problem(wl, fl, fm, objective="energy" if objective in SLOT_OBJECTIVES else objective,
                                         zeta=kw.get("zeta", 0.5), idle=kw.get("idle", False),
                                         strict_range=kw.get("strict_range", False))
        b_rows = baseline_rows(base_problem, vary, seed=seed, signals=signals, progress=say)
        out = pd.concat([out, pd.DataFrame(b_rows, columns=list(SWEEP_COLUMNS))], ignore_index=True)
    return out


def _point(wl: pd.DataFrame, fl: Any, fm: Any, vary: str, v: float, pool: str | None, site: str | None,
           kw: dict[str, Any], tag: str, say: Progress) -> Schedule:
    """One point of the series: its plan (or, without one, its status and reasons)."""
    pk = dict(kw)
    if vary == "min-mean-accuracy":
        pk["min_mean_accuracy"] = v
    elif vary == "zeta":
        pk["zeta"] = v
    w, f = point_inputs(wl, fl, vary, v, pool, site)
    sched = plan(w, f, fm, **pk)
    s = sched.summary()
    say(f"{tag} {vary} = {v:g}: {s.status}"
        + (f", {s.total_energy_kwh:.6g} kWh, accuracy {s.token_weighted_mean_accuracy:.4f}"
           if s.status.has_plan else f" ({short_reason(sched.message)})"))
    return sched


def _point_row(vary: str, v: float, sched: Schedule, signals: Signals | None, say: Progress) -> dict[str, Any]:
    """A point's row (priced per slot under ``signals``; without a plan, its status and reason)."""
    s = sched.summary()
    row = _row("optimal", vary, v, s)
    if s.status.has_plan:
        row.update(plan_prices(sched, _priced(signals), say, f"{vary} = {v:g}"))
    else:
        row["reason"] = sched.message
    return row


def concave_bounds(values: Sequence[float], bounds: Sequence[float]) -> np.ndarray:
    """Each point's lower bound, raised by its neighbours' where the optimum is concave in the swept
    value: the optimum at ζ is the least of ζ·e(x) − (1 − ζ)·a(x) over one set of plans x, a minimum
    of affine functions, so for a < ζ < b it is at least the chord λ·g(a) + (1 − λ)·g(b) and thus at
    least λ·bound(a) + (1 − λ)·bound(b) (λ = (b − ζ) / (b − a))."""
    v = np.asarray(values, dtype=float)
    lb = np.asarray(bounds, dtype=float)
    out = lb.copy()
    for i in range(len(v)):
        for a in range(len(v)):
            for b in range(len(v)):
                if not (v[a] < v[i] < v[b]) or not (np.isfinite(lb[a]) and np.isfinite(lb[b])):
                    continue
                lam = (v[b] - v[i]) / (v[b] - v[a])
                out[i] = max(out[i], lam * lb[a] + (1 - lam) * lb[b])
    return out


def best_of_series(scheds: Sequence[Schedule], values: Sequence[float], say: Progress, *,
                   mip_rel_gap: float = 1e-4) -> list[Schedule]:
    """Each point's plan, or where another point's plan is better under this point's objective, that
    plan (priced, checked again and given its gap against this point's own bound). For series whose
    points share one set of feasible plans and differ in their objective only (ζ): each plan of the
    series is then a plan of every point. Where batched instances are timed as a continuous-batching
    engine runs them, another point's plan is taken only where it meets at least as many deadlines
    there: the objectives and bounds are the lane model's, which does not see the engine (measured
    on the example: the plan of ζ = 0.7 was 0.1-0.4% better for ζ = 0.1-0.5 than their own plans,
    which meet all 206 deadlines on the engine, and ends 89 of them late there)."""
    from .packing import assignment_objective
    from .plan import check_assignment

    planned = [(k, s) for k, s in enumerate(scheds) if s.status.has_plan and not s.check_violations]
    engine_met = {k: engine_totals(s.assignment)[1] for k, s in planned}
    out = list(scheds)
    # a bound of +inf (a verdict of infeasibility) or NaN is no bound where a plan of the series passed
    # its check: that plan is a plan of every point (the verdict was wrong); it counts as -inf
    own = [s.bound if s.bound < np.inf or not planned else -np.inf for s in scheds]
    chord = concave_bounds(values, own)
    for i, s in enumerate(scheds):
        if s.problem.slots is not None:
            continue
        # the chord passes the point's own plan by rounding at most (the optimum is at most that plan)
        raised = min(chord[i], s.objective) if s.status.has_plan else chord[i]
        if raised > s.bound:
            say(f"ζ = {values[i]:g}: bound {raised:.8g} from the bounds on either side (was {s.bound:.8g})")
            s = dataclasses.replace(s, bound=raised, bound_source=BoundSource.SERIES)
            if s.status.has_plan:
                optimal = within_gap(s.objective, s.bound, mip_rel_gap)
                s = dataclasses.replace(s, status=Status.OPTIMAL if optimal else s.status,
                                        termination=Termination.OPTIMAL if optimal else s.termination)
            out[i] = s
        best_obj, best_k = (s.objective if s.status.has_plan else np.inf), None
        own_met = engine_met.get(i)
        for k, other in planned:
            if k == i or (own_met is not None and (engine_met[k] or 0) < own_met):
                continue
            obj = assignment_objective(s.problem, other.assignment)
            if obj < best_obj - 1e-12 * max(1.0, abs(obj)):
                best_obj, best_k = obj, k
        if best_k is None:
            continue
        other = scheds[best_k]
        violations = check_assignment(s.problem, other.assignment)
        if violations:  # not expected (same inputs, same checks): the point keeps its own result
            say(f"ζ = {values[i]:g}: the plan of ζ = {values[best_k]:g} fails this point's check: {violations[0]}")
            continue
        # the point's bound, or where it said infeasible (refuted by this plan) what the chords give
        proven = s.bound if s.bound < np.inf else chord[i]
        source = s.bound_source if s.bound < np.inf else (BoundSource.SERIES if chord[i] > -np.inf else BoundSource.NONE)
        bound = min(proven, best_obj) if not math.isnan(proven) else -np.inf
        optimal = within_gap(best_obj, bound, mip_rel_gap)
        was = f"{s.objective:.6g}" if s.status.has_plan else f"no plan ({s.status})"
        say(f"ζ = {values[i]:g}: the plan of ζ = {values[best_k]:g} is better under this point's objective "
            f"({best_obj:.6g}, was {was}); gap {relative_gap(best_obj, bound):.4%}")
        out[i] = dataclasses.replace(
            other, problem=s.problem, status=Status.OPTIMAL if optimal else Status.FEASIBLE, objective=best_obj,
            bound=bound, bound_source=source, timings_s=s.timings_s, settings=s.settings,
            termination=Termination.OPTIMAL if optimal else Termination.FEASIBLE, unplaced=[], check_violations=[],
            message=f"the plan of zeta = {values[best_k]:g} of this series, better under this point's objective "
                    f"than the plan made for it")
    return out


def _check_points(wl: pd.DataFrame, fl: Any, vary: str, values: Sequence[float], pool: str | None,
                  signals: Signals | None, objective: str, site: str | None = None) -> None:
    """Before any solving: each point planned per time slot (carbon, cost, or a capped pool) has
    signals that cover its horizon, with the objective's column (else a one-line error)."""
    for v in values:
        _, f = point_inputs(wl, fl, vary, v, pool, site)
        slotted = objective in SLOT_OBJECTIVES or f.has_power_caps
        if not slotted:
            continue
        slot_prices(f, signals, objective if objective in SLOT_OBJECTIVES else "energy")
        if signals is not None:
            signals.check_covers(f.horizon_s, f"the horizon at {vary} = {v:g}")


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
