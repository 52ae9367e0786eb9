"""CBC through PuLP (a subprocess: its memory is not in this process's RSS).

PuLP builds one Python object per variable (about 15 µs and 5 KB each), so this backend suits
problems up to some 10^5 variables. CBC prints its bound only in its log, which is parsed; when it
stops early without one, the LP relaxation's optimum is the bound.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..formulation import MatrixModel
from ..schema import BoundSource, Status, Termination
from .base import Solver, SolveResult, lp_bound, now


@contextmanager
def _quiet_pulp() -> Iterator[None]:
    """PuLP 3.3 warns on nearly every call about its 4.0 API; those warnings are not ours to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(PuLP 4\.0|deprecated).*", category=DeprecationWarning)
        yield


class CbcSolver(Solver):
    name = "cbc"

    @classmethod
    def available(cls) -> bool:
        try:
            import pulp
        except ImportError:
            return False
        with _quiet_pulp():
            return bool(pulp.PULP_CBC_CMD(msg=False).available())

    def solve(self, model: MatrixModel, *, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4,
              threads: int = 2) -> SolveResult:
        with _quiet_pulp():
            return self._solve(model, time_limit_s, mip_rel_gap, threads)

    def _solve(self, model: MatrixModel, time_limit_s: float | None, mip_rel_gap: float, threads: int) -> SolveResult:
        import pulp

        t0 = now()
        prob = pulp.LpProblem("energyopt", pulp.LpMinimize)
        v = [
            pulp.LpVariable(f"v{i}", lowBound=model.var_lo[i], upBound=None if np.isinf(model.var_hi[i]) else model.var_hi[i],
                            cat=pulp.LpInteger if model.integrality[i] else pulp.LpContinuous)
            for i in range(model.n_vars)
        ]
        nz = np.flatnonzero(model.c)
        prob += pulp.LpAffineExpression([(v[i], float(model.c[i])) for i in nz]) if len(nz) else pulp.LpAffineExpression()
        A = model.A.tocsr()
        for r in range(A.shape[0]):
            lo, hi = A.indptr[r], A.indptr[r + 1]
            expr = pulp.LpAffineExpression([(v[j], float(a)) for j, a in zip(A.indices[lo:hi], A.data[lo:hi])])
            rlo, rhi = model.row_lo[r], model.row_hi[r]
            if rlo == rhi:
                prob += expr == float(rlo)
            else:
                if np.isfinite(rhi):
                    prob += expr <= float(rhi)
                if np.isfinite(rlo):
                    prob += expr >= float(rlo)
        fd, log = tempfile.mkstemp(suffix=".log", prefix="energyopt-cbc-")
        os.close(fd)
        try:
            cmd = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=mip_rel_gap, threads=threads, logPath=log)
            prob.solve(cmd)
            with open(log, errors="replace") as fh:
                text = fh.read()
        finally:
            os.unlink(log)
        dt = now() - t0
        st = pulp.LpStatus[prob.status]
        sol_st = getattr(prob, "sol_status", None)
        m = re.findall(r"Lower bound:\s*([-+0-9.eE]+)", text) or re.findall(r"best possible\s*([-+0-9.eE]+)", text)
        log_bound = float(m[-1]) if m else None
        if st == "Infeasible":
            return SolveResult(Status.INFEASIBLE, None, np.nan, np.inf, BoundSource.MIP, self.name, dt, "CBC: infeasible")
        x = np.array([vi.varValue if vi.varValue is not None else np.nan for vi in v], dtype=float)
        has_x = not np.isnan(x).any() and sol_st in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        if not has_x:
            stopped = time_limit_s is not None and dt >= time_limit_s * 0.99
            return SolveResult(Status.NO_SOLUTION, None, np.nan, lp_bound(model), BoundSource.LP, self.name, dt, f"CBC: {st}",
                               termination=Termination.TIME_LIMIT if stopped else Termination.NO_SOLUTION)
        x = np.where(model.integrality == 1, np.round(x), x)
        obj = float(model.c @ x)
        if sol_st == pulp.LpSolutionOptimal:
            bound = log_bound if log_bound is not None else obj
            return SolveResult(Status.OPTIMAL, x, obj, min(bound, obj), BoundSource.MIP, self.name, dt, "CBC: optimal")
        if log_bound is not None:
            return SolveResult(Status.FEASIBLE, x, obj, log_bound, BoundSource.MIP, self.name, dt, "CBC: stopped with a plan")
        return SolveResult(Status.FEASIBLE, x, obj, lp_bound(model), BoundSource.LP, self.name, dt, "CBC: stopped with a plan")
