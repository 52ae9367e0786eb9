"""Every backend against a brute-force optimum on hundreds of tiny random instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import random_instance
from energyopt.check import check_plan
from energyopt.plan import plan
from energyopt.problem import build_problem

N_INSTANCES = 240


def brute_force(problem) -> float:
    """Least objective over every (deployment, instance) per query; inf if none is feasible."""
    cand = problem.cand
    deps = problem.deployments
    m = deps["max_instances"].to_numpy()
    k = deps["devices_per_instance"].to_numpy()
    pool = deps["device"].to_numpy()
    count = dict(zip(problem.pools["pool"], problem.pools["count"]))
    w = problem.queries["weight"].to_numpy()
    opts = []
    for q in range(problem.n_queries):
        rows = cand[cand["q"] == q]
        opts.append([(int(i), int(r.d), j) for i, r in rows.iterrows() for j in range(m[int(r.d)])])
    if any(not o for o in opts):
        return math.inf
    best = math.inf
    for combo in itertools.product(*opts):
        on = {(d, j) for _, d, j in combo}
        dev = {p: 0 for p in count}
        for d, _ in on:
            dev[pool[d]] += k[d]
        if any(dev[p] > count[p] for p in count):
            continue
        if problem.min_mean_accuracy is not None:
            acc = sum(w[q] * cand.at[c, "accuracy"] for q, (c, _, _) in enumerate(combo))
            if acc < problem.min_mean_accuracy * w.sum() - 1e-9:
                continue
        ok = True
        for d, j in on:
            jobs = sorted((cand.at[c, "deadline_eff_s"], cand.at[c, "runtime_s"]) for c, dd, jj in combo if (dd, jj) == (d, j))
            t = 0.0
            for dl, r in jobs:
                t += r
                if t > dl + 1e-9:
                    ok = False
                    break
            if not ok:
                break
        if not ok:
            continue
        cost = sum(cand.at[c, "cost"] for c, _, _ in combo) + sum(problem.instance_cost[d] for d, _ in on)
        best = min(best, cost)
    return best


@pytest.mark.parametrize("chunk", range(6))
def test_backends_match_brute_force(chunk):
    solved = 0
    for seed in range(chunk * N_INSTANCES // 6, (chunk + 1) * N_INSTANCES // 6):
        wl, fleet, models, kw = random_instance(seed)
        problem = build_problem(wl, fleet, models, **kw)
        opt = brute_force(problem) if problem.unservable.empty else math.inf
        for solver in ("highs", "cbc", "cpsat"):
            s = plan(wl, fleet, models, solver=solver, formulation="exact", mip_rel_gap=0.0, **kw)
            tol = 1e-6 * max(1.0, abs(opt)) if solver != "cpsat" else 1e-4 * max(1.0, abs(opt))
            if math.isinf(opt):
                assert s.status.value == "infeasible", (seed, solver, s.summary())
                continue
            assert s.status.value in ("optimal", "feasible"), (seed, solver, s.message)
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
    opt = brute_force(problem) if problem.unservable.empty else math.inf
    s = plan(wl, fleet, models, solver="highs", formulation="aggregate", mip_rel_gap=0.0, **kw)
    if s.status.value in ("optimal", "feasible"):
        assert s.bound <= opt + 1e-6 * max(1, abs(opt))
        assert s.objective >= opt - 1e-6 * max(1, abs(opt))
        assert check_plan(s.assignment, wl, fleet, models, min_mean_accuracy=kw.get("min_mean_accuracy")) == []
    elif math.isinf(opt):
        assert s.status.value in ("infeasible", "no_solution")


def test_solvers_agree_on_a_larger_instance(synthetic_models, synthetic_fleet):
    from conftest import lognormal_workload

    wl = lognormal_workload(150, seed=3, deadline_fraction=0.3, deadline_range=(30, 300))
    objs = {}
    for solver in ("highs", "cbc", "cpsat"):
        s = plan(wl, synthetic_fleet, synthetic_models, solver=solver, formulation="aggregate", mip_rel_gap=1e-6)
        assert s.status.value in ("optimal", "feasible")
        objs[solver] = (s.objective, s.bound)
    best_bound = max(b for _, b in objs.values())
    for o, b in objs.values():
        assert o >= best_bound - 1e-6 * abs(o)  # every plan is above every valid bound
    lo = min(o for o, _ in objs.values())
    for o, _ in objs.values():
        assert o <= lo * (1 + 1e-3)


def test_repair_never_lowers_accuracy_under_a_mean_floor():
    """A late query is moved only to an option at least as accurate when a mean floor is set."""
    import pandas as pd

    from conftest import make_models
    from energyopt.fleet import fleet_from_dict
    from energyopt.packing import pack

    fleet = fleet_from_dict({
        "horizon_s": 100.0,
        "pools": {"g": {"kind": "gpu", "count": 3, "memory_gb": 80, "idle_power_w": 0}},
        "llms": {"lo": {"accuracy": 0.3, "accuracy_source": "t", "params_b": 1},
                 "hi": {"accuracy": 0.7, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "hi", "pool": "g", "max_instances": 2}, {"llm": "lo", "pool": "g", "max_instances": 1}],
    })
    models = make_models({("hi", "g"): ((10, 0, 0, 0), (0, 0, 0.1, 0)), ("lo", "g"): ((1, 0, 0, 0), (0, 0, 0.1, 0))})
    wl = pd.DataFrame({"query_id": ["a", "b"], "input_tokens": [10, 10], "output_tokens": [50, 50],
                       "min_accuracy": [0.0, 0.0], "deadline_s": [5.0, 5.0]})
    for floor, want in ((None, "lo"), (0.7, "hi")):
        p = build_problem(wl, fleet, models, min_mean_accuracy=floor)
        # both on one "hi" instance: the second finishes at 10 s > 5 s and must be repaired
        tl = pack(p, np.array([0, 0]), np.array([1, 0]))
        moved = [q for q in range(2) if tl.dep[q] != 0]
        dep = {0: "hi", 1: "lo"}
        got = dep[int(tl.dep[moved[0]])] if moved else "hi"
        assert got == want and not tl.unplaced


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
    assert res.status.value == "no_solution" and "watchdog" in res.message
    assert _time.perf_counter() - t0 < 10
    ok = solve_with_watchdog(__import__("energyopt.solvers.highs", fromlist=["HighsSolver"]).HighsSolver(), model, time_limit_s=5)
    assert ok.status.value in ("optimal", "infeasible")


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
    assert res.status.value in ("optimal", "infeasible")
    assert "noise" not in capfd.readouterr().out
