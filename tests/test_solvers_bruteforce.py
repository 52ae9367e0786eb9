"""Every backend against a brute-force optimum on hundreds of tiny random instances."""

from __future__ import annotations

import math

import pytest
from conftest import random_instance
from oracles import brute_force_optimum

from energyopt.check import check_plan
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schema import Status

N_INSTANCES = 180  # 3 backends each, exact model: about 30 s on the 2-core machine


@pytest.mark.parametrize("chunk", range(6))
def test_backends_match_brute_force(chunk):
    solved = 0
    for seed in range(chunk * N_INSTANCES // 6, (chunk + 1) * N_INSTANCES // 6):
        wl, fleet, models, kw = random_instance(seed)
        problem = build_problem(wl, fleet, models, **kw)
        opt = brute_force_optimum(problem) if problem.unservable.empty else math.inf
        for solver in ("highs", "cbc", "cpsat"):
            s = plan(wl, fleet, models, solver=solver, formulation="exact", mip_rel_gap=0.0, **kw)
            tol = 1e-6 * max(1.0, abs(opt)) if solver != "cpsat" else 1e-4 * max(1.0, abs(opt))
            if math.isinf(opt):
                assert s.status is Status.INFEASIBLE, (seed, solver, s.summary())
                continue
            assert s.status.has_plan, (seed, solver, s.message)
            assert s.objective == pytest.approx(opt, abs=tol), (seed, solver, kw)
            assert s.bound <= opt + tol, (seed, solver)
            assert check_plan(s.assignment, wl, fleet, models, min_mean_accuracy=kw.get("min_mean_accuracy")) == []
        solved += not math.isinf(opt)
    assert solved > 0


@pytest.mark.parametrize("seed", range(40))
def test_aggregate_bound_is_valid_and_plan_checks(seed):
    """The aggregate relaxation's bound never exceeds the true optimum; its packed plan is valid."""
    wl, fleet, models, kw = random_instance(1000 + seed, n_q=5)
    problem = build_problem(wl, fleet, models, **kw)
    opt = brute_force_optimum(problem) if problem.unservable.empty else math.inf
    s = plan(wl, fleet, models, solver="highs", formulation="aggregate", mip_rel_gap=0.0, **kw)
    if s.status.has_plan:
        assert s.bound <= opt + 1e-6 * max(1, abs(opt))
        assert s.objective >= opt - 1e-6 * max(1, abs(opt))
        assert check_plan(s.assignment, wl, fleet, models, min_mean_accuracy=kw.get("min_mean_accuracy")) == []
    elif math.isinf(opt):
        assert s.status in (Status.INFEASIBLE, Status.NO_SOLUTION)


def test_solvers_agree_on_a_larger_instance(synthetic_models, synthetic_fleet):
    from conftest import lognormal_workload

    wl = lognormal_workload(150, seed=3, deadline_fraction=0.3, deadline_range=(30, 300))
    objs = {}
    for solver in ("highs", "cbc", "cpsat"):
        s = plan(wl, synthetic_fleet, synthetic_models, solver=solver, formulation="aggregate", mip_rel_gap=1e-6)
        assert s.status.has_plan
        objs[solver] = (s.objective, s.bound)
    best_bound = max(b for _, b in objs.values())
    for o, _ in objs.values():
        assert o >= best_bound - 1e-6 * abs(o)  # every plan is above every valid bound
    lo = min(o for o, _ in objs.values())
    for o, _ in objs.values():
        assert o <= lo * (1 + 1e-3)


def test_watchdog_stops_a_backend_that_ignores_its_time_limit():
    import time as _time

    from energyopt.formulation import build_matrix
    from energyopt.solvers.base import Solver
    from energyopt.solvers.watchdog import solve_with_watchdog

    class Stuck(Solver):
        name = "stuck"

        @classmethod
        def available(cls):
            return True

        def solve(self, model, *, time_limit_s=None, mip_rel_gap=1e-4, threads=2):
            _time.sleep(60)

    wl, fleet, models, kw = random_instance(3)
    model = build_matrix(build_problem(wl, fleet, models, **kw), "exact")
    t0 = _time.perf_counter()
    res = solve_with_watchdog(Stuck(), model, time_limit_s=0.2, grace_factor=1.0, grace_s=0.5)
    assert res.status is Status.NO_SOLUTION and "watchdog" in res.message
    assert _time.perf_counter() - t0 < 10
    ok = solve_with_watchdog(__import__("energyopt.solvers.highs", fromlist=["HighsSolver"]).HighsSolver(), model, time_limit_s=5)
    assert ok.status in (Status.OPTIMAL, Status.INFEASIBLE)


def test_watchdog_child_keeps_solver_noise_off_stdout(capfd):
    """A backend that writes to file descriptor 1 (as HiGHS's C code sometimes does) in the
    watched child: nothing reaches the program's stdout, and the answer still arrives."""
    import os as _os

    from energyopt.formulation import build_matrix
    from energyopt.solvers.highs import HighsSolver
    from energyopt.solvers.watchdog import solve_with_watchdog

    class Noisy(HighsSolver):
        def solve(self, model, **kw):
            _os.write(1, b"HighsMipSolverData::noise\n")
            return super().solve(model, **kw)

    wl, fleet, models, kw = random_instance(3)
    model = build_matrix(build_problem(wl, fleet, models, **kw), "exact")
    res = solve_with_watchdog(Noisy(), model, time_limit_s=5)
    assert res.status in (Status.OPTIMAL, Status.INFEASIBLE)
    assert "noise" not in capfd.readouterr().out


def test_native_prints_of_a_solver_go_neither_to_stdout_nor_to_stderr(capfd):
    """HiGHS prints debug lines with C's printf (log off): stdout stays for --json and -o - alone,
    and --quiet stays quiet (3 such lines on stderr under solve -q --min-mean-accuracy 0.626)."""
    import os

    from energyopt.solvers.base import native_stdout_silenced

    with native_stdout_silenced():
        os.write(1, b"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\n")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "after\n"
    assert "HighsMipSolverData" not in err



# --- CBC 2.10.3 (PuLP's) on models where its preprocessing is wrong (see solvers/cbc.py) ----------

def _matrix_model(c, rows, var_hi, integrality):
    """A MatrixModel of columns ≥ 0 from ``rows`` = [(coefficients, lo, hi)], for a backend alone."""
    import numpy as np
    import scipy.sparse as sp

    from energyopt.formulation import MatrixModel

    n = len(c)
    none = np.full(n, -1)
    return MatrixModel("exact", np.asarray(c, float), sp.csr_matrix(np.array([r[0] for r in rows], float)),
                       np.array([r[1] for r in rows], float), np.array([r[2] for r in rows], float), np.zeros(n),
                       np.asarray(var_hi, float), np.asarray(integrality), n, none, none, none, np.zeros(0, int),
                       np.zeros(0, int), n, np.array(["assign"] * len(rows)))


def test_cbc_finds_the_optimum_where_its_preprocessing_fixes_columns_it_must_not():
    """Three queries (options x0-x2, x3-x4, x5-x7), a load L = 2.5 x2 + 2.5 x4 + 5.3 x7 ≤ 6.7 and
    an accuracy row: the optimum is 454 (x0, x3, x7); CBC with its preprocessing says 482 is optimal
    (x0, x4, x6), with or without its cuts."""
    from energyopt.solvers.cbc import CbcSolver

    one = [[1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1, 0]]
    rows = [(r, 1, 1) for r in one] + [([0, 0, -2.5, 0, -2.5, 0, 0, -5.3, 1], 0, 0),
                                       ([118, 207, 207, 131, 131, 229, 400, 400, 0], 577, math.inf)]
    model = _matrix_model([86, 131, 102, 131, 100, 183, 296, 237, 0], rows, [1] * 8 + [6.7], [1] * 8 + [0])
    res = CbcSolver().solve(model, mip_rel_gap=0.0)
    assert res.status is Status.OPTIMAL and res.objective == pytest.approx(454) and res.bound <= 454 + 1e-6


def test_cbc_crashing_where_its_bound_tightening_proves_a_model_infeasible_answers_infeasible():
    """y = x/2 with 0.3 ≤ y ≤ 0.4, x binary: the LP has a point, no integer one. Without its
    preprocessing CBC crashes after proving it (no answer file: PuLP raises); the answer is infeasible."""
    from energyopt.solvers.cbc import CbcSolver

    model = _matrix_model([1, 0], [([-0.5, 1], 0, 0), ([0, 1], 0.3, 0.4)], [1, math.inf], [1, 0])
    res = CbcSolver().solve(model, mip_rel_gap=0.0)
    assert res.status is Status.INFEASIBLE and res.bound == math.inf and "crashed" in res.message


#: random_instance(seed, n_q) where CBC with its preprocessing called a plan of the aggregate model
#: above the model's optimum optimal, and so handed back a bound above the batch's optimum: by its
#: flow cover cuts on a row its preprocessing left free (the first, whose bound 0.4877 > 0.4429 made
#: test_methods' property test fail; also the second), or by its preprocessing alone (the third)
CBC_FALSE_OPTIMA = [(762692189, 4), (556105626, 5), (1734799135, 3), (1708249126, 5)]


@pytest.mark.parametrize(("seed", "n_q"), CBC_FALSE_OPTIMA)
def test_cbc_optimum_and_bound_where_its_preprocessing_made_it_claim_a_plan_above_the_optimum(seed, n_q, monkeypatch):
    """CBC's optimum of each model it is given equals scipy's HiGHS optimum of the same model, and
    the bound it hands back is at most the batch's optimum found by enumeration."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    from energyopt.methods import Limits, get_method
    from energyopt.solvers import get_solver
    from energyopt.solvers.cbc import CbcSolver

    given = []
    solve = CbcSolver.solve

    def spy(self, model, **kw):
        res = solve(self, model, **kw)
        given.append((model, res))
        return res

    monkeypatch.setattr(CbcSolver, "solve", spy)
    wl, fleet, models, kw = random_instance(seed, n_q=n_q)
    problem = build_problem(wl, fleet, models, **kw)
    opt = brute_force_optimum(problem)
    c = get_method("aggregate").solve(problem, get_solver("cbc"), Limits(mip_rel_gap=0.0), lambda _: None)
    assert c.bound <= opt + 1e-6 * max(1.0, abs(opt)), (c.bound, opt)
    assert given
    for model, res in given:
        ref = milp(model.c, constraints=LinearConstraint(model.A, model.row_lo, model.row_hi),
                   bounds=Bounds(model.var_lo, model.var_hi), integrality=model.integrality)
        assert ref.status == 0 and res.status is Status.OPTIMAL
        assert res.objective == pytest.approx(ref.fun, abs=1e-6 * max(1.0, abs(ref.fun)))
        assert res.bound <= ref.fun + 1e-6 * max(1.0, abs(ref.fun))


def test_highs_optimal_without_a_dual_bound_claims_no_more_than_the_gap_allows(monkeypatch):
    """Where scipy's result has no MIP dual bound, a MIP "optimal" within gap g is bounded by
    objective − g·max(|objective|, 1), not by the objective (which overstates it by up to g); an LP's
    optimum is its own bound."""
    import dataclasses

    import numpy as np
    import scipy.optimize

    from energyopt.formulation import build_matrix
    from energyopt.solvers.highs import HighsSolver

    real = scipy.optimize.milp

    def no_dual_bound(*a, **kw):
        res = real(*a, **kw)
        res.mip_dual_bound = None
        return res

    monkeypatch.setattr(scipy.optimize, "milp", no_dual_bound)
    wl, fleet, models, kw = random_instance(3)
    model = build_matrix(build_problem(wl, fleet, models, **kw), "exact")
    res = HighsSolver().solve(model, mip_rel_gap=1e-3)
    assert res.status is Status.OPTIMAL
    assert res.bound == pytest.approx(res.objective - 1e-3 * max(abs(res.objective), 1.0), rel=1e-12)
    lp = dataclasses.replace(model, integrality=np.zeros_like(model.integrality))
    res = HighsSolver().solve(lp, mip_rel_gap=1e-3)
    assert res.status is Status.OPTIMAL and res.bound == res.objective
