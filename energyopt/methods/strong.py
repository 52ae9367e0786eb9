"""A small batch's matrix model solved fast and proven tight: valid cuts, the LP, then a MILP on
what the LP leaves fractional.

The aggregate model's LP relaxation lets a deployment hold a sliver of an instance (0.05 of an
H200 for a few queries), so its bound sits up to a few tenths of a percent under the optimum, and
a MILP backend spends seconds closing that gap by branching. Every plan satisfies

    x_c ≤ u_m    (an option can only be chosen on a machine that is switched on)

for each x column c and the u column m of its machine (the deployment's instance count in the
aggregate model, the instance's switch in the exact one). These *variable upper bound* rows are
valid for every integer plan, so the model with them is still a relaxation of the same problem
and its LP optimum still a valid lower bound; they are added where the LP violates them, in a few
rounds (few deployments carry slivers, so few rows are added).

Then:

1. if the LP's solution is integral, it is optimal (the LP bound is its own objective);
2. else, where the LP splits at most half the queries, the columns it leaves integral are fixed
   at their values and the backend solves the rest (the queries the LP splits, and the instance
   counts) — a small MILP; its plan is kept when it is within the gap of the LP bound;
3. else the instance counts first: the backend solves the model with its instance counts (and any
   other integer columns but the options) integral and the options relaxed — a relaxation, so its
   proven bound is valid, and a small search (tens of integers, not thousands). With the counts it
   chose fixed, the options' MILP is nearly its LP (measured on the example: 2-8 of 15,000 option
   columns fractional, 0.07 s) and gives the plan; it is kept when it is within the gap of the
   better bound. Under a time limit or cap the relaxed model gets at most half of what is left (its
   answer is a bound, not a plan; in a quick lane round, which goes no further, 80%). Not with
   CP-SAT, which makes every column an integer (the relaxed model would be the whole one) and
   reports the LP bound;
4. else, where step 3 applies, the counts are split at step 3's counts n (:mod:`.countsplit`):
   every plan has either u ≥ n (the options' MILP with the counts bounded below by n: a plan and
   a bound) or some u_c < n_c (step 3's relaxation with that disjunction: a bound); the lesser of
   the two bounds is valid, and tighter than step 3's wherever that bound is set by the options'
   integrality at n rather than by the counts;
5. else the backend solves the whole model with the cuts, under what is left of the limits, and
   the better plan and the better bound are kept.

A mean-accuracy floor that no plan meets is proven out of reach by :mod:`.floor` instead: by a
ceiling remembered from an earlier model of the same rows (before the LP), else after the LP by
the most accuracy of the LP (where the LP with the floor is infeasible) or of step 3's relaxation.

Measured on the 1,000-query example at ζ = 0.1 (2-core machine, the cuts of a sweep's earlier
points remembered): step 3 takes 1.3 s against 31 s for the whole model (step 5), to 0.0082% of
its bound; at ζ = 0, 11 s against 2 × 40 s.

The LP runs in this process (scipy's HiGHS, which honours its time limit on LPs of this size);
every MILP goes through the backend under the watchdog, as everywhere else.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from ..accounting import within_gap
from ..formulation import MatrixModel
from ..problem import Problem
from ..progress import current_phase, phase
from ..schema import BoundSource, Status, Termination
from ..solvers import Solver, SolveResult
from ..solvers.watchdog import solve_with_watchdog
from . import Limits

if TYPE_CHECKING:
    from .floor import FloorRow

__all__ = ["backend_solve", "remembered_cuts", "solve_strong", "machine_columns", "with_vub_rows", "INT_TOL"]

#: an integer variable within this of a whole number counts as integral
INT_TOL = 1e-6
#: rounds of cuts at most
CUT_ROUNDS = 8
#: under a call's time limit, a backend past its own limit is stopped this long after it [s]
WATCHDOG_GRACE_S = 0.5
#: under a time limit, an LP of more non-zeros than this runs under the watchdog (see :func:`_lp`)
LP_IN_PROCESS_MAX_NONZEROS = 2_000_000
#: such an LP is not started with less time than this left [s] (besides the watchdog's grace)
LP_MIN_S = 0.2
#: where the LP splits more than this share of the queries, the MILP on the split ones is nearly the
#: whole model, with its bound valid only for the fixed rest: the whole model is solved instead
#: (measured on the example at ζ = 0.1, 996 of 1,000 queries split: 53.4 s for the part, whose bound
#: is of no use, against 2.0 s for the whole, 2-core machine)
PART_MAX_SPLIT = 0.5
#: step 3 (instance counts first) may take this many times the LP rounds' seconds, at least
#: COUNTS_MIN_S: it is a shortcut, and where it runs long the whole model decides (measured on the
#: example with a floor of 0.666, which no plan meets: 107 s to prove the relaxation infeasible,
#: where the whole model takes 81 s; at ζ = 0 it takes 11-15 s on a quiet machine and over 15 s beside
#: two other jobs, the whole model 40 s per round)
COUNTS_TIME_FACTOR = 1.5
COUNTS_MIN_S = 30.0
#: step 3 is for batches of at least this many queries: a smaller one's whole model takes
#: milliseconds, and step 3 would add two backend calls (measured: the property test of every
#: method and backend on 2-5 queries took 29 s with it, 3.9 s without)
COUNTS_MIN_QUERIES = 100
#: step 3's model with its options relaxed gets at most this share of what is left of a time limit or cap
RELAXED_SHARE = 0.5
#: ... and this share in a quick lane round (no whole model after it; only the options at its counts,
#: which take seconds): cut short, its plan's counts can be poor (measured on the example at ζ = 0,
#: the third lane round: 15.4 s to solve it; stopped at 13-14 s, its counts planned 10% worse)
QUICK_RELAXED_SHARE = 0.8


def machine_columns(model: MatrixModel, problem: Problem) -> np.ndarray:
    """The u column (absolute index) of each x column's machine."""
    x_dep = problem.cand["d"].to_numpy()[model.x_cand]
    if model.kind == "aggregate":
        u_of_dep = np.full(problem.n_deployments, -1, dtype=np.int64)
        u_of_dep[model.u_dep] = np.arange(len(model.u_dep))
        return model.u_start + u_of_dep[x_dep]
    # exact: the u of (deployment, instance)
    n_inst = int(max(model.u_inst.max(initial=0), model.x_inst.max(initial=0))) + 1
    key_u = model.u_dep * n_inst + model.u_inst
    order = np.argsort(key_u)
    pos = np.searchsorted(key_u[order], x_dep * n_inst + model.x_inst)
    return model.u_start + order[pos]


def with_vub_rows(model: MatrixModel, x_cols: np.ndarray, u_cols: np.ndarray) -> MatrixModel:
    """The model with rows x_c − u_m ≤ 0 for the pairs (``x_cols``, ``u_cols``), kind ``vub``."""
    k = len(x_cols)
    if not k:
        return model
    r = np.arange(k)
    V = sp.csr_matrix((np.r_[np.ones(k), -np.ones(k)], (np.r_[r, r], np.r_[x_cols, u_cols])), shape=(k, model.n_vars))
    return dataclasses.replace(
        model, A=sp.vstack([model.A, V], format="csr"),
        row_lo=np.r_[model.row_lo, np.full(k, -np.inf)], row_hi=np.r_[model.row_hi, np.zeros(k)],
        row_kind=np.r_[model.row_kind, np.full(k, "vub")],
    )


def backend_solve(backend: Solver, model: MatrixModel, limits: Limits, cap_s: float | None = None) -> SolveResult:
    """The backend on ``model`` under ``limits`` (at most ``cap_s``), with ``limits``' gap and threads.

    Under a time limit for the call the watchdog stops a backend that overruns its own limit
    ``WATCHDOG_GRACE_S`` after it (the call must end within its limit, not 1.5 times it); with a
    cap only, the watchdog's usual grace holds; with neither, the backend runs in this process. With
    the call's limit spent, no backend starts (status no solution, termination time limit)."""
    kw: dict = {"grace_factor": 1.0, "grace_s": WATCHDOG_GRACE_S} if limits.time_limit_s is not None else {}
    left = limits.remaining_s()
    if left is not None and left <= 0:  # nothing is started after the limit (it used to get a second)
        return SolveResult(Status.NO_SOLUTION, None, math.nan, -math.inf, BoundSource.NONE, backend.name, 0.0,
                           "the time limit ran out before the backend started", termination=Termination.TIME_LIMIT)
    # what is left of the limit, even where that is under a second: a backend given a second with 0.2 s left
    # ended the command 1.3-2.5 s after its limit on a busy machine (fork, the backend's second, the grace)
    limit_s = limits.capped_s(cap_s, floor_s=0.0)
    # a row with its elapsed time while the backend runs (in C code or a child process); a backend that
    # reports its incumbent and bound as it goes shows them there (cpsat, cbc)
    with phase(f"{backend.name}: MILP, {_free_integers(model):,} integer variables free of {model.n_vars:,}, "
               f"{model.A.shape[0]:,} rows, {'no time limit' if limit_s is None else f'limit {limit_s:.0f} s'}"):
        return solve_with_watchdog(backend, model, time_limit_s=limit_s, mip_rel_gap=limits.mip_rel_gap,
                                   threads=limits.threads, **kw)


def _free_integers(model: MatrixModel) -> int:
    """The integer variables a MILP may still move (not fixed by equal bounds)."""
    return int(np.count_nonzero((model.integrality == 1) & (model.var_lo < model.var_hi)))


def _lp(model: MatrixModel, time_limit_s: float | None):
    """The LP relaxation of ``model`` (scipy's result: ``status`` 0 when solved, ``x``, ``fun``).
    Under a time limit, a model of more than :data:`LP_IN_PROCESS_MAX_NONZEROS` non-zeros is
    solved under the watchdog: scipy and HiGHS spend seconds on such a model before HiGHS's
    clock starts (measured: 4.8 s under a 0.1 s limit on the exact model of the 1,000-query
    example, 5.7 million non-zeros; 7.2 s on 15 million)."""
    if time_limit_s is None or model.A.nnz <= LP_IN_PROCESS_MAX_NONZEROS:
        return _lp_here(model, time_limit_s)
    budget_s = time_limit_s - WATCHDOG_GRACE_S  # so that the watchdog's grace ends with the limit
    if budget_s < LP_MIN_S:  # no time for it: as an LP that ended without an answer
        return SimpleNamespace(status=1, x=None, fun=None)
    res = solve_with_watchdog(_LpRelaxation(), model, time_limit_s=budget_s, grace_factor=1.0, grace_s=WATCHDOG_GRACE_S)
    solved = res.x is not None
    return SimpleNamespace(status=0 if solved else 1, x=res.x, fun=res.objective if solved else None)


def _lp_here(model: MatrixModel, time_limit_s: float | None):
    from scipy.optimize import Bounds, LinearConstraint, milp

    opts: dict = {"disp": False}
    if time_limit_s is not None:
        opts["time_limit"] = max(0.1, time_limit_s)
    cons = [LinearConstraint(model.A, model.row_lo, model.row_hi)] if model.A.shape[0] else []
    return milp(model.c, constraints=cons, integrality=np.zeros(model.n_vars), bounds=Bounds(model.var_lo, model.var_hi),
                options=opts)


class _LpRelaxation(Solver):
    """:func:`_lp_here` as a backend, for the watchdog (its answer: the LP's x and objective)."""

    name = "LP relaxation"

    @classmethod
    def available(cls) -> bool:
        return True

    def solve(self, model: MatrixModel, *, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4,
              threads: int = 2) -> SolveResult:
        t0 = time.perf_counter()
        res = _lp_here(model, time_limit_s)
        dt = time.perf_counter() - t0
        if res.status != 0 or res.x is None:
            return SolveResult(Status.NO_SOLUTION, None, math.nan, -math.inf, BoundSource.NONE, self.name, dt,
                               str(res.message))
        return SolveResult(Status.OPTIMAL, np.asarray(res.x), float(res.fun), float(res.fun), BoundSource.LP, self.name,
                           dt)


#: the cuts found per model layout while :func:`remembered_cuts` is active (None: not remembering);
#: also the lane cuts of :mod:`.milp` per problem (:func:`recall`, :func:`remember`)
_MEMORY: dict[tuple, Any] | None = None


def recall(key: tuple) -> Any:
    """What :func:`remember` kept under ``key`` within the active :func:`remembered_cuts` block (None:
    nothing, or no block active)."""
    return None if _MEMORY is None else _MEMORY.get(key)


def remember(key: tuple, value: Any) -> None:
    """Keep ``value`` under ``key`` until the active :func:`remembered_cuts` block ends (outside one: nothing)."""
    if _MEMORY is not None:
        _MEMORY[key] = value


@contextmanager
def remembered_cuts(*, inherit: bool = False) -> Iterator[None]:
    """Within this block, the cuts found for one model are the first cuts of the next model of the
    same layout (same option and instance columns; the other rows and columns, the costs and the
    right-hand sides may differ, as they do along a sweep of ζ or of accuracy floors, or from one
    round of lane cuts to the next): a row x_c ≤ u_m holds for every plan whatever else the model
    says, and the next LP starts where the last one ended (one LP instead of eight). The lane cuts
    of :mod:`.milp` are kept per problem the same way (valid for every plan of the same queries,
    runtimes, deadlines and lanes, whatever the objective or accuracy floor). ``inherit``: within
    an active block, remember into that block's memory (a block of its own otherwise)."""
    global _MEMORY
    if inherit and _MEMORY is not None:
        yield
        return
    before, _MEMORY = _MEMORY, {}
    try:
        yield
    finally:
        _MEMORY = before


def _layout(model: MatrixModel, u_of_x: np.ndarray) -> tuple:
    """What an option-on-instance row x_c ≤ u_m refers to: the option columns (which option each
    is) and each one's instance column. Nothing else of the model: the row holds for every plan."""
    return ("vub", model.kind, model.n_x, model.u_start, hash(model.x_cand.tobytes()), hash(u_of_x.tobytes()))


def _strengthen(model: MatrixModel, u_of_x: np.ndarray, limits: Limits, progress) -> tuple[MatrixModel, Any]:
    """Rounds of LP and cuts; the model with its cuts and the last LP result (None: no LP answer)."""
    have = np.zeros(model.n_x, dtype=bool)
    key = _layout(model, u_of_x) if _MEMORY is not None else None
    if _MEMORY is not None and key in _MEMORY:
        cols = _MEMORY[key]
        have[cols] = True
        model = with_vub_rows(model, cols, u_of_x[cols])
        progress(f"cuts: {len(cols)} option-on-instance rows remembered from the last plan of this layout")
    try:
        with phase(f"LP relaxation with cuts ({model.n_vars:,} variables, {model.A.shape[0]:,} rows)"):
            return _cut_rounds(model, u_of_x, have, limits, progress)
    finally:
        if _MEMORY is not None and key is not None:
            _MEMORY[key] = np.flatnonzero(have)


def _cut_rounds(model: MatrixModel, u_of_x: np.ndarray, have: np.ndarray, limits: Limits,
                progress) -> tuple[MatrixModel, Any]:
    """Rounds of LP and cuts from ``model`` (whose cut rows ``have`` marks, updated in place)."""
    res = None
    shown = current_phase()
    for rounds in range(CUT_ROUNDS):
        res = _lp(model, limits.remaining_s())
        if res.status != 0 or res.x is None:
            return model, res
        x = res.x
        viol = (x[: model.n_x] > x[u_of_x] + INT_TOL) & ~have
        if not viol.any():
            break
        # the violated rows (measured: an LP with every row can take ten times as long); where
        # instances cost (idle power), the LP moves its slivers to another machine each round, so
        # from the second round on, every row left
        every = rounds > 0 and bool(np.any(model.c[model.u_start:] > 0))
        add = np.ones(model.n_x, dtype=bool) & ~have if every else viol
        have |= add
        cols = np.flatnonzero(add)
        model = with_vub_rows(model, cols, u_of_x[cols])
        progress(f"cuts: {len(cols)} option-on-instance rows (LP {res.fun:.8g})")
        shown.show(f"round {rounds + 1}: LP {res.fun:.8g}, {int(have.sum()):,} cut rows", force=True)
    return model, res


def solve_strong(model: MatrixModel, problem: Problem, backend: Solver, limits: Limits, progress=None,
                 *, cap_s: float | None = None, close_gap: bool = True, known: SolveResult | None = None
                 ) -> SolveResult:
    """The model solved as the module docstring says; ``cap_s`` caps the MILP steps' time together
    (each step gets what is left of it: one call ends within ``cap_s`` and its LP, not a multiple of
    it, which the lane rounds of :mod:`.milp` count on for their budget). Without
    ``close_gap``, a plan of step 2 or 3 that is not within the gap is returned as it is (status
    feasible, with its bound) instead of solving the whole model: the lane rounds (:mod:`.milp`)
    need a plan to find their cuts, and only the last round's model needs its gap closed. ``known``:
    such a plan of this very model (with its bound): steps 2 and 3, which would find it again, are
    skipped, and the whole model is solved to beat it. A mean-accuracy floor that no plan meets is
    proven out of reach by the most accuracy a relaxation allows (:mod:`.floor`): before the LP, by
    a ceiling remembered from earlier models of the same rows, or searched for where their floors
    all reached less (a series); else after the LP."""
    from . import floor  # it builds on this module

    t0 = time.perf_counter()
    fr = floor.floor_row(model, problem) if known is None else None
    if fr is not None and (why := floor.remembered_verdict(model, fr, backend, limits, cap_s,
                                                           progress or (lambda s: None))) is not None:
        return _out_of_reach(why, backend, t0)
    left_s = None if cap_s is None else max(cap_s - (time.perf_counter() - t0), 0.0)  # the cap covers both
    return _solve(model, problem, backend, limits, progress, fr, cap_s=left_s, close_gap=close_gap, known=known)


def _solve(model: MatrixModel, problem: Problem, backend: Solver, limits: Limits, progress, fr: FloorRow | None, *,
           cap_s: float | None, close_gap: bool, known: SolveResult | None) -> SolveResult:
    """:func:`solve_strong` once no remembered ceiling rules the floor row ``fr`` (None: none) out."""
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    cap = _Cap(None if cap_s is None else t0 + cap_s, limits)
    u_of_x = machine_columns(model, problem)
    strong, lp = _strengthen(model, u_of_x, limits, say)
    if fr is not None and known is None and (why := _floor_verdict(strong, fr, lp, problem, backend, limits, cap, t0,
                                                                   say)) is not None:
        return _out_of_reach(why, backend, t0)
    # no LP answer (in time), or "infeasible" (HiGHS's presolve has been seen to say so wrongly: the
    # backend confirms such a verdict): the backend on the model as it is
    if lp is None or lp.status != 0 or lp.x is None:
        if limits.expired():  # the LP ran out of time (a large model's): no backend after the limit
            return SolveResult(Status.NO_SOLUTION, None, math.nan, -math.inf, BoundSource.NONE, backend.name,
                               time.perf_counter() - t0, "the LP relaxation used the time",
                               termination=Termination.TIME_LIMIT)
        return backend_solve(backend, strong, limits, cap.left_s())
    bound = float(lp.fun)
    x = np.asarray(lp.x)
    is_int = strong.integrality == 1
    frac = is_int & (np.abs(x - np.round(x)) > INT_TOL)
    if not frac.any():
        x = np.where(is_int, np.round(x), x)
        say(f"LP with cuts: integral, {bound:.8g}")
        return SolveResult(Status.OPTIMAL, x, float(strong.c @ x), bound, BoundSource.LP, backend.name,
                           time.perf_counter() - t0, "LP relaxation with cuts is integral")
    if known is not None and known.x is not None:
        src = known.bound_source if known.bound > bound else BoundSource.LP
        return _split_then_whole(strong, problem, backend, limits, cap, known, known.x, max(bound, known.bound), src,
                                 t0, say)
    # fix the x columns of the queries the LP does not split; the rest and every u stay free
    q_of_x = problem.cand["q"].to_numpy()[strong.x_cand]
    split_q = np.unique(q_of_x[frac[: strong.n_x]])
    fixed_x = ~np.isin(q_of_x, split_q)
    lo, hi = strong.var_lo.copy(), strong.var_hi.copy()
    idx = np.flatnonzero(fixed_x)
    lo[idx] = hi[idx] = np.round(x[idx])
    what = f"{len(split_q)} queries split" if len(split_q) else "every query whole, instance counts fractional"
    best = None
    if len(split_q) <= PART_MAX_SPLIT * problem.n_queries:
        say(f"LP with cuts: {bound:.8g}, {what}; solving them with {backend.name}")
        part = backend_solve(backend, dataclasses.replace(strong, var_lo=lo, var_hi=hi), limits, cap.left_s())
        best = part if part.x is not None else None
    else:
        say(f"LP with cuts: {bound:.8g}, {what}: nearly the whole model")
    if best is not None and within_gap(best.objective, bound, limits.mip_rel_gap):
        return _optimal(best, bound, BoundSource.LP, t0,
                        f"{len(split_q)} split queries solved by {backend.name}, within the gap of the LP")
    if cap.spent():
        return _finish(best, bound, backend, t0, Termination.TIME_LIMIT)
    counts_bound, counted = _counts_step(strong, problem, backend, limits, cap, say, t0, have_plan=best is not None,
                                         quick=not close_gap)
    if counts_bound == math.inf:  # the relaxation has no plan: neither has the batch
        return SolveResult(Status.INFEASIBLE, None, math.nan, math.inf, BoundSource.MIP, backend.name,
                           time.perf_counter() - t0, "the model with its options relaxed is infeasible",
                           termination=Termination.INFEASIBLE)
    src = BoundSource.LP  # where ``bound`` comes from
    if counts_bound > bound:
        bound, src = counts_bound, BoundSource.MIP
    if counted is not None and (best is None or counted.objective < best.objective):
        best = counted
    if best is not None and within_gap(best.objective, bound, limits.mip_rel_gap):
        return _optimal(best, bound, src, t0, f"options solved by {backend.name} at the instance counts of the model "
                                              "with its options relaxed, within the gap of that model's bound")
    if cap.spent():
        return _finish(best, bound, backend, t0, Termination.TIME_LIMIT, src)
    if best is not None and not close_gap:
        return _finish(best, bound, backend, t0, Termination.FEASIBLE, src)
    counts_at = None if counted is None else counted.x
    return _split_then_whole(strong, problem, backend, limits, cap, best, counts_at, bound, src, t0, say)


def _split_then_whole(strong: MatrixModel, problem: Problem, backend: Solver, limits: Limits, cap: _Cap,
                      best: SolveResult | None, counts_at: np.ndarray | None, bound: float, src: BoundSource,
                      t0: float, say) -> SolveResult:
    """Step 3's plan not within the gap of its bound: the counts split at those of ``counts_at``
    (:mod:`.countsplit`; None: no counts to split at; step 4), where step 3 applies; the whole
    model (step 5) where that does not close the gap, with what is left of the limits."""
    from . import countsplit

    if (counts_at is not None and problem.n_queries >= COUNTS_MIN_QUERIES and backend.keeps_continuous
            and count_columns(strong).any()):
        # a shortcut: under a cap (a lane round's) the cap rules; else, as step 3, each part at most
        # COUNTS_TIME_FACTOR times what came before, at least COUNTS_MIN_S, and the whole model decides
        at_most_s = None if cap.end_at is not None else max(COUNTS_MIN_S, COUNTS_TIME_FACTOR * (time.perf_counter() - t0))
        split, plan = countsplit.split_bound(strong, counts_at, best, backend, limits, cap, say, at_most_s)
        if plan is not None and (best is None or plan.objective < best.objective):
            best = plan
        if split > bound:
            bound, src = split, BoundSource.MIP
        if best is not None and within_gap(best.objective, bound, limits.mip_rel_gap):
            return _optimal(best, bound, src, t0, f"options solved by {backend.name} with the instance counts split "
                                                  "at step 3's, within the gap of the lesser bound of the two parts")
        if cap.spent():
            return _finish(best, bound, backend, t0, Termination.TIME_LIMIT, src)
    return _whole_model(strong, backend, limits, cap, best, bound, src, t0, say)


def _floor_verdict(strong: MatrixModel, fr: FloorRow, lp, problem: Problem, backend: Solver, limits: Limits, cap: _Cap,
                   t0: float, say) -> str | None:
    """Why the floor row ``fr`` is out of reach (:mod:`.floor`), where the LP's answer ``lp`` calls for a
    proof and one is found, else None: an LP that is infeasible with the floor row, one LP without
    it; a floor the LP's optimum meets with no slack, in a batch for step 3, the most accuracy of
    step 3's relaxation, before steps 2-3 search for a plan (measured on the example, floor 0.666:
    5-13 s against 107 s for step 3 and 80-125 s for the whole model), within as much time as step
    3 gets."""
    from . import floor

    if lp is not None and lp.status == 2:
        return floor.lp_verdict(strong, fr, limits)
    if lp is None or lp.status != 0 or lp.x is None or problem.n_queries < COUNTS_MIN_QUERIES:
        return None
    at_most_s = max(floor.CEILING_MIN_S, floor.CEILING_TIME_FACTOR * (time.perf_counter() - t0))
    share_s = cap.share_s(RELAXED_SHARE)
    return floor.relaxation_verdict(strong, fr, np.asarray(lp.x), backend, limits,
                                    least_s(share_s, at_most_s), say)


def _out_of_reach(why: str, backend: Solver, t0: float) -> SolveResult:
    """No plan: an accuracy floor out of reach (``why``, from :mod:`.floor`)."""
    return SolveResult(Status.INFEASIBLE, None, math.nan, math.inf, BoundSource.MIP, backend.name,
                       time.perf_counter() - t0, why, termination=Termination.INFEASIBLE, reason=why)


def _whole_model(strong: MatrixModel, backend: Solver, limits: Limits, cap: _Cap, best: SolveResult | None,
                 bound: float, src: BoundSource, t0: float, say) -> SolveResult:
    """Step 5 of the module docstring: the whole model with its cuts; the better plan of it and
    ``best``, the better bound of its and ``bound`` (from ``src``)."""
    say(f"{backend.name}: the whole model with its cuts")
    full = backend_solve(backend, strong, limits, cap.left_s())
    if full.status == Status.INFEASIBLE and best is None:  # with a plan of step 2 or 3 in hand, a wrong verdict
        return full
    if full.status == Status.INFEASIBLE:
        say(f"{backend.name}: the whole model 'infeasible', but steps 2-3 have a plan of it: the verdict is ignored")
        full = dataclasses.replace(full, bound=-math.inf, bound_source=BoundSource.NONE, termination=Termination.FEASIBLE)
    if full.x is not None and (best is None or full.objective < best.objective):
        best = full
    b = max(bound, full.bound) if math.isfinite(full.bound) else bound
    src = BoundSource.MIP if math.isfinite(full.bound) and full.bound > bound else src
    if best is None:
        return dataclasses.replace(full, bound=b, bound_source=src, time_s=time.perf_counter() - t0)
    ok = within_gap(best.objective, b, limits.mip_rel_gap) or (best is full and full.status == Status.OPTIMAL)
    return dataclasses.replace(best, status=Status.OPTIMAL if ok else Status.FEASIBLE,
                               termination=Termination.OPTIMAL if ok else full.termination, bound=b, bound_source=src,
                               time_s=time.perf_counter() - t0)


@dataclasses.dataclass(frozen=True)
class _Cap:
    """One call's cap on its MILP steps together: ``end_at`` (``time.perf_counter()``; None: no cap)."""

    end_at: float | None
    limits: Limits

    def left_s(self) -> float | None:
        """What is left of the cap for the next step (None: no cap; never below 0)."""
        return None if self.end_at is None else max(self.end_at - time.perf_counter(), 0.0)

    def spent(self) -> bool:
        """Whether the limits or the cap ran out."""
        return self.limits.expired() or (self.end_at is not None and time.perf_counter() >= self.end_at)

    def share_s(self, share: float) -> float | None:
        """``share`` of what is left of the cap and the limits, the lesser (None: neither is set)."""
        left = least_s(self.left_s(), self.limits.remaining_s())
        return None if left is None else share * left


def least_s(*seconds: float | None) -> float | None:
    """The least of ``seconds`` that are set (None: none is)."""
    return min((t for t in seconds if t is not None), default=None)


def _counts_step(model: MatrixModel, problem: Problem, backend: Solver, limits: Limits, cap: _Cap, say, t0: float,
                 *, have_plan: bool, quick: bool) -> tuple[float, SolveResult | None]:
    """Step 3 where it applies (a batch of at least COUNTS_MIN_QUERIES queries; a smaller one's whole
    model is solved at once), as a shortcut: at most COUNTS_TIME_FACTOR times what the steps before
    took since ``t0`` (at least COUNTS_MIN_S), else the whole model decides. Its bound (inf: the
    relaxation is infeasible, so is the batch; where step 2 ``have_plan`` of the same model, such a
    verdict is wrong and ignored) and its plan. A ``quick`` plan (a lane round's, whose model is solved
    to the gap later where its lanes hold) gets the relaxed model solved to the gap, not a tenth of it."""
    if problem.n_queries < COUNTS_MIN_QUERIES:
        return -math.inf, None
    at_most_s = max(COUNTS_MIN_S, COUNTS_TIME_FACTOR * (time.perf_counter() - t0))
    bound, plan = _counts_first(model, backend, limits, cap, say, at_most_s=at_most_s, gap_share=1.0 if quick else 0.1,
                                time_share=QUICK_RELAXED_SHARE if quick else RELAXED_SHARE)
    return (-math.inf if bound == math.inf and have_plan else bound), plan


def _counts_first(model: MatrixModel, backend: Solver, limits: Limits, cap: _Cap, say,
                  at_most_s: float, gap_share: float = 0.1,
                  time_share: float = RELAXED_SHARE) -> tuple[float, SolveResult | None]:
    """Step 3 of the module docstring: the bound of ``model`` with its options relaxed and its other
    integer columns (instance counts, lane cuts' switches) integral (-inf where none is proven, inf
    where the backend proves that model infeasible), and the plan of the options at the counts it
    chose (None where there is none). The relaxed model gets at most ``at_most_s`` and ``time_share``
    of what is left of the cap and the limits, and is solved to ``gap_share`` of the gap. The plan
    fixes the instance counts (the u columns) only: the lane cuts' switches follow the options."""
    counts = count_columns(model)
    if not counts.any() or not backend.keeps_continuous:
        # CP-SAT: the "relaxed" model would be the whole model searched to a tenth of the gap, for the
        # LP bound it reports anyway (and the plan at its counts one more search)
        return -math.inf, None
    relaxed = options_relaxed(model)
    # a tenth of the gap by default: the plan at its counts is a few thousandths of a percent above its
    # optimum, and the two together must stay within the gap. At most half of the time left by default:
    # its answer is a bound, not a plan, and the plan at its counts and steps 4-5 need the rest
    share_s = cap.share_s(time_share)
    res = backend_solve(backend, relaxed, dataclasses.replace(limits, mip_rel_gap=limits.mip_rel_gap * gap_share),
                        least_s(share_s, at_most_s))
    if res.status == Status.INFEASIBLE:
        say(f"{backend.name}: instance counts with the options relaxed: infeasible, so is the batch")
        return math.inf, None
    if res.x is None or not math.isfinite(res.bound):
        say(f"{backend.name}: instance counts with the options relaxed: {res.status}")
        return -math.inf, None
    say(f"{backend.name}: instance counts with the options relaxed: bound {res.bound:.8g} in {res.time_s:.2f} s")
    lo, hi = model.var_lo.copy(), model.var_hi.copy()
    fix = np.zeros_like(counts)
    fix[model.u_start:model.u_start + len(model.u_dep)] = True
    fix &= counts
    lo[fix] = hi[fix] = np.round(res.x[fix])
    if cap.spent():
        return res.bound, None
    plan = backend_solve(backend, dataclasses.replace(model, var_lo=lo, var_hi=hi), limits, cap.left_s())
    if plan.x is None:
        say(f"{backend.name}: the options at those counts: {plan.status}")
        return res.bound, None
    say(f"{backend.name}: the options at those counts: {plan.objective:.8g} in {plan.time_s:.2f} s")
    return res.bound, plan


def count_columns(model: MatrixModel) -> np.ndarray:
    """The integer columns other than the options' (instance counts, lane cuts' switches): a mask."""
    counts = model.integrality == 1
    counts[: model.n_x] = False
    return counts


def options_relaxed(model: MatrixModel) -> MatrixModel:
    """Step 3's relaxation of ``model``: its options relaxed, but for those in the sets of lane cuts;
    the instance counts and every other integer column integral."""
    keep = count_columns(model) | _options_in_lane_sets(model)
    return dataclasses.replace(model, integrality=np.where(keep, 1, 0).astype(model.integrality.dtype))


def _options_in_lane_sets(model: MatrixModel) -> np.ndarray:
    """The option columns in a lane cut's set row (one with its binary switch, :mod:`.lanecuts`):
    relaxed, such a row (Σ x ≤ s − 1 + s·w) cuts off almost nothing, so they stay integral."""
    out = np.zeros(model.n_vars, dtype=bool)
    after_u = model.u_start + len(model.u_dep)
    rows = np.flatnonzero(model.row_kind == "lane")
    if model.n_vars == after_u or not len(rows):
        return out
    sub = model.A[rows]
    sets = sub[np.flatnonzero(sub[:, after_u:].getnnz(axis=1) > 0)]
    cols = sets.indices
    out[cols[cols < model.n_x]] = True
    return out


def _optimal(best: SolveResult, bound: float, src: BoundSource, t0: float, message: str) -> SolveResult:
    """``best``, within the gap of ``bound`` (from ``src``), as the call's optimal answer."""
    return dataclasses.replace(best, status=Status.OPTIMAL, termination=Termination.OPTIMAL, bound=bound,
                               bound_source=src, time_s=time.perf_counter() - t0, message=message)


def _finish(best: SolveResult | None, bound: float, backend: Solver, t0: float, stop: Termination,
            src: BoundSource = BoundSource.LP) -> SolveResult:
    """The result so far: ``best`` (None: no plan) with ``bound`` (from ``src``)."""
    dt = time.perf_counter() - t0
    if best is None:
        return SolveResult(Status.NO_SOLUTION, None, math.nan, bound, src, backend.name, dt,
                           "no plan within the limits", termination=stop)
    ok = within_gap(best.objective, bound, 0.0)
    return dataclasses.replace(best, status=Status.OPTIMAL if ok else Status.FEASIBLE, bound=bound,
                               bound_source=src, termination=stop, time_s=dt)
