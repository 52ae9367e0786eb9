"""OR-Tools CP-SAT, on integer-scaled coefficients.

All scaling happens here, conservatively, so that every plan CP-SAT finds is feasible for the
float model: in ≤ rows the coefficients are rounded up and the right-hand side down; in ≥ rows the
reverse; equality rows must already be integral (the assignment and load rows are: loads are
counted in integer time units, z = Σ ceil(r·T)·x). Objective coefficients are scaled to integers
for the search only; the objective reported is recomputed from the float coefficients. CP-SAT's
own bound is that of the scaled model, so the bound reported is the float model's LP relaxation.
"""

from __future__ import annotations

import numpy as np

from ..formulation import MatrixModel
from ..progress import current_phase
from ..schema import BoundSource, Status, Termination
from .base import Solver, SolveResult, lp_bound, now

OBJ_SCALE_TARGET = 1e7  # the largest objective coefficient becomes about this integer
ROW_SCALE_TARGET = 1e6  # the largest coefficient of a scaled inequality row
TIME_UNITS_MAX = 1e9  # the horizon in integer time units at most
#: of a time limit, this share (at most ``LP_BOUND_RESERVE_MAX_S``) is kept for the LP bound after the search
LP_BOUND_SHARE = 0.1
LP_BOUND_RESERVE_MAX_S = 2.0
#: the search gets at least this long [s], also when building the model took (nearly) all the time
SEARCH_MIN_S = 0.05
#: the clock is checked every this many variables and rows while the model is built
CHECK_EVERY = 4096


def _past(end: float | None, step: int = 0) -> bool:
    """Whether the clock (read every ``CHECK_EVERY`` steps) has passed ``end`` (None: never)."""
    return end is not None and step % CHECK_EVERY == 0 and now() > end


def lp_reserve_s(time_limit_s: float) -> float:
    """Seconds of a time limit kept for the LP bound that follows CP-SAT's search."""
    return min(LP_BOUND_RESERVE_MAX_S, LP_BOUND_SHARE * time_limit_s)


def search_time_s(time_limit_s: float, spent_s: float) -> float:
    """CP-SAT's ``max_time_in_seconds``: the call's limit less what building the model took
    (``spent_s``, in Python: seconds on a large model) and less the LP bound's reserve; at least
    ``SEARCH_MIN_S``. The search alone given the whole limit ends the call past it (and a
    watchdog that stops the call there loses the plan found)."""
    return max(time_limit_s - spent_s - lp_reserve_s(time_limit_s), SEARCH_MIN_S)




def _whole_or_infinite(x: float) -> bool:
    """Whether a row's side is infinite (no side) or a whole number (an integral row needs no scaling)."""
    return not np.isfinite(x) or x == round(x)

def _incumbents(cp_model, scale: float):
    """A solution callback that shows each incumbent and CP-SAT's bound (both of the integer-scaled
    objective, divided back) beside the phase running (:mod:`energyopt.progress`); None where
    nobody listens, so that CP-SAT runs without one."""
    shown = current_phase()  # taken here: the callback runs in CP-SAT's threads
    if not shown.heard:
        return None

    class Incumbents(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            shown.show(f"incumbent ≈{self.objective_value / scale:.6g}, CP-SAT bound ≈{self.best_objective_bound / scale:.6g}")

    return Incumbents()


class CpSatSolver(Solver):
    name = "cpsat"
    keeps_continuous = False  # every column an integer variable: a relaxed model is the whole model

    @classmethod
    def available(cls) -> bool:
        try:
            from ortools.sat.python import cp_model  # noqa: F401
        except ImportError:
            return False
        return True

    def solve(self, model: MatrixModel, *, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4,
              threads: int = 2) -> SolveResult:
        from ortools.sat.python import cp_model

        t0 = now()
        # building ends where only the LP bound's reserve and the shortest search are left of the limit
        build_end = None if time_limit_s is None else t0 + time_limit_s - lp_reserve_s(time_limit_s) - SEARCH_MIN_S
        A = model.A.tocsr()
        kinds = model.row_kind
        # time unit: loads and deadlines in units of 1/T seconds
        t_max = max([1.0] + [float(np.max(np.abs(A.data[A.indptr[r]:A.indptr[r + 1]])))
                              for r in np.flatnonzero(kinds == "deadline")])
        T = min(1e6, TIME_UNITS_MAX / t_max)
        cp = cp_model.CpModel()
        n = model.n_vars
        is_z = np.zeros(n, dtype=bool)
        is_z[model.n_x:model.u_start] = True
        var_hi = model.var_hi.copy()
        # z is in time units: at most the largest deadline on each of the most instances a machine has
        u_hi = model.var_hi[model.u_start:]
        most = float(np.max(u_hi)) if len(u_hi) else 1.0
        var_hi[is_z] = np.ceil(t_max * T) * max(1.0, most) if np.any(is_z) else 0
        v = []
        for i in range(n):
            if _past(build_end, i):
                return self._built_too_long(t0, f"{i:,} of {n:,} variables")
            hi = var_hi[i]
            hi = int(hi) if np.isfinite(hi) else int(TIME_UNITS_MAX * 10)
            v.append(cp.new_int_var(int(model.var_lo[i]), hi, f"v{i}"))
        for r in range(A.shape[0]):
            if _past(build_end, r):
                return self._built_too_long(t0, f"{r:,} of {A.shape[0]:,} rows")
            lo_i, hi_i = A.indptr[r], A.indptr[r + 1]
            cols, a = A.indices[lo_i:hi_i], A.data[lo_i:hi_i]
            rlo, rhi, kind = model.row_lo[r], model.row_hi[r], kinds[r]
            if kind == "load":  # z - sum r x = fixed work (0 but in decompose's sub-models), in time units, rounded up
                coef = np.where(is_z[cols], 1, -np.ceil(np.abs(a) * T).astype(np.int64))
                cp.add(sum(int(c) * v[j] for j, c in zip(cols, coef)) == int(np.ceil(rlo * T)))
                continue
            if kind == "deadline":  # sum z - T_l u <= 0; capacities rounded down
                coef = np.where(is_z[cols], 1, -np.floor(np.abs(a) * T).astype(np.int64))
                cp.add(sum(int(c) * v[j] for j, c in zip(cols, coef)) <= 0)
                continue
            if rlo == rhi:
                if not np.allclose(a, np.round(a)) or rlo != round(rlo):
                    raise ValueError(f"equality row {r} ({kind}) is not integral")
                cp.add(sum(int(round(c)) * v[j] for j, c in zip(cols, a)) == int(round(rlo)))
                continue
            s = ROW_SCALE_TARGET / max(np.max(np.abs(a)), 1e-300)
            if np.allclose(a, np.round(a)) and _whole_or_infinite(rhi) and _whole_or_infinite(rlo):
                s = 1.0
            if np.isfinite(rhi):
                cp.add(sum(int(np.ceil(c * s)) * v[j] for j, c in zip(cols, a)) <= int(np.floor(rhi * s)))
            if np.isfinite(rlo):
                cp.add(sum(int(np.floor(c * s)) * v[j] for j, c in zip(cols, a)) >= int(np.ceil(rlo * s)))
        cmax = float(np.max(np.abs(model.c))) if np.any(model.c) else 1.0
        so = OBJ_SCALE_TARGET / cmax
        nz = np.flatnonzero(model.c)
        cp.minimize(sum(int(round(model.c[i] * so)) * v[i] for i in nz))
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = max(1, threads)
        solver.parameters.relative_gap_limit = mip_rel_gap
        if time_limit_s is not None:
            if _past(build_end):  # the objective's sum, on a large model, comes last
                return self._built_too_long(t0, "its objective")
            solver.parameters.max_time_in_seconds = search_time_s(time_limit_s, now() - t0)
        st = solver.solve(cp, _incumbents(cp_model, so))
        return self._answer(model, solver, st, v, is_z, T, t0, time_limit_s)

    def _answer(self, model: MatrixModel, solver, st, v: list, is_z: np.ndarray, T: float, t0: float,
                time_limit_s: float | None) -> SolveResult:
        """The result of a search that ended with status ``st``, with the LP bound."""
        from ortools.sat.python import cp_model

        dt = now() - t0
        # the LP bound gets what is left of the limit (its reserve, and what the search did not use)
        lp_s = None if time_limit_s is None else max(time_limit_s - dt, 0.0)
        if st == cp_model.INFEASIBLE:
            return SolveResult(Status.INFEASIBLE, None, np.nan, np.inf, BoundSource.MIP, self.name, dt, "CP-SAT: infeasible")
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            stopped = st == cp_model.UNKNOWN and time_limit_s is not None
            return SolveResult(Status.NO_SOLUTION, None, np.nan, lp_bound(model, lp_s), BoundSource.LP, self.name, dt,
                               f"CP-SAT: {solver.status_name(st)}",
                               termination=Termination.TIME_LIMIT if stopped else Termination.NO_SOLUTION)
        x = np.array([solver.value(vi) for vi in v], dtype=float)
        x[is_z] = x[is_z] / T
        obj = float(model.c @ x)
        status = Status.OPTIMAL if st == cp_model.OPTIMAL else Status.FEASIBLE
        return SolveResult(status, x, obj, lp_bound(model, lp_s), BoundSource.LP, self.name, dt,
                           f"CP-SAT: {solver.status_name(st)}")

    def _built_too_long(self, t0: float, where: str) -> SolveResult:
        """No search: the time limit ran out while the model was being built (at ``where``)."""
        return SolveResult(Status.NO_SOLUTION, None, np.nan, -np.inf, BoundSource.NONE, self.name, now() - t0,
                           f"CP-SAT: the time limit ran out while its model was being built ({where})",
                           termination=Termination.TIME_LIMIT)
