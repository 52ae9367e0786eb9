"""methods/countsplit.py: the instance counts split at a point ``n`` into "every count at least n"
and "some count below n". Against each tiny random model's own optimum (HiGHS to a zero gap) and
brute force: the split bound never exceeds the optimum, region 1's plan is a plan of the model,
the split proves more than step 3's relaxation on some instances, and through solve_strong the
answer keeps a bound under the brute-force optimum."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import random_instance
from oracles import brute_force_optimum

from energyopt.formulation import build_matrix
from energyopt.methods import Limits, countsplit, strong
from energyopt.methods.strong import _Cap, count_columns, options_relaxed, solve_strong
from energyopt.problem import build_problem
from energyopt.schema import Status
from energyopt.solvers import get_solver

EXACT = Limits(mip_rel_gap=0.0)


def _solve(model, limits=EXACT):
    return strong.backend_solve(get_solver("highs"), model, limits)


def _feasible(model, x, tol=1e-6) -> bool:
    act = model.A @ x
    ints = model.integrality == 1
    return bool(np.all(act >= model.row_lo - tol) and np.all(act <= model.row_hi + tol)
                and np.all(x >= model.var_lo - tol) and np.all(x <= model.var_hi + tol)
                and np.all(np.abs(x[ints] - np.round(x[ints])) <= tol))


def _points(model, rng):
    """Integer points of ``model`` whose counts the split is tried at: step 3's relaxation's
    optimum and the optima of two random objectives (other counts, some short of the optimum's)."""
    out = []
    relaxed = _solve(options_relaxed(model))
    if relaxed.x is not None:
        out.append(relaxed.x)
    for _ in range(2):
        res = _solve(dataclasses.replace(model, c=rng.uniform(-1, 1, model.n_vars)))
        if res.x is not None:
            out.append(res.x)
    return out


def _models(first_seed: int, n: int, n_q: int = 4):
    for seed in range(first_seed, first_seed + n):
        wl, fleet, models, kw = random_instance(seed, n_q=n_q)
        problem = build_problem(wl, fleet, models, **kw)
        if not problem.unservable.empty:
            continue
        for kind in ("exact", "aggregate"):
            model = build_matrix(problem, kind)
            if count_columns(model).any():
                yield seed, kind, problem, model


def test_the_split_bound_is_at_most_the_models_optimum_and_its_plan_is_a_plan_of_it():
    rng = np.random.default_rng(0)
    checked = proven = 0
    for seed, kind, _problem, model in _models(5100, 40):
        opt = _solve(model)
        if opt.x is None:  # no plan: nothing to bound (the relaxation's point may still exist)
            continue
        for at in _points(model, rng):
            bound, plan = countsplit.split_bound(model, at, None, get_solver("highs"), EXACT, _Cap(None, EXACT),
                                                 lambda s: None)
            tol = 1e-6 * max(1.0, abs(opt.objective))
            assert bound <= opt.objective + tol, (seed, kind, bound, opt.objective)
            if plan is not None:
                assert _feasible(model, plan.x), (seed, kind)
                assert plan.objective >= opt.objective - tol, (seed, kind)
            checked += 1
            proven += math.isfinite(bound)
    assert checked >= 60 and proven >= checked // 2, (checked, proven)


def test_the_split_proves_more_than_step_3s_relaxation_on_some_instances():
    """Where whole options cost something at the relaxation's counts, the split's bound is above
    the relaxation's (and still at most the optimum)."""
    higher = ran = 0
    for seed, kind, _problem, model in _models(5300, 60, n_q=6):
        relaxed = _solve(options_relaxed(model))
        opt = _solve(model)
        if relaxed.x is None or opt.x is None or opt.objective <= relaxed.bound + 1e-9:
            continue  # nothing to prove: the relaxation is tight
        bound, _ = countsplit.split_bound(model, relaxed.x, opt, get_solver("highs"), EXACT, _Cap(None, EXACT),
                                          lambda s: None)
        assert bound <= opt.objective + 1e-6 * max(1.0, abs(opt.objective)), (seed, kind)
        ran += 1
        higher += bound > relaxed.bound + 1e-9
    assert ran >= 5 and higher >= 1, (ran, higher)


def test_region_two_excludes_every_count_at_least_n_and_keeps_every_count_short_of_it():
    wl, fleet, models, kw = random_instance(5003)
    problem = build_problem(wl, fleet, models, **kw)
    model = build_matrix(problem, "aggregate")
    cols = np.flatnonzero(count_columns(model))
    at = np.zeros(model.n_vars)
    at[cols] = 1.0  # every count at least 1
    at = np.minimum(at, model.var_hi)
    short = countsplit.falling_short(model, at)
    assert short is not None
    n0 = model.n_vars
    for c in cols[at[cols] >= 1]:
        # every count at n (or above) has no y to take: fixed there, region 2 is infeasible
        lo, hi = short.var_lo.copy(), short.var_hi.copy()
        lo[cols] = np.maximum(lo[cols], at[cols])
        assert _solve(dataclasses.replace(short, var_lo=lo, var_hi=hi)).status is Status.INFEASIBLE
        # one count below its n, the rows hold (y on that column): whatever else is infeasible, the
        # extra rows alone admit it
        extra = short.A[model.A.shape[0]:]
        u = np.r_[np.maximum(at, 0), np.zeros(short.n_vars - n0)]
        u[c] = at[c] - 1
        k = int(np.flatnonzero(cols[at[cols] >= 1] == c)[0])
        u[n0 + k] = 1.0
        act = extra @ u
        assert np.all(act >= short.row_lo[model.A.shape[0]:] - 1e-9)
        assert np.all(act <= short.row_hi[model.A.shape[0]:] + 1e-9)
    at[:] = 0.0  # no count at least 1: no count can fall short, the region is empty
    assert countsplit.falling_short(model, at) is None


def test_solve_strong_with_the_split_keeps_a_bound_under_the_brute_force_optimum(monkeypatch):
    """Step 3 forced and its plan never within the gap (so the split runs, then the whole model):
    the bound stays at most the brute-force optimum and the exact model's plan is optimal."""
    monkeypatch.setattr(strong, "PART_MAX_SPLIT", -1.0)
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)
    split_ran = 0
    for seed in range(7400, 7440):
        wl, fleet, models, kw = random_instance(seed)
        problem = build_problem(wl, fleet, models, **kw)
        if not problem.unservable.empty:
            continue
        opt = brute_force_optimum(problem)
        if math.isinf(opt):
            continue
        tol = 1e-6 * max(1.0, abs(opt))
        for kind in ("exact", "aggregate"):
            said: list[str] = []
            res = solve_strong(build_matrix(problem, kind), problem, get_solver("highs"), EXACT, said.append)
            split_ran += any("counts at least step 3's" in m for m in said)
            assert res.status is not Status.INFEASIBLE, (seed, kind)
            assert res.bound <= opt + tol, (seed, kind)
            if kind == "exact":
                assert res.status is Status.OPTIMAL and res.objective == pytest.approx(opt, abs=tol), seed
    assert split_ran >= 3, split_ran
