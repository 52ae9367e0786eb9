"""The decomposition for large batches: its bound against brute force, its plans against the checker."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import lognormal_workload, random_instance
from energyopt.check import check_plan
from energyopt.decompose import knapsack_max, lagrangian_bound
from energyopt.plan import plan
from energyopt.problem import build_problem
from test_solvers_bruteforce import brute_force


@pytest.mark.parametrize("seed", range(30))
def test_knapsack_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    v = rng.normal(5, 5, n)
    s = rng.integers(1, 5, n)
    u = rng.integers(0, 4, n)
    cap = int(rng.integers(0, 12))
    val, take = knapsack_max(v, s, u, cap)
    best = max(
        (float(np.dot(v, c)) for c in itertools.product(*[range(int(x) + 1) for x in u]) if np.dot(s, c) <= cap),
        default=0.0,
    )
    assert val == pytest.approx(max(best, 0.0))
    assert np.dot(s, take) <= cap and np.all(take <= u) and float(np.dot(v, take)) == pytest.approx(val)


@pytest.mark.parametrize("seed", range(60))
def test_bound_below_brute_force_and_plan_checks(seed):
    """The Lagrangian bound never exceeds the true optimum; every decomposed plan is valid and
    at or above it; an infeasible instance is never given a plan."""
    wl, fleet, models, kw = random_instance(2000 + seed, n_q=5)
    problem = build_problem(wl, fleet, models, **kw)
    opt = brute_force(problem) if problem.unservable.empty else math.inf
    if problem.unservable.empty:
        dual, _ = lagrangian_bound(problem)
        assert dual.bound <= opt + 1e-6 * max(1.0, abs(opt)) or math.isinf(opt), seed
    s = plan(wl, fleet, models, solver="highs", formulation="decompose", mip_rel_gap=0.0, **kw)
    if s.status.value in ("optimal", "feasible"):
        assert s.bound <= opt + 1e-6 * max(1.0, abs(opt))
        assert s.objective >= opt - 1e-6 * max(1.0, abs(opt))
        assert check_plan(s.assignment, wl, fleet, models, min_mean_accuracy=kw.get("min_mean_accuracy")) == []
    else:
        assert math.isinf(opt) or s.status.value == "no_solution", (seed, s.status, opt)


def test_large_batch_gap_and_agreement_with_the_milp(synthetic_models, synthetic_fleet):
    """Thousands of queries with a mean-accuracy floor and deadlines: the decomposed plan is
    within 0.01% of its bound and agrees with the aggregate MILP."""
    import dataclasses

    from energyopt.fleet import read_fleet

    fleet = dataclasses.replace(read_fleet(synthetic_fleet), horizon_s=4 * 3600.0)
    wl = lognormal_workload(3000, seed=5, deadline_fraction=0.2, deadline_range=(600, 6000))
    kw = {"min_mean_accuracy": 0.55}
    d = plan(wl, fleet, synthetic_models, solver="highs", formulation="decompose", **kw)
    assert d.status.value in ("optimal", "feasible"), d.message
    assert d.gap <= 1e-4
    a = plan(wl, fleet, synthetic_models, solver="cbc", formulation="aggregate", mip_rel_gap=1e-6, **kw)
    assert a.status.value in ("optimal", "feasible")
    assert d.objective >= a.bound - 1e-6 * a.objective and a.objective >= d.bound - 1e-6 * d.objective
    assert abs(d.objective - a.objective) <= 2e-4 * a.objective


def test_over_capacity_is_proven_infeasible(synthetic_models, synthetic_fleet):
    import dataclasses

    wl = lognormal_workload(3000, seed=6)
    from energyopt.fleet import read_fleet

    small = dataclasses.replace(read_fleet(synthetic_fleet), horizon_s=30.0)
    s = plan(wl, small, synthetic_models, solver="highs", formulation="decompose")
    assert s.status.value == "infeasible" and s.message
