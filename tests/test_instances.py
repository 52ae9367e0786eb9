"""Whole instances in the Lagrangian bound (methods/instances.py and decompose's instance search):
the master against enumeration, the raised bound against brute force, and a large idle batch whose
gap the master closes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import TWO_LLM_MODELS, make_models, random_instance, two_llm_fleet, workload_of
from oracles import brute_force_optimum

from energyopt.check import check_plan
from energyopt.methods import Limits
from energyopt.methods.decompose import instance_search, lagrangian_bound
from energyopt.methods.instances import instance_master, option_patterns
from energyopt.plan import plan
from energyopt.problem import build_problem


def _master_by_enumeration(alpha, gain, pools, groups, devices, max_inst, patterns) -> float:
    """min over every allowed integer n of max_c (alpha_c − gain_c·n)."""
    best = math.inf
    for n in itertools.product(*[range(int(u) + 1) for u in max_inst]):
        n = np.array(n)
        if any(int(devices[ds] @ n[ds]) > cnt for cnt, ds in pools):
            continue
        if any(len(m) > 1 and int(n[m].sum()) > int(max_inst[m[0]]) for m in groups):
            continue
        if any(not np.any(n[p]) for p in patterns):
            continue
        best = min(best, float(np.max(alpha - gain @ n)))
    return best


@pytest.mark.parametrize("seed", range(25))
def test_instance_master_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    n_d = int(rng.integers(2, 5))
    pool_of = rng.integers(0, 2, n_d)
    devices = rng.integers(1, 3, n_d)
    pools = [(int(rng.integers(1, 5)), np.flatnonzero(pool_of == p)) for p in range(2)]
    max_inst = rng.integers(1, 4, n_d)
    groups = [np.array([0, 1])] + [np.array([d]) for d in range(2, n_d)] if rng.random() < 0.5 else \
        [np.array([d]) for d in range(n_d)]
    if len(groups[0]) == 2:
        max_inst[1] = max_inst[0]
    patterns = option_patterns(rng.random((6, n_d)) < 0.5)
    n_cuts = int(rng.integers(1, 6))
    alpha = rng.normal(100, 30, n_cuts)
    gain = rng.normal(0, 20, (n_cuts, n_d))
    value, n = instance_master(alpha, gain, pools, groups, devices, max_inst, patterns)
    want = _master_by_enumeration(alpha, gain, pools, groups, devices, max_inst, patterns)
    if math.isinf(want):
        assert value == math.inf and n is None
    else:
        assert value <= want + 1e-9 * max(1.0, abs(want))
        assert value == pytest.approx(want, rel=1e-4, abs=1e-3)
        assert float(np.max(alpha - gain @ n)) == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_option_patterns_are_the_distinct_option_sets():
    ok = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
    assert sorted(map(tuple, option_patterns(ok).astype(int).tolist())) == [(0, 1, 0), (1, 0, 1)]


@pytest.mark.parametrize("seed", range(40))
def test_instance_search_bound_stays_below_brute_force(seed):
    """With idle power counted, the master's bound is valid (never above the brute-force
    optimum) and never below the Lagrangian bound it starts from."""
    wl, fleet, models, kw = random_instance(5000 + seed, n_q=4)
    kw["idle"] = True
    problem = build_problem(wl, fleet, models, **kw)
    if not problem.unservable.empty:
        return
    opt = brute_force_optimum(problem)
    dual, D = lagrangian_bound(problem)
    if dual.infeasible:
        assert math.isinf(opt)
        return
    got = instance_search(problem, D, dual, math.inf, Limits(mip_rel_gap=0.0))
    assert got >= dual.bound
    assert got <= opt + 1e-6 * max(1.0, abs(opt)), (seed, got, opt)


def test_idle_of_the_instance_every_plan_needs_is_in_the_bound():
    """Three short queries; a GPU instance idles 5,000 J over the horizon, a CPU instance 1,000 J;
    above idle, small@g costs 50 J and 1 s, big@c 100 J and 10 s. The Lagrangian prices a sliver
    of the GPU instance (its idle per second of capacity, 50 J/s): 3 × (50 + 50) = 300 J. Every plan
    switches on a whole instance: the best is the three on big@c, 3 × 100 J + 1,000 J idle =
    1,300 J, and the master proves it."""
    wl = workload_of([(10, 100, 0.0, None)] * 3)
    p = build_problem(wl, two_llm_fleet(horizon_s=100.0), make_models(TWO_LLM_MODELS), idle=True)
    assert brute_force_optimum(p) == pytest.approx(1300.0)
    dual, D = lagrangian_bound(p)
    assert dual.bound == pytest.approx(300.0, rel=1e-6)
    got = instance_search(p, D, dual, math.inf, Limits(mip_rel_gap=0.0))
    assert got == pytest.approx(1300.0, rel=1e-4) and got <= 1300.0 * (1 + 1e-9)


def test_a_large_idle_batch_is_proven_near_optimal():
    """3,000 queries (past the size solved as one MILP) that one or two instances serve, idle
    power counted: the plan passes the checker and its gap is the master's, ≤ 0.1% (the
    Lagrangian bound alone, which prices slivers of instances, left 51% here)."""
    rng = np.random.default_rng(3)
    rows = [(int(t), int(o), 0.6 if rng.random() < 0.2 else 0.0, None)
            for t, o in zip(rng.integers(10, 500, 3000), rng.integers(5, 40, 3000))]
    wl = workload_of(rows)
    fleet = two_llm_fleet(horizon_s=2000.0)
    models = make_models(TWO_LLM_MODELS)
    s = plan(wl, fleet, models, solver="highs", formulation="decompose", idle=True)
    assert s.status.has_plan, s.message
    assert check_plan(s.assignment, wl, fleet, models, idle=True) == []
    assert s.gap <= 1e-3, s.gap


def _capacity_bound_case():
    """3,000 short queries, a mean-accuracy floor of 0.6 that needs the big LLM, three GPUs for
    150 s: the GPUs cannot hold every query's cheapest priced option, most work goes to CPUs."""
    from conftest import fleet_from_dict

    rng = np.random.default_rng(4)
    wl = workload_of([(int(t), int(o), 0.0, None) for t, o in zip(rng.integers(10, 900, 3000), rng.integers(5, 60, 3000))])
    fleet = fleet_from_dict({
        "horizon_s": 150.0,
        "pools": {"g": {"kind": "gpu", "count": 3, "memory_gb": 80, "idle_power_w": 50},
                  "c": {"kind": "cpu", "count": 40, "memory_gb": 80, "idle_power_w": 0}},
        "llms": {"small": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1, "context_tokens": 1000},
                 "big": {"accuracy": 0.8, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "small", "pool": "g"}, {"llm": "big", "pool": "g"}, {"llm": "big", "pool": "c"},
                        {"llm": "small", "pool": "c"}]})
    models = make_models({**TWO_LLM_MODELS, ("small", "c"): ((0, 0, 1.5, 0), (0, 0, 0.08, 0))})
    return wl, fleet, models


def test_capacity_bound_fix_fills_the_pools_first():
    """Where the pools cannot hold the prices' choices, the fixed queries are filled into whole
    instances that fit, meeting the accuracy floor: the first MILP, on 300 free queries, has a
    feasible completion (before, the fixed queries overfilled the GPUs and the freed set grew
    fourfold until it held the whole batch) and its plan passes the checker."""
    from energyopt.methods.decompose import _Dense, _fill_meeting_floor, _instances_needed, _pools_over, fix_and_solve
    from energyopt.packing import pack
    from energyopt.solvers import get_solver

    wl, fleet, models = _capacity_bound_case()
    p = build_problem(wl, fleet, models, min_mean_accuracy=0.6)
    dual, D = lagrangian_bound(p)
    assert _pools_over(D, _instances_needed(D, dual.best[D.rows]))  # the case binds
    assert isinstance(D, _Dense)
    filled, unplaced = _fill_meeting_floor(D, dual.lam, dual.mu)
    assert len(unplaced) == 0 and not _pools_over(D, _instances_needed(D, filled))  # whole instances that fit
    assert float(np.dot(D.w, D.acc[filled])) >= D.acc_rhs  # and the floor met
    got = fix_and_solve(p, dual, D, get_solver("highs"), Limits(), free_size=300, max_tries=1)
    assert got is not None and got.free_queries < 600
    tl = pack(p, got.dep_of_q, got.n_inst)
    assert not tl.unplaced
    s = plan(wl, fleet, models, solver="highs", formulation="decompose", min_mean_accuracy=0.6)
    assert s.status.has_plan and s.gap <= 1e-3, (s.status, s.gap)
    assert check_plan(s.assignment, wl, fleet, models, min_mean_accuracy=0.6) == []


def _fill_within_written_out(D, lam, mu, reserve=None, n_fixed=None):
    """The fill's greedy as first written (numpy per row), to compare the list-based one with."""
    from energyopt.methods.decompose import fill_start

    rc, order_opt, regret, room = fill_start(D, lam, mu, reserve, n_fixed)
    n_s = len(rc)
    choice = order_opt[:, 0].copy()
    placed = np.zeros(n_s, dtype=bool)
    for r in np.argsort(-np.where(np.isfinite(regret), regret, np.inf), kind="stable"):
        lr = int(D.lev[r])
        for d in order_opt[r]:
            if not np.isfinite(rc[r, d]):
                break
            if room[d, lr:].min() >= D.run[r, d]:
                room[d, lr:] -= D.run[r, d]
                choice[r], placed[r] = d, True
                break
    return choice, np.flatnonzero(~placed), room


@pytest.mark.parametrize("seed", range(6))
def test_fill_in_lists_is_the_greedy_written_out(seed):
    """The fill's greedy, in Python lists (a row reads past its first options from its own
    arrays), makes the same choices and leaves the same room as the same greedy in numpy, with
    deadline levels, lane-seconds kept free and the instances given."""
    from energyopt.methods import decompose as dc

    wl, fleet, models = _capacity_bound_case()
    rng = np.random.default_rng(seed)
    if seed % 2:
        wl = wl.assign(deadline_s=np.where(rng.random(len(wl)) < 0.3, rng.uniform(60, 150, len(wl)), np.nan))
    p = build_problem(wl, fleet, models, min_mean_accuracy=0.6)
    dual, D = lagrangian_bound(p)
    n_d, n_l = len(D.k), len(D.levels)
    for trial in range(3):
        lam = dual.lam * rng.uniform(0.5, 1.5, (n_d, n_l))
        reserve = rng.uniform(0, 50, n_d) if trial == 1 else None
        n_fixed = rng.integers(0, 3, n_d) if trial == 2 else None
        mu = dual.mu * (0.5 + trial)
        got = dc._fill_within(D, lam, mu, reserve, n_fixed)
        want = _fill_within_written_out(D, lam, mu, reserve, n_fixed)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert np.array_equal(got[2], want[2])


def test_plans_wait_for_the_bound(tmp_path):
    """The instance search tries its first plan at a vector of least bound under every cut it
    made (the master's last vector), not at the first vectors the master names while its bound
    still rises: 2,000 queries of the example workload on the shipped fleet (two of each pool per
    1,000 queries) with idle power counted, where the master moves over several rounds (before,
    the first plan was at a vector whose bound under the final cuts was 1.1% above the master's)."""
    from conftest import ROOT, example_make_workload, scaled_example_fleet

    from energyopt.inputs import load_inputs

    inp = load_inputs(example_make_workload()(2000, seed=1, deadline_fraction=0.0), scaled_example_fleet(tmp_path, 2),
                      ROOT / "models")
    p = build_problem(inp.workload, inp.fleet, inp.models, idle=True, min_mean_accuracy=0.55)
    dual, D = lagrangian_bound(p)
    tried = []

    def try_plan(at_n, n):
        tried.append(np.array(n))
        return upper

    upper = dual.bound * 10
    got = instance_search(p, D, dual, upper, Limits(mip_rel_gap=0.0), try_plan)
    assert got > dual.bound * (1 + 1e-3)  # whole instances raised the bound
    assert 0 < len(tried) <= 3
    alpha = np.array([c[0] for c in D.cuts])
    gains = np.array([c[1] for c in D.cuts])
    value_first = float(np.max(alpha - gains @ tried[0]))
    assert value_first <= got * (1 + 1e-4), (value_first, got)
