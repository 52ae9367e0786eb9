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
