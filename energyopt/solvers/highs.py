"""HiGHS through scipy.optimize.milp.

scipy bundles its own HiGHS, which coexists in one process with OR-Tools (whose bundled HiGHS
clashes with the ``highspy`` package: whichever is imported second fails). Its MIP dual bound is
reported as the bound.
"""

from __future__ import annotations

import numpy as np

from ..formulation import MatrixModel
from ..schema import BoundSource, Status, Termination
from .base import Solver, SolveResult, lp_bound, native_stdout_silenced, now


class HighsSolver(Solver):
    name = "highs"

    @classmethod
    def available(cls) -> bool:
        try:
            from scipy.optimize import milp  # noqa: F401
        except ImportError:
            return False
        return True

    def solve(self, model: MatrixModel, *, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4,
              threads: int = 2) -> SolveResult:
        from scipy.optimize import Bounds, LinearConstraint, milp

        t0 = now()
        opts: dict = {"disp": False, "mip_rel_gap": mip_rel_gap, "presolve": True}
        if time_limit_s is not None:
            opts["time_limit"] = float(time_limit_s)
        cons = [LinearConstraint(model.A, model.row_lo, model.row_hi)] if model.A.shape[0] else []
        bounds = Bounds(model.var_lo, model.var_hi)
        with native_stdout_silenced():
            res = milp(model.c, constraints=cons, integrality=model.integrality, bounds=bounds, options=opts)
            if res.status == 2:
                # HiGHS's presolve has been seen to declare a feasible aggregate model (119 rows, solved by CBC
                # and by HiGHS without presolve) infeasible: confirm without presolve before reporting a proof
                res = milp(model.c, constraints=cons, integrality=model.integrality, bounds=bounds,
                           options={**opts, "presolve": False})
        dt = now() - t0
        bound = getattr(res, "mip_dual_bound", None)
        bound = float(bound) if bound is not None and np.isfinite(bound) else -np.inf
        if res.status == 0:
            x = np.asarray(res.x)
            obj = float(model.c @ x)
            if not np.isfinite(bound):
                # no dual bound: an LP's optimum is its own bound; a MIP's "optimal" is within the gap of
                # some bound HiGHS did not report, so the bound is the least the gap allows (with
                # max(|obj|, 1): HiGHS's relative gap never divides by less)
                has_int = bool(np.any(model.integrality == 1))
                bound = obj - mip_rel_gap * max(abs(obj), 1.0) if has_int else obj
            return SolveResult(Status.OPTIMAL, x, obj, bound, BoundSource.MIP, self.name, dt, res.message)
        if res.status == 2:
            return SolveResult(Status.INFEASIBLE, None, np.nan, np.inf, BoundSource.MIP, self.name, dt, res.message)
        if res.x is not None:
            x = np.asarray(res.x)
            src = BoundSource.MIP
            if not np.isfinite(bound):
                bound, src = lp_bound(model), BoundSource.LP
            return SolveResult(Status.FEASIBLE, x, float(model.c @ x), bound, src, self.name, dt, res.message)
        stop = Termination.TIME_LIMIT if res.status == 1 else Termination.NO_SOLUTION
        return SolveResult(Status.NO_SOLUTION, None, np.nan, bound, BoundSource.MIP if np.isfinite(bound) else BoundSource.NONE,
                           self.name, dt, res.message, termination=stop)
