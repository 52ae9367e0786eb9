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
from energyopt.schema import BoundSource, Status
from energyopt.solvers import SolveResult, get_solver

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


def _with_room():
    """A model and its optimum ``at`` (a plan, as the split's point always is) with a count column
    above 0 and below its upper bound (so "every count at least n" holds plans without the split
    rows, and counts can fall short)."""
    for seed, _kind, _problem, model in _models(5000, 40):
        opt = _solve(model)
        if opt.x is None:
            continue
        cols = np.flatnonzero(count_columns(model))
        n = np.round(opt.x[cols])
        if np.any((n >= 1) & (n < model.var_hi[cols])):
            return seed, model, opt.x
    raise AssertionError("no instance with room")


def test_region_two_excludes_every_count_at_least_n_and_keeps_every_count_short_of_it():
    seed, model, at = _with_room()
    cols = np.flatnonzero(count_columns(model))
    n = np.round(at[cols])
    relaxed = options_relaxed(model)
    lo = relaxed.var_lo.copy()
    lo[cols] = np.maximum(lo[cols], n)
    # every count at least n: feasible in the relaxation (the optimum is there) ...
    assert _solve(dataclasses.replace(relaxed, var_lo=lo)).x is not None, seed
    short = countsplit.falling_short(model, at)
    assert short is not None
    n0 = model.n_vars
    lo2 = short.var_lo.copy()
    lo2[cols] = np.maximum(lo2[cols], n)
    # ... and excluded by region 2's rows
    assert _solve(dataclasses.replace(short, var_lo=lo2)).status is Status.INFEASIBLE, seed
    # one count below its n, the rows hold (y on that column): whatever else is infeasible, the
    # extra rows alone admit it
    fall = cols[n >= model.var_lo[cols] + 1]
    for k, c in enumerate(fall):
        u = np.r_[np.round(at), np.zeros(short.n_vars - n0)]
        u[c] -= 1
        u[n0 + k] = 1.0
        act = short.A[model.A.shape[0]:] @ u
        assert np.all(act >= short.row_lo[model.A.shape[0]:] - 1e-9)
        assert np.all(act <= short.row_hi[model.A.shape[0]:] + 1e-9)
    none = np.array(at)
    none[cols] = model.var_lo[cols]  # every count at its lower bound: none can fall short, the region is empty
    assert countsplit.falling_short(model, none) is None


def test_a_count_without_a_finite_upper_bound_or_a_region_2_called_infeasible_gives_no_bound():
    """Region 2 cannot be written for an unbounded count, and its "infeasible" is not a proof: in
    both cases region 1's bound alone would be no bound (it can exceed the optimum), so -inf."""
    _seed, model, at = _with_room()
    cols = np.flatnonzero(count_columns(model))
    n = np.round(at[cols])
    c = cols[np.flatnonzero(n >= 1)[0]]
    unbounded = dataclasses.replace(model, var_hi=np.where(np.arange(model.n_vars) == c, np.inf, model.var_hi))
    with pytest.raises(ValueError, match="no finite upper bound"):
        countsplit.falling_short(unbounded, at)
    bound, _plan = countsplit.split_bound(unbounded, at, None, get_solver("highs"), EXACT, _Cap(None, EXACT),
                                          lambda s: None)
    assert bound == -math.inf

    class _Region2Infeasible(type(get_solver("highs"))):
        def solve(self, m, **kw):
            if m.n_vars > model.n_vars:  # region 2: the model with its y columns
                return SolveResult(Status.INFEASIBLE, None, math.nan, math.inf, BoundSource.MIP, self.name, 0.0, "wrong")
            return super().solve(m, **kw)

    said: list[str] = []
    bound, plan = countsplit.split_bound(model, at, None, _Region2Infeasible(), EXACT, _Cap(None, EXACT), said.append)
    assert any("not taken as a proof" in m for m in said), said
    assert bound == -math.inf and plan is not None


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
