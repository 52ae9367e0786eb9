"""``plan()``, the orchestrator: load inputs → build the problem → (no option for some query?
diagnose) → method → pack → schedule → independent check. Nothing else lives here."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .accounting import ends_in_time, within_gap
from .check import check_plan
from .diagnose import explain_infeasible, unreachable_accuracy
from .enginesim import engine_timing_applies
from .errors import DataError
from .fleet import Fleet
from .inputs import load_inputs
from .methods import Choice, Limits, choose_method, get_method
from .methods.capacity import capacity_shortfall
from .modelstore import FittedModels
from .packing import Timeline, move_off, pack, plan_objective, retime
from .problem import Problem, build_problem, with_slots
from .progress import phase
from .schedule import Schedule, assignment_table, empty_assignment, energy_totals, extrapolation_totals
from .schema import BoundSource, Status, Termination
from .signals import Signals, load_signals
from .solvers import get_solver
from .timeslots import SLOT_OBJECTIVES, slot_prices

__all__ = ["plan", "plan_problem", "schedule_choice", "Limits"]

Progress = Callable[[str], None]

#: the diagnosis of an infeasible batch (diagnose.py) is added to the capacity check's up to this size
DIAGNOSE_MAX_QUERIES = 20_000
#: rounds of moving the queries a continuous-batching engine would end late to other deployments (_engine_timed)
ENGINE_REPACK_ROUNDS = 4
#: rounds, before those, of moving them to other lanes (of their own deployment where one is free early:
#: at no cost), while each round leaves fewer late (measured on the example at ζ = 0.5, Llama-3-8B at
#: batch 64 on an H200: 88 late, then 54, 39, 23, 20; moving the 54 left after one round to other
#: deployments cost 1.17% of the objective, the 20 left after four 0.88%)
ENGINE_SAME_DEPLOYMENT_ROUNDS = 4
#: the most the time kept for the steps after the method is stretched for a machine busy with other work
MAX_SLOWDOWN = 4.0
#: the progress row of the diagnosis
_DIAGNOSIS = "diagnosis: why no plan exists"


class _Clock:
    """Seconds spent per step of one plan, in ``timings_s``' keys."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.marks: list[tuple[str, float]] = []

    def slowdown(self) -> float:
        """Wall-clock over CPU seconds since the clock started (the steps so far run on one
        thread): about 1 on an idle machine, 2 where another busy process shares the core. Held
        to [1, :data:`MAX_SLOWDOWN`]."""
        wall, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        return min(max(wall / cpu, 1.0), MAX_SLOWDOWN) if cpu > 0.02 else 1.0

    def mark(self, step: str) -> None:
        self.marks.append((step, time.perf_counter()))

    def timings(self, **extra: float) -> dict[str, float]:
        out, last = {}, self.start
        for step, t in self.marks:
            out[f"{step}_s"] = round(t - last, 4)
            last = t
        out["total_s"] = round(time.perf_counter() - self.start, 4)
        return {**out, **{k: round(v, 4) for k, v in extra.items()}}


def plan(
    workload: pd.DataFrame | str | Path,
    fleet: Fleet | str | Path,
    models: FittedModels | str | Path,
    *,
    solver: str = "auto",
    objective: str = "energy",
    zeta: float = 0.5,
    idle: bool = False,
    min_mean_accuracy: float | None = None,
    strict_range: bool = False,
    time_limit_s: float | None = None,
    mip_rel_gap: float = 1e-4,
    formulation: str = "auto",
    threads: int = 2,
    limits: Limits | None = None,
    check: bool = True,
    progress: Progress | None = None,
    signals: Signals | str | Path | None = None,
    signals_start: str | None = None,
) -> Schedule:
    """The plan of least energy (or best trade-off) for a workload on a fleet.

    ``workload``, ``fleet`` and ``models`` are paths or loaded objects. Returns a
    :class:`~energyopt.schedule.Schedule` whose ``status`` is optimal (within ``mip_rel_gap``),
    feasible (with a proven gap), or infeasible (``message`` says why); never raises for an
    infeasible instance. ``strict_range``: predictions outside the token ranges the models were
    measured on are not options (a query left with none makes the plan infeasible, with the
    ranges in the reason). ``time_limit_s`` [s] bounds the whole call; ``limits`` (a
    :class:`~energyopt.methods.Limits`, e.g. one shared by several plans of one command) replaces
    ``time_limit_s``, ``mip_rel_gap`` and ``threads``. ``signals`` (a signals CSV or a
    :class:`~energyopt.signals.Signals`; ``signals_start``: the ISO 8601 time of t = 0 in a file
    with timestamps) prices the plan per time slot (kWh, kgCO2e, cost in its summary and
    :meth:`~energyopt.schedule.Schedule.slot_table`); it is read and checked against the fleet
    before anything is solved. With ``objective`` ``carbon`` or ``cost`` the plan moves work to
    the slots where a joule is cleanest or cheapest (:mod:`energyopt.methods.slotted`); a fleet
    with power caps (``power_cap_w``) is planned per slot too (the signals' slots, else hours).
    """
    clock = _Clock()
    limits = limits or Limits(time_limit_s, mip_rel_gap, threads)
    inputs = load_inputs(workload, fleet, models)
    sig = None if signals is None else load_signals(signals, fleet=inputs.fleet, batch_start=signals_start)
    slotted = objective in SLOT_OBJECTIVES or inputs.fleet.has_power_caps
    if objective in SLOT_OBJECTIVES and sig is None:
        raise DataError(f"--objective {objective}: give --signals FILE (a carbon_g_per_kwh or price_per_kwh per slot)")
    prices = slot_prices(inputs.fleet, sig, objective) if slotted else None  # checked before anything is solved
    with phase(f"problem: options of {len(inputs.workload):,} queries"):
        problem = build_problem(inputs.workload, inputs.fleet, inputs.models,
                                objective="energy" if objective in SLOT_OBJECTIVES else objective, zeta=zeta, idle=idle,
                                min_mean_accuracy=min_mean_accuracy, strict_range=strict_range)
    if prices is not None:
        problem = with_slots(problem, prices)
    sched = plan_problem(problem, solver=solver, formulation=formulation, limits=limits, check=check,
                         progress=progress, clock=clock)
    return sched if sig is None else dataclasses.replace(sched, signals=sig)


def plan_problem(problem: Problem, *, solver: str = "auto", formulation: str = "auto", limits: Limits | None = None,
                 check: bool = True, progress: Progress | None = None, clock: _Clock | None = None) -> Schedule:
    """:func:`plan` on a problem already built."""
    limits = limits or Limits()
    sched = _plan_problem(problem, solver=solver, formulation=formulation, limits=limits, check=check,
                          progress=progress, clock=clock)
    # the settings asked for, recorded in the summary (what ran is its solver and formulation)
    settings = {"solver": solver, "formulation": formulation, "time_limit_s": limits.time_limit_s,
                "gap": limits.mip_rel_gap, "threads": limits.threads}
    return dataclasses.replace(sched, settings=settings)


def _plan_problem(problem: Problem, *, solver: str, formulation: str, limits: Limits, check: bool,
                  progress: Progress | None, clock: _Clock | None) -> Schedule:
    say = progress or (lambda s: None)
    clock = clock or _Clock()
    say(f"problem: {problem.n_queries} queries, {problem.n_deployments} deployments, {problem.n_options} options")
    # a named backend is looked up first (an unknown or missing one is an error whatever the batch); the
    # default's lookup imports its library (scipy.optimize: about half a second on a 2-core machine),
    # which a batch proven infeasible here never uses (its solver is then "none")
    backend = None if solver == "auto" else get_solver(solver)
    proven = _proven_infeasible(problem, "none" if backend is None else backend.name)
    clock.mark("build")  # the problem and its checks
    if proven is not None:
        return _without_plan(problem, proven, clock)
    backend = backend or get_solver(solver)
    clock.mark("backend")  # in a fresh process, the import of the backend's library: a step of its own
    method_name = choose_method(problem, formulation)
    method = get_method(method_name)
    clock.mark("matrix")
    # the method stops early enough for packing, the check and writing to end within the limit
    with phase(f"solve: {method_name} with {backend.name} ({problem.n_queries:,} queries)"):
        choice = method.solve(problem, backend, limits.less(_after_method_s(problem, clock.slowdown())), say)
    clock.mark("solve")
    if not choice.has_choice:
        if choice.status == Status.INFEASIBLE and not choice.message:
            with phase(_DIAGNOSIS):
                choice.message = "; ".join(explain_infeasible(problem)[:10])
        return _without_plan(problem, choice, clock)
    return schedule_choice(problem, choice, clock=clock, mip_rel_gap=limits.mip_rel_gap, check=check, progress=say,
                           limits=limits)


def _proven_infeasible(problem: Problem, solver_name: str) -> Choice | None:
    """The answer without a plan where one is proven impossible before any solving: queries no
    option serves, a mean-accuracy floor above every query's most accurate option, or a capacity
    inequality violated (methods/capacity.py); else None."""
    if len(problem.unservable):
        with phase(_DIAGNOSIS):
            reasons = "; ".join(explain_infeasible(problem)[:10])
        return Choice.none("none", solver_name, Status.INFEASIBLE, Termination.INFEASIBLE, math.inf, BoundSource.NONE,
                           message=f"{len(problem.unservable)} queries have no feasible option: {reasons}")
    unreachable = unreachable_accuracy(problem)  # a floor above every query's most accurate option
    if unreachable:
        return Choice.none("none", solver_name, Status.INFEASIBLE, Termination.INFEASIBLE, math.inf, BoundSource.NONE,
                           message=unreachable[0])
    with phase("problem: capacity check"):
        short = capacity_shortfall(problem)  # a cheap proof that nothing fits
    if short is None:
        return None
    # the diagnosis's more specific reasons first where it is cheap (13 s on a million queries)
    with phase(_DIAGNOSIS):
        specific = [r for r in explain_infeasible(problem)[:10] if not r.startswith("capacity ")] \
            if problem.n_queries <= DIAGNOSE_MAX_QUERIES else []
    return Choice.none("none", solver_name, Status.INFEASIBLE, Termination.INFEASIBLE, math.inf, BoundSource.NONE,
                       message="; ".join([*specific, short.message()]))


def _after_method_s(problem: Problem, slowdown: float = 1.0) -> float:
    """Seconds kept from a time limit for what follows the method: packing, pricing, the check,
    writing the plan (measured: about 4 µs per query on an idle 2-core machine, plus a fixed 0.3 s),
    times ``slowdown``, how much slower than its CPU time the build ran (:meth:`_Clock.slowdown`):
    beside one other busy process these steps took 11.5 µs per query at 100,000 queries, and the
    command ended 1.3 s after its limit with the idle figure."""
    return (0.3 + 4e-6 * problem.n_queries) * slowdown


def _without_plan(problem: Problem, choice: Choice, clock: _Clock) -> Schedule:
    """A schedule without an assignment (objective NaN): the status and the reasons."""
    return Schedule(empty_assignment(), problem, choice.status, choice.solver, math.nan, choice.bound,
                    choice.bound_source, choice.method, clock.timings(), message=choice.message,
                    termination=choice.termination)


def _timeline(problem: Problem, choice: Choice, *, routing_rule: bool) -> Timeline:
    assert choice.dep_of_q is not None
    if choice.start_of_q is not None:  # the method timed every query itself (slotted plans)
        assert choice.lane_of_q is not None
        return Timeline(choice.dep_of_q, choice.lane_of_q, list(choice.unplaced), start_s=choice.start_of_q)
    if choice.lane_of_q is not None:
        if problem.has_releases and not routing_rule:  # lanes chosen by rows exact only without releases
            tl = retime(problem, choice.dep_of_q, choice.lane_of_q)
            return Timeline(tl.dep, tl.lane, sorted(set(choice.unplaced) | set(tl.unplaced)))
        return Timeline(choice.dep_of_q, choice.lane_of_q, list(choice.unplaced))
    assert choice.n_inst is not None
    if routing_rule:  # a rule ignores deadlines: its queries are placed however late they end
        return pack(problem, choice.dep_of_q, choice.n_inst, repair=False, enforce_due=False)
    return pack(problem, choice.dep_of_q, choice.n_inst)


def _engine_timed(problem: Problem, tl: Timeline, limits: Limits | None = None) -> tuple[Timeline, pd.DataFrame | None]:
    """A timeline whose deadlines hold as a continuous-batching engine runs its batched instances
    (the assignment's ``engine_end_s``) as well as in the lane model, where repair can find one:
    a query the engine ends late (the prefills of its instance's other lanes stall it) is moved to
    the cheapest lane that meets every due time in the lane model
    (:func:`~energyopt.packing.move_off`), and the engine timing checked again: first any lane of
    any deployment but the lane it left (often a less loaded lane of its own, where it starts
    earlier: free of cost), for up to :data:`ENGINE_SAME_DEPLOYMENT_ROUNDS` rounds while each leaves
    fewer queries late; then, for up to :data:`ENGINE_REPACK_ROUNDS` rounds, a deployment it was
    not late on; a round that leaves a query without a lane is undone, and ends the rounds.
    Where none ends every query in time (or ``limits`` run out first: the time limit covers the
    repair), the timeline with the fewest queries the engine ends late, the earliest of those (the
    packed timeline where no round did better): deadlines are what the user asked for, the cost
    is not (measured on the example at ζ = 0.8: 25 late instead of 88, 0.32% more objective).
    Every timeline's deadlines hold in the lane model, and the summary counts those the engine
    would miss. Moves only remove plans from consideration, so the method's bound stays valid.
    Returns the timeline and its assignment table (None where the engine timing does not apply:
    nothing was tabulated)."""
    placed = tl.dep[(tl.dep >= 0) & (tl.lane >= 0)]
    batch = problem.deployments["batch_size"].to_numpy()[placed]
    if problem.inputs is None or not engine_timing_applies(batch, problem.release_s, slotted=problem.slots is not None):
        return tl, None  # not timed on the engine: no table to build
    best: tuple[int, Timeline, pd.DataFrame] | None = None  # the fewest late, the earliest of those
    avoid: dict[int, set[int]] = {}
    same_rounds = away_rounds = 0
    for attempt in itertools.count():
        table = assignment_table(problem, tl)
        late = _engine_late(problem, tl, table)
        fewer = best is None or late.size < best[0]  # while lanes move, each round has left fewer than all before
        if fewer:
            best = (late.size, tl, table)
        if not late.size:
            return tl, table
        # another lane (of its own deployment, as the repair finds) while that leaves fewer late; once
        # it does not, deployments they were not late on, and never back
        same = not away_rounds and same_rounds < ENGINE_SAME_DEPLOYMENT_ROUNDS and fewer
        if (not same and away_rounds == ENGINE_REPACK_ROUNDS) or (limits is not None and limits.expired()):
            break
        if same:
            same_rounds += 1
        else:
            away_rounds += 1
            for q in late.tolist():
                avoid.setdefault(q, set()).add(int(tl.dep[q]))
        with phase(f"repair: {late.size:,} queries late on the engine (round {attempt + 1})"):
            moved = move_off(problem, tl, late, avoid, other_lane=same)
        if moved.unplaced:  # no other lane takes some: the timeline before this round stands
            break
        tl = moved
    assert best is not None
    return best[1], best[2]


def _engine_late(problem: Problem, tl: Timeline, table: pd.DataFrame) -> np.ndarray:
    """The placed queries of ``tl`` that a continuous-batching engine ends after their due time
    (``table`` is its assignment table, with ``engine_end_s``)."""
    qs = np.flatnonzero((tl.dep >= 0) & (tl.lane >= 0))
    eng = table["engine_end_s"].to_numpy(dtype=float)
    timed = ~np.isnan(eng)
    due = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    return qs[timed & ~ends_in_time(np.where(timed, eng, 0.0), due[qs])]


def _engine_placed(problem: Problem, choice: Choice, tl: Timeline,
                   limits: Limits | None) -> tuple[Timeline, pd.DataFrame | None]:
    """:func:`_engine_timed` from the method's lanes and, where that leaves queries late on the
    engine or costs more than those lanes, also from the packer's (:func:`~energyopt.packing.pack`
    of the same choice, which spreads each deployment's queries over its lanes instead of filling
    the fewest): the timeline with fewer engine-late queries, the cheaper of equally many. A method
    that searches lanes for the lane model packs its batched instances tightly, and the engine's
    first wave of prefills and each refill's prefill then stall them (measured on the example at
    ζ = 0.8: the search's lanes left 88 of 206 deadline queries late on the engine, the packer's
    26, on the same deployments)."""
    first, table = _engine_timed(problem, tl, limits)
    if table is None or choice.lane_of_q is None or choice.start_of_q is not None:
        return first, table
    late = _engine_late(problem, first, table).size
    if limits is not None and limits.expired():
        return first, table
    if not late and first is tl:  # none late on the method's own lanes: nothing moved, nothing to try
        return first, table
    cost = plan_objective(problem, first)
    if not late and cost <= plan_objective(problem, tl):
        return first, table
    assert choice.dep_of_q is not None
    placed = (tl.dep >= 0) & (tl.lane >= 0)
    n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
    inst = tl.instance(problem.deployments["lanes"].to_numpy().astype(np.int64))
    np.maximum.at(n_inst, tl.dep[placed], inst[placed] + 1)
    if choice.n_inst is not None:
        n_inst = np.maximum(n_inst, np.asarray(choice.n_inst, dtype=np.int64))
    with phase("packing again, the queries spread over their deployments' lanes"):
        spread = pack(problem, choice.dep_of_q, n_inst)
    if spread.unplaced:
        return first, table
    other, other_table = _engine_timed(problem, spread, limits)
    assert other_table is not None
    key = (_engine_late(problem, other, other_table).size, plan_objective(problem, other))
    return (other, other_table) if key < (late, cost) else (first, table)


def check_assignment(problem: Problem, assignment: pd.DataFrame, *, require_all: bool = True) -> list[str]:
    """The independent checker's verdict on ``assignment`` as a plan of ``problem``'s inputs and
    settings (accuracy floor, idle accounting, range, time slots): the violations, none when it holds."""
    assert problem.inputs is not None
    wl, fl, fm = problem.inputs
    with phase("independent check of the plan"):
        totals = {**energy_totals(assignment, problem), **extrapolation_totals(assignment, problem)}
        return check_plan(assignment, wl, fl, fm, min_mean_accuracy=problem.min_mean_accuracy,
                          require_all=require_all, totals=totals, idle=problem.idle,
                          strict_range=problem.strict_range,
                          cap_bounds_s=None if problem.slots is None else problem.slots.bounds_s)


def schedule_choice(problem: Problem, choice: Choice, *, clock: _Clock | None = None, mip_rel_gap: float = 1e-4,
                    check: bool = True, progress: Progress | None = None, limits: Limits | None = None) -> Schedule:
    """Pack a choice, price it, tabulate it, check it independently, and give it its status.

    A routing rule's choice (``baseline:*``) is packed without deadlines and keeps the checker's
    verdict as its list of violations (what the rule misses), with status feasible. Where ``limits``
    have run out, the rounds that move queries a continuous-batching engine would end late stop.
    """
    say = progress or (lambda s: None)
    clock = clock or _Clock()
    rule = choice.method.startswith("baseline:")
    with phase(f"packing {problem.n_queries:,} queries onto instances"):
        tl = _timeline(problem, choice, routing_rule=rule)
        table = None
        if not rule and not tl.unplaced:
            tl, table = _engine_placed(problem, choice, tl, limits)
    with phase(f"pricing the plan of {problem.n_queries:,} queries"):
        objective = plan_objective(problem, tl)
        assignment = table if table is not None else assignment_table(problem, tl)
    clock.mark("schedule")
    unplaced = [str(problem.queries["query_id"].iloc[i]) for i in tl.unplaced]
    violations = check_assignment(problem, assignment, require_all=not rule) if check else []
    clock.mark("check")
    bound = min(choice.bound, objective)
    status, termination, message = choice.status, choice.termination, choice.message
    if rule:
        status, termination = Status.FEASIBLE, Termination.FEASIBLE
    elif unplaced:
        status, termination = Status.NO_SOLUTION, Termination.NO_SOLUTION
        message = f"packing could not place {len(unplaced)} queries within their deadlines"
    elif violations:
        status, termination = Status.ERROR, Termination.ERROR
        message = "the independent check failed: " + "; ".join(violations[:5])
    else:
        optimal = within_gap(objective, bound, mip_rel_gap)
        status = Status.OPTIMAL if optimal else Status.FEASIBLE
        termination = Termination.OPTIMAL if optimal else choice.termination
    sched = Schedule(assignment, problem, status, choice.solver, objective, bound, choice.bound_source, choice.method,
                     clock.timings(solver_s=choice.solver_s), message=message, unplaced=unplaced,
                     check_violations=violations, termination=termination)
    if not rule:
        say(f"plan: {sched.status}, objective {objective:.6g}, gap {sched.gap:.4%}, "
            f"check {'ok' if not violations else 'FAILED'}")
    return sched


