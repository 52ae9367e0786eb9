"""methods/strong.py: the option-on-instance rows are valid (their LP never cuts off the true
optimum), and the small-batch solve matches brute force with a proven bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import random_instance
from oracles import brute_force_optimum

from energyopt.formulation import build_matrix
from energyopt.methods import Limits
from energyopt.methods.strong import _lp, machine_columns, solve_strong, with_vub_rows
from energyopt.problem import build_problem
from energyopt.schema import Status
from energyopt.solvers import get_solver


def _servable(first_seed: int, n: int):
    """(seed, problem, brute-force optimum) of the random instances of seeds first_seed … + n − 1
    whose every query has an option."""
    for seed in range(n):
        wl, fleet, models, kw = random_instance(first_seed + seed)
        problem = build_problem(wl, fleet, models, **kw)
        if problem.unservable.empty:
            yield seed, problem, brute_force_optimum(problem)


@pytest.mark.parametrize("kind", ["exact", "aggregate"])
def test_the_lp_with_every_option_on_instance_row_never_exceeds_the_brute_force_optimum(kind):
    checked = 0
    for seed, problem, opt in _servable(3000, 60):
        model = build_matrix(problem, kind)
        u_of_x = machine_columns(model, problem)
        # the u of each x is a u of the x's own deployment
        assert np.array_equal(model.u_dep[u_of_x - model.u_start], problem.cand["d"].to_numpy()[model.x_cand])
        if kind == "exact":
            assert np.array_equal(model.u_inst[u_of_x - model.u_start], model.x_inst)
        cut = with_vub_rows(model, np.arange(model.n_x), u_of_x)
        res = _lp(cut, None)
        if math.isinf(opt):
            continue
        assert res.status == 0, seed
        assert res.fun <= opt + 1e-6 * max(1.0, abs(opt)), seed
        # and at least as tight as the plain LP
        assert res.fun >= _lp(model, None).fun - 1e-7 * max(1.0, abs(opt)), seed
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("seed", range(30))
def test_solve_strong_on_the_exact_model_matches_brute_force(seed):
    wl, fleet, models, kw = random_instance(4000 + seed)
    problem = build_problem(wl, fleet, models, **kw)
    if not problem.unservable.empty:
        pytest.skip("a query without options")
    opt = brute_force_optimum(problem)
    res = solve_strong(build_matrix(problem, "exact"), problem, get_solver("highs"), Limits(mip_rel_gap=0.0))
    tol = 1e-6 * max(1.0, abs(opt))
    if math.isinf(opt):
        assert res.status is Status.INFEASIBLE
        return
    assert res.status is Status.OPTIMAL
    assert res.objective == pytest.approx(opt, abs=tol)
    assert res.bound <= opt + tol


@pytest.mark.parametrize("seed", range(12))
def test_remembered_cuts_carry_over_a_zeta_series_and_every_plan_still_matches_brute_force(seed):
    from energyopt.methods import strong

    wl, fleet, models, kw = random_instance(6000 + seed)
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    with strong.remembered_cuts():
        for zeta in (0.2, 0.5, 0.9):
            problem = build_problem(wl, fleet, models, objective="tradeoff", zeta=zeta, **kw)
            if not problem.unservable.empty:
                pytest.skip("a query without options")
            opt = brute_force_optimum(problem)
            res = solve_strong(build_matrix(problem, "exact"), problem, get_solver("highs"), Limits(mip_rel_gap=0.0))
            if math.isinf(opt):
                assert res.status is Status.INFEASIBLE
                continue
            tol = 1e-6 * max(1.0, abs(opt))
            assert res.objective == pytest.approx(opt, abs=tol) and res.bound <= opt + tol, (seed, zeta)
        assert strong._MEMORY  # the layout's cuts were remembered
    assert strong._MEMORY is None  # and forgotten after the block


def test_the_instance_counts_step_keeps_the_brute_force_optimum_and_a_valid_bound(monkeypatch):
    """Step 3 forced (no part step): on the exact model the plan is the brute-force optimum, on the
    aggregate model (a relaxation) the bound stays under it; an infeasible relaxation means no plan."""
    from energyopt.methods import strong

    monkeypatch.setattr(strong, "PART_MAX_SPLIT", -1.0)
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)
    ran = infeasible = 0
    for seed, problem, opt in _servable(7000, 40):
        tol = 1e-6 * max(1.0, abs(opt)) if math.isfinite(opt) else 0.0
        for kind in ("exact", "aggregate"):
            said: list[str] = []
            res = solve_strong(build_matrix(problem, kind), problem, get_solver("highs"), Limits(mip_rel_gap=0.0),
                               said.append)
            ran += any("instance counts" in m for m in said)
            if math.isinf(opt):
                assert res.status is Status.INFEASIBLE or kind == "aggregate", (seed, kind)
                infeasible += res.status is Status.INFEASIBLE
                continue
            assert res.status is not Status.INFEASIBLE, (seed, kind)
            assert res.bound <= opt + tol, (seed, kind)
            if kind == "exact":
                assert res.status is Status.OPTIMAL and res.objective == pytest.approx(opt, abs=tol), seed
    assert ran >= 5 and infeasible >= 1
