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
            hi = var_hi[i]
            hi = int(hi) if np.isfinite(hi) else int(TIME_UNITS_MAX * 10)
            v.append(cp.new_int_var(int(model.var_lo[i]), hi, f"v{i}"))
        for r in range(A.shape[0]):
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
            solver.parameters.max_time_in_seconds = float(time_limit_s)
        st = solver.solve(cp, _incumbents(cp_model, so))
        dt = now() - t0
        if st == cp_model.INFEASIBLE:
            return SolveResult(Status.INFEASIBLE, None, np.nan, np.inf, BoundSource.MIP, self.name, dt, "CP-SAT: infeasible")
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            stopped = st == cp_model.UNKNOWN and time_limit_s is not None
            return SolveResult(Status.NO_SOLUTION, None, np.nan, lp_bound(model), BoundSource.LP, self.name, dt,
                               f"CP-SAT: {solver.status_name(st)}",
                               termination=Termination.TIME_LIMIT if stopped else Termination.NO_SOLUTION)
        x = np.array([solver.value(vi) for vi in v], dtype=float)
        x[is_z] = x[is_z] / T
        obj = float(model.c @ x)
        status = Status.OPTIMAL if st == cp_model.OPTIMAL else Status.FEASIBLE
        return SolveResult(status, x, obj, lp_bound(model), BoundSource.LP, self.name, dt, f"CP-SAT: {solver.status_name(st)}")
