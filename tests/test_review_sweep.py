"""Review of sweep.best_of_series: a bound raised by the chord never passes the point's own plan,
and a point's verdict of infeasibility, refuted by a checked plan of the series, is not taken as
the adopted plan's bound."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from conftest import random_instance

from energyopt.packing import assignment_objective
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schedule import empty_assignment
from energyopt.schema import Status, Termination
from energyopt.sweep import best_of_series

# a case where the chord of one plan's prices at ζ = 0.041 and 0.637 passes its price at 0.27 by
# rounding (1.1e-16): the plan's price is affine in ζ, the chord equal to it but for the last bit
SEED, ZETAS = 9112, (0.041, 0.27, 0.637)


@functools.cache
def _one_plan_at_three_zetas():
    """Three points sharing one plan, each with its price as objective and bound (an integral LP's
    bound is its plan's objective)."""
    wl, fl, models, kw = random_instance(SEED)
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    s = plan(wl, fl, models, objective="tradeoff", zeta=0.5, **kw)
    assert s.status.has_plan
    out = []
    for z in ZETAS:
        p = build_problem(wl, fl, models, objective="tradeoff", zeta=z, **kw)
        price = assignment_objective(p, s.assignment)
        out.append(dataclasses.replace(s, problem=p, objective=price, bound=price, status=Status.OPTIMAL,
                                       termination=Termination.OPTIMAL))
    return out


def test_a_chord_bound_never_passes_the_points_own_plan():
    scheds = _one_plan_at_three_zetas()
    out = best_of_series(scheds, ZETAS, lambda m: None)
    for s in out:
        assert s.bound <= s.objective, (s.bound, s.objective)
        assert s.status is Status.OPTIMAL


def test_an_infeasibility_verdict_refuted_by_a_plan_of_the_series_is_no_bound_for_that_plan():
    scheds = list(_one_plan_at_three_zetas())
    # the middle point said infeasible (bound +inf: a wrong verdict, as HiGHS's presolve has given), its
    # neighbours have their plan but no bound: the middle takes their plan, with no bound to prove it
    scheds[1] = dataclasses.replace(scheds[1], status=Status.INFEASIBLE, objective=math.nan, bound=math.inf,
                                    assignment=empty_assignment(), termination=Termination.INFEASIBLE)
    for k in (0, 2):
        scheds[k] = dataclasses.replace(scheds[k], bound=-math.inf, status=Status.FEASIBLE,
                                        termination=Termination.FEASIBLE)
    out = best_of_series(scheds, ZETAS, lambda m: None)
    mid = out[1]
    assert mid.status.has_plan and np.isfinite(mid.objective)
    assert mid.bound == -math.inf and mid.status is Status.FEASIBLE


def test_another_points_plan_is_taken_only_where_it_meets_as_many_deadlines_on_the_engine(monkeypatch):
    # the first point's own plan is the zeta = 1 plan (worse at zeta = 0.3 than the zeta = 0 plan, the second's); the
    # engine's deadlines met are scripted per plan: the better plan is taken unless it meets fewer
    import importlib

    sweep_mod = importlib.import_module("energyopt.sweep")
    wl, fl, models, kw = random_instance(9139)  # a batch whose plans at zeta = 1 and 0 differ
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    zetas = (0.3, 0.31)
    worse = plan(wl, fl, models, objective="tradeoff", zeta=1.0, **kw)
    better = plan(wl, fl, models, objective="tradeoff", zeta=0.0, **kw)
    assert worse.status.has_plan and better.status.has_plan
    p = build_problem(wl, fl, models, objective="tradeoff", zeta=0.3, **kw)
    own = dataclasses.replace(worse, problem=p, objective=assignment_objective(p, worse.assignment))
    assert assignment_objective(p, better.assignment) < own.objective - 1e-12  # else the case shows nothing
    for own_met, other_met, taken in [(5, 5, True), (5, 4, False), (5, 6, True), (None, None, True), (5, None, False)]:
        met = {id(own.assignment): own_met, id(better.assignment): other_met}
        monkeypatch.setattr(sweep_mod, "engine_totals", lambda a, met=met: (None, met[id(a)]))
        out = best_of_series([own, better], zetas, lambda m: None)
        assert (out[0].assignment is better.assignment) is taken, (own_met, other_met)
