"""CBC through PuLP (a subprocess: its memory is not in this process's RSS).

PuLP builds one Python object per variable (about 15 µs and 5 KB each), so this backend suits
problems up to some 10^5 variables. CBC prints its bound only in its log, which is parsed; when it
stops early without one, the LP relaxation's optimum is the bound.

CBC runs with its preprocessing (CglPreProcess) off: in the CBC 2.10.3 that PuLP bundles it is
wrong on models of ours, and CBC then calls a plan above the optimum "optimal" (so its bound is
invalid), or a feasible model "infeasible". Two causes were seen on aggregate models of 3-5
queries. The preprocessing fixes columns it must not: three "exactly one" rows, a load row
L = Σ a·x with 0 ≤ L ≤ 6.7 and an accuracy row suffice (tests/test_solvers_bruteforce.py);
``-cuts off`` keeps it, only ``-preprocess off`` cures it. And it leaves a row it found redundant
as a free row, which the flow cover cut generator (CglFlowCover, unlike the MIR one) reads as an
equation "other = k · binary": it cuts with variable bounds the model does not have.

With preprocessing off, CBC crashes (segmentation fault, no answer file: PuLP raises) right after
its bound tightening proves a model infeasible (a part model with many fixed columns, or y = x/2
with 0.3 ≤ y ≤ 0.4 and x binary). After a crash, CBC runs again with its preprocessing and
without flow cover cuts: its "infeasible" then agrees with the crash and is the answer; a plan it
finds is kept with the LP relaxation's bound (its "optimal" is not trusted).

Cost, measured side by side on the 2-core machine (December 2026): the four test modules that run
CBC took 47.6 s of user CPU against 57.5 s with preprocessing (tiny models: its preprocessing
costs more than it saves); CBC alone on the raw exact model of 300 queries (2,880 columns) took
6.9 s of CPU against 2.8 s. Random tiny instances: 4 of 2,246 had a bound above the brute-force
optimum with preprocessing, none of 4,410 without (1% of CBC's calls crash and run again).
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


#: options on CBC's command line (see the module docstring)
CBC_OPTIONS: tuple[str, ...] = ("preprocess off",)
#: options of the second run after a crash with :data:`CBC_OPTIONS`
FALLBACK_OPTIONS: tuple[str, ...] = ("flowCoverCuts off",)


def _run_cbc(prob, options: tuple[str, ...], time_limit_s: float | None, mip_rel_gap: float, threads: int
             ) -> tuple[bool, str]:
    """Solve ``prob`` with CBC; (whether CBC ended with an answer, its log). PuLP's files and CBC's
    log go into a folder of this call's own, removed at its end (PuLP leaves its files behind when
    CBC crashes)."""
    import pulp

    with tempfile.TemporaryDirectory(prefix="energyopt-cbc-") as folder:
        log = os.path.join(folder, "cbc.log")
        cmd = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=mip_rel_gap, threads=threads, logPath=log,
                                options=list(options))
        cmd.tmpDir = folder
        try:
            prob.solve(cmd)
            ok = True
        except pulp.PulpSolverError:  # CBC crashed, or wrote no answer
            ok = False
        try:
            with open(log, errors="replace") as fh:
                return ok, fh.read()
        except OSError:
            return ok, ""


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
        ok, text = _run_cbc(prob, CBC_OPTIONS, time_limit_s, mip_rel_gap, threads)
        crashed = not ok
        if crashed:  # the second run, with its preprocessing: only its plan and its "infeasible" count
            left_s = None if time_limit_s is None else max(time_limit_s - (now() - t0), 1.0)
            ok, text = _run_cbc(prob, FALLBACK_OPTIONS, left_s, mip_rel_gap, threads)
            if not ok:
                return SolveResult(Status.ERROR, None, np.nan, -np.inf, BoundSource.NONE, self.name, now() - t0,
                                   "CBC: crashed twice")
        dt = now() - t0
        st = pulp.LpStatus[prob.status]
        sol_st = getattr(prob, "sol_status", None)
        m = re.findall(r"Lower bound:\s*([-+0-9.eE]+)", text) or re.findall(r"best possible\s*([-+0-9.eE]+)", text)
        log_bound = float(m[-1]) if m else None
        if crashed:
            log_bound = None
        if st == "Infeasible":
            how = " (its run without preprocessing crashed, as after proving it so)" if crashed else ""
            return SolveResult(Status.INFEASIBLE, None, np.nan, np.inf, BoundSource.MIP, self.name, dt, f"CBC: infeasible{how}")
        x = np.array([vi.varValue if vi.varValue is not None else np.nan for vi in v], dtype=float)
        has_x = not np.isnan(x).any() and sol_st in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        if not has_x:
            stopped = time_limit_s is not None and dt >= time_limit_s * 0.99
            return SolveResult(Status.NO_SOLUTION, None, np.nan, lp_bound(model), BoundSource.LP, self.name, dt, f"CBC: {st}",
                               termination=Termination.TIME_LIMIT if stopped else Termination.NO_SOLUTION)
        x = np.where(model.integrality == 1, np.round(x), x)
        obj = float(model.c @ x)
        if sol_st == pulp.LpSolutionOptimal and not crashed:
            # CBC stops when obj - its bound < ratio · max(|obj|, |bound|); the last "best possible"
            # in its log may be from a node long before that (a weaker bound, but valid)
            bound = obj if log_bound is None else max(log_bound, obj - mip_rel_gap * max(abs(obj), abs(log_bound)))
            return SolveResult(Status.OPTIMAL, x, obj, min(bound, obj), BoundSource.MIP, self.name, dt, "CBC: optimal")
        if log_bound is not None:
            return SolveResult(Status.FEASIBLE, x, obj, log_bound, BoundSource.MIP, self.name, dt, "CBC: stopped with a plan")
        how = "stopped with a plan" if not crashed else "a plan of its second run (the first crashed), the LP's bound"
        return SolveResult(Status.FEASIBLE, x, obj, lp_bound(model), BoundSource.LP, self.name, dt, f"CBC: {how}")
