"""``plan()``: check inputs → build the problem → solve → schedule → independent check."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .check import check_plan
from .errors import DataError
from .modelstore import FittedModels
from .fleet import Fleet, read_fleet
from .decompose import fix_and_solve, lagrangian_bound, plan_gap
from .formulation import build_matrix, choose_formulation
from .io import read_workload
from .problem import Problem, build_problem
from .schedule import Schedule, Timeline, assignment_table, pack, plan_objective
from .schema import ASSIGNMENT_COLUMNS, Status
from .solvers import get_solver
from .solvers.watchdog import solve_with_watchdog

__all__ = ["plan", "explain_infeasible", "load_inputs"]


def load_inputs(workload, fleet, models) -> tuple[pd.DataFrame, Fleet, FittedModels]:
    """Accept paths or loaded objects for the three inputs."""
    wl = read_workload(workload) if isinstance(workload, (str, Path)) else workload
    fl = read_fleet(fleet) if isinstance(fleet, (str, Path)) else fleet
    fm = FittedModels.load(models) if isinstance(models, (str, Path)) else models
    return wl, fl, fm


def _prefix_shortage(work: np.ndarray, deadlines: np.ndarray, servers: float) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Work due by each deadline (sorted) against ``servers`` × deadline: cumulative work, the
    sorted deadlines, and the index of the worst shortage (None if nothing is short)."""
    order = np.argsort(deadlines)
    cum = np.cumsum(work[order])
    due = deadlines[order]
    short = cum - servers * due
    j = int(np.argmax(short))
    return cum, due, (j if short[j] > 1e-9 else None)


def explain_infeasible(problem: Problem) -> list[str]:
    """Reasons no plan exists: unservable queries, an accuracy floor out of reach, short pools."""
    out = [f"query {r.query_id}: {r.reason}" for r in problem.unservable.itertuples()]
    if out:
        return out
    cand = problem.cand
    q = problem.queries
    if problem.min_mean_accuracy is not None:
        reach = problem.max_mean_accuracy()
        if reach < problem.min_mean_accuracy:
            out.append(f"token-weighted mean accuracy can reach at most {reach:.4f} (every query on its most "
                       f"accurate option), below the floor {problem.min_mean_accuracy}")
    deps = problem.deployments
    # queries that only one deployment can serve, against that deployment's instances
    n_dep = cand.groupby("q")["d"].nunique()
    min_inst: dict[int, int] = {}
    single = cand[cand["q"].isin(n_dep.index[(n_dep == 1).to_numpy()])]
    for d, sel in single.groupby("d"):
        m = int(deps["max_instances"].iloc[d])
        cum, due, worst = _prefix_shortage(sel["runtime_s"].to_numpy(), sel["deadline_eff_s"].to_numpy(), m)
        if worst is not None:
            out.append(f"{deps['deployment'].iloc[d]}: queries only it can serve need {cum[worst]:.1f} instance-seconds by "
                       f"t = {due[worst]:.1f} s, but its {m} instances offer {m * due[worst]:.1f} "
                       f"(short by {cum[worst] - m * due[worst]:.1f} s)")
        min_inst[d] = int(np.ceil(np.max(cum / due) - 1e-9))
    pool_of = deps["device"].to_numpy()
    k_all = deps["devices_per_instance"].to_numpy()
    for pool, cnt in zip(problem.pools["pool"], problem.pools["count"]):
        need = {d: n * int(k_all[d]) for d, n in min_inst.items() if pool_of[d] == pool and n > 0}
        if sum(need.values()) > cnt:
            parts = ", ".join(f"{deps['deployment'].iloc[d]} at least {min_inst[d]} instances ({n} devices)" for d, n in need.items())
            out.append(f"pool {pool}: the queries only one deployment can serve need {parts}; the pool has {cnt} devices")
    if out:
        return out
    cand_pool = pool_of[cand["d"].to_numpy()]
    n_pools = cand.assign(pool=cand_pool).groupby("q")["pool"].nunique()
    one_pool = cand["q"].isin(n_pools.index[(n_pools == 1).to_numpy()])
    for pool, cnt in zip(problem.pools["pool"], problem.pools["count"]):
        sel = cand[one_pool & (cand_pool == pool)]
        if sel.empty:
            continue
        need = (sel["runtime_s"] * k_all[sel["d"].to_numpy()]).groupby(sel["q"]).min()
        cum, due, worst = _prefix_shortage(need.to_numpy(), q["deadline_eff_s"].to_numpy()[need.index], cnt)
        if worst is not None:
            out.append(f"pool {pool}: queries only it can serve need at least {cum[worst]:.1f} device-seconds by "
                       f"t = {due[worst]:.1f} s, but its {cnt} devices offer {cnt * due[worst]:.1f} "
                       f"(short by {cum[worst] - cnt * due[worst]:.1f} device-seconds)")
    if not out:
        out.append("capacity and deadlines together cannot be met: instances are too few for the work due "
                   "before some deadlines (relax deadlines, add devices, or allow more instances)")
    return out


def plan(
    workload,
    fleet,
    models,
    *,
    solver: str = "auto",
    objective: str = "energy",
    zeta: float = 0.5,
    idle: bool = False,
    min_mean_accuracy: float | None = None,
    time_limit_s: float | None = None,
    mip_rel_gap: float = 1e-4,
    formulation: str = "auto",
    threads: int = 2,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Schedule:
    """The plan of least energy (or best trade-off) for a workload on a fleet.

    ``workload``, ``fleet`` and ``models`` are paths or loaded objects. Returns a
    :class:`~energyopt.schedule.Schedule` whose ``status`` is optimal (within ``mip_rel_gap``),
    feasible (with a proven gap), or infeasible (``message`` says why); never raises for an
    infeasible instance. ``time_limit_s`` bounds the solver's search.
    """
    say = progress or (lambda s: None)
    t = {"start": time.perf_counter()}
    wl, fl, fm = load_inputs(workload, fleet, models)
    if time_limit_s is not None and not time_limit_s > 0:
        raise DataError(f"time limit must be > 0 s, got {time_limit_s}")
    problem = build_problem(wl, fl, fm, objective=objective, zeta=zeta, idle=idle, min_mean_accuracy=min_mean_accuracy)
    t["build"] = time.perf_counter()
    say(f"problem: {problem.n_queries} queries, {problem.n_deployments} deployments, {problem.n_options} options")
    backend = get_solver(solver)
    def timings(**extra: float) -> dict[str, float]:
        keys = ["start", "build", "matrix", "solve", "schedule", "check"]
        have = [k for k in keys if k in t]
        out = {f"{b}_s": round(t[b] - t[a], 4) for a, b in zip(have, have[1:])}
        out["total_s"] = round(time.perf_counter() - t["start"], 4)
        return {**out, **extra}

    if len(problem.unservable):
        msg = "; ".join(explain_infeasible(problem)[:10])
        return _no_plan(problem, Status.INFEASIBLE, backend.name, math.inf, "none", "none", timings(),
                        message=f"{len(problem.unservable)} queries have no feasible option: {msg}")
    if choose_formulation(problem, formulation) == "decompose":
        return _plan_decomposed(problem, backend, wl, fl, fm, t, timings, say, time_limit_s=time_limit_s,
                                mip_rel_gap=mip_rel_gap, check=check, min_mean_accuracy=min_mean_accuracy)
    model = build_matrix(problem, formulation)
    t["matrix"] = time.perf_counter()
    say(f"model: {model.kind} formulation, {model.n_vars} variables, {model.A.shape[0]} rows; solving with {backend.name}")
    res = solve_with_watchdog(backend, model, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, threads=threads)
    t["solve"] = time.perf_counter()
    say(f"{backend.name}: {res.status} in {res.time_s:.2f} s, objective {res.objective:.6g}, bound {res.bound:.6g}")
    if res.status == Status.INFEASIBLE:
        msg = "; ".join(explain_infeasible(problem)[:10])
        return _no_plan(problem, Status.INFEASIBLE, backend.name, res.bound, res.bound_source,
                        model.kind, timings(), message=msg)
    if res.x is None:
        return _no_plan(problem, Status.NO_SOLUTION, backend.name, res.bound, res.bound_source,
                        model.kind, timings(), message=f"no plan found within the limits ({res.message})")
    x = res.x[: model.n_x]
    pick = np.flatnonzero(x > 0.5)
    q_of = problem.cand["q"].to_numpy()[model.x_cand[pick]]
    dep_of_q = np.full(problem.n_queries, -1, dtype=np.int64)
    inst_of_q = np.full(problem.n_queries, -1, dtype=np.int64)
    dep_of_q[q_of] = problem.cand["d"].to_numpy()[model.x_cand[pick]]
    if model.kind == "exact":
        inst_of_q[q_of] = model.x_inst[pick]
        tl = Timeline(dep_of_q, inst_of_q)
    else:
        n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
        u = np.round(model.u_values(res.x)).astype(np.int64)
        np.add.at(n_inst, model.u_dep, u)
        tl = pack(problem, dep_of_q, n_inst)
    return _finish(problem, tl, wl, fl, fm, t, timings, say, status=res.status, solver=backend.name,
                   bound=res.bound, bound_source=res.bound_source, kind=model.kind, solver_s=res.time_s,
                   message=res.message, mip_rel_gap=mip_rel_gap, check=check, min_mean_accuracy=min_mean_accuracy)


def _no_plan(problem: Problem, status: Status, solver: str, bound: float, bound_source: str, kind: str,
             timings: dict, *, message: str) -> Schedule:
    """A schedule without an assignment (objective NaN): the status and the reasons."""
    return Schedule(pd.DataFrame(columns=list(ASSIGNMENT_COLUMNS)), problem, status, solver, math.nan, bound,
                    bound_source, kind, timings, message=message)


def _finish(problem: Problem, tl: Timeline, wl, fl, fm, t: dict, timings, say, *, status, solver: str, bound: float,
            bound_source: str, kind: str, solver_s: float, message: str, mip_rel_gap: float, check: bool,
            min_mean_accuracy: float | None) -> Schedule:
    """Price the packed plan, tabulate it, check it independently, and set its status."""
    obj = plan_objective(problem, tl)
    assignment = assignment_table(problem, tl)
    t["schedule"] = time.perf_counter()
    unplaced = [str(problem.queries["query_id"].iloc[i]) for i in tl.unplaced]
    violations = check_plan(assignment, wl, fl, fm, min_mean_accuracy=min_mean_accuracy) if check else []
    t["check"] = time.perf_counter()
    sched = Schedule(assignment, problem, status, solver, obj, min(bound, obj), bound_source,
                     kind, timings(solver_s=round(solver_s, 4)), message=message, unplaced=unplaced,
                     check_violations=violations)
    if unplaced:
        sched.status = Status.NO_SOLUTION
        sched.message = f"packing could not place {len(unplaced)} queries within their deadlines"
    elif violations:
        sched.status = Status.ERROR
        sched.message = "the independent check failed: " + "; ".join(violations[:5])
    else:
        sched.status = Status.OPTIMAL if sched.gap <= max(mip_rel_gap, 1e-9) * 1.0001 else Status.FEASIBLE
    say(f"plan: {sched.status}, objective {obj:.6g}, gap {sched.gap:.4%}, check {'ok' if not violations else 'FAILED'}")
    return sched


def _plan_decomposed(problem: Problem, backend, wl, fl, fm, t: dict, timings, say, *, time_limit_s: float | None,
                     mip_rel_gap: float, check: bool, min_mean_accuracy: float | None) -> Schedule:
    """Large batches: the Lagrangian bound, then fix-and-solve on the nearly tied queries (decompose.py)."""
    t["matrix"] = time.perf_counter()
    say(f"model: decomposition (priced coupling rows, then {backend.name} on the nearly tied queries)")
    t0 = time.perf_counter()
    dual, dense = lagrangian_bound(problem, time_limit_s=time_limit_s, progress=say)
    if dual.infeasible:
        t["solve"] = time.perf_counter()
        msg = "; ".join(explain_infeasible(problem)[:10])
        return _no_plan(problem, Status.INFEASIBLE, backend.name, dual.bound, "lagrangian",
                        "decompose", timings(), message=msg)
    say(f"lagrangian: bound {dual.bound:.8g} after {dual.iterations} iterations in {dual.time_s:.2f} s")
    best = None  # (queries left unplaced, packed objective, FixPlan, Timeline) of the best plan so far
    size = None
    # free more nearly tied queries if the plan is further than the gap from the bound; with
    # deadlines the gap left is mostly the aggregate relaxation's (packing), which that cannot close
    for attempt in range(2 if len(dual.levels) == 1 else 1):
        left = None if time_limit_s is None else max(time_limit_s - (time.perf_counter() - t0), 1.0)
        t_fix = time.perf_counter()
        got = fix_and_solve(problem, dual, dense, backend, free_size=size, time_limit_s=left, progress=say)
        slow = time.perf_counter() - t_fix > 5.0  # a slow MILP: a four times larger one would be slower
        if got is not None:
            # plans are compared once packed: a better aggregate objective can pack worse (repair
            # moves late queries, and with idle power counted every instance has its price)
            tl = pack(problem, got.dep_of_q, got.n_inst)
            key = (len(tl.unplaced), plan_objective(problem, tl) if not tl.unplaced else math.inf)
            if best is None or key < best[:2]:
                best = (*key, got, tl)
        if got is None or slow or plan_gap(got.objective, dual.bound) <= mip_rel_gap or got.free_queries >= len(dense.rows):
            break
        if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
            break
        say(f"{backend.name}: {got.message}, gap {plan_gap(got.objective, dual.bound):.2e}; freeing more queries")
        size = 4 * got.free_queries
    t["solve"] = time.perf_counter()
    if best is None:
        return _no_plan(problem, Status.NO_SOLUTION, backend.name, dual.bound, "lagrangian",
                        "decompose", timings(), message="no plan found: the nearly tied queries left no feasible completion")
    fp, tl = best[2], best[3]
    say(f"{backend.name}: {fp.message}")
    return _finish(problem, tl, wl, fl, fm, t, timings, say, status=Status.FEASIBLE, solver=backend.name,
                   bound=dual.bound, bound_source="lagrangian", kind="decompose", solver_s=time.perf_counter() - t0,
                   message=fp.message, mip_rel_gap=mip_rel_gap, check=check, min_mean_accuracy=min_mean_accuracy)
