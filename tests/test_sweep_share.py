"""A ζ series shares its plans: every plan of the series is a plan of every point (only the
objective changes), so each point ends with the best of them under its own objective, priced by
``packing.assignment_objective``, checked again, with its own bound."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from conftest import random_instance
from oracles import brute_force_optimum

from energyopt.packing import assignment_objective
from energyopt.plan import check_assignment, plan
from energyopt.problem import build_problem
from energyopt.schedule import empty_assignment
from energyopt.schema import Status
from energyopt.sweep import best_of_series

ZETAS = (0.0, 0.3, 0.7, 1.0)


#: random instances (tests/conftest.py) are often infeasible: the tests walk these seeds and use those with a plan
SEEDS = range(48)


@functools.cache
def _series(seed: int):
    wl, fleet, models, kw = random_instance(9100 + seed)
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    return [plan(wl, fleet, models, objective="tradeoff", zeta=z, **kw) for z in ZETAS], (wl, fleet, models, kw)


def test_the_assignment_is_priced_as_the_plan_and_affinely_in_zeta():
    priced = 0
    for seed in SEEDS:
        scheds, (wl, fleet, models, kw) = _series(seed)
        priced += _priced_alike(scheds, wl, fleet, models, kw)
    assert priced >= 12


def _priced_alike(scheds, wl, fleet, models, kw) -> int:
    n = 0
    for s in scheds:
        if not s.status.has_plan:
            continue
        n += 1
        assert assignment_objective(s.problem, s.assignment) == pytest.approx(s.objective, rel=1e-9, abs=1e-12)
        # ζ·e − (1 − ζ)·a (+ ζ·instances) is affine in ζ: the middle of two ζ is the mean of their prices
        at = {z: assignment_objective(build_problem(wl, fleet, models, objective="tradeoff", zeta=z, **kw),
                                      s.assignment) for z in (0.2, 0.5, 0.8)}
        assert at[0.5] == pytest.approx((at[0.2] + at[0.8]) / 2, rel=1e-9, abs=1e-12)
    return n


def test_a_row_of_an_unknown_deployment_is_refused():
    s = next(s for seed in SEEDS for s in _series(seed)[0] if s.status.has_plan)
    bad = s.assignment.copy()
    bad.loc[bad.index[0], "llm"] = "no-such-llm"
    with pytest.raises(ValueError, match="deployment"):
        assignment_objective(s.problem, bad)


def test_each_point_takes_the_best_plan_of_the_series_and_keeps_a_valid_bound():
    shared = 0
    for seed in SEEDS:
        scheds, _ = _series(seed)
        if any(s.status.has_plan for s in scheds):
            _check_shared(scheds)
            shared += 1
    assert shared >= 5


def _check_shared(scheds) -> None:
    # one point forgets its plan: it must get the best of the others
    lost = next(i for i, s in enumerate(scheds) if s.status.has_plan)
    given = list(scheds)
    given[lost] = dataclasses.replace(scheds[lost], status=Status.NO_SOLUTION, objective=math.nan,
                                      assignment=empty_assignment())
    out = best_of_series(given, ZETAS, lambda m: None)
    for i, s in enumerate(out):
        others = [assignment_objective(s.problem, t.assignment) for k, t in enumerate(given)
                  if t.status.has_plan and k != i]
        own = given[i].objective if given[i].status.has_plan else math.inf
        best = min([own, *others])
        if not math.isfinite(best):
            assert not s.status.has_plan
            continue
        assert s.status.has_plan and s.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert not check_assignment(s.problem, s.assignment)
        opt = brute_force_optimum(s.problem)
        tol = 1e-6 * max(1.0, abs(opt))
        assert s.bound <= opt + tol and s.objective >= opt - tol
        if s.status is Status.OPTIMAL:
            assert s.objective <= opt + 1e-4 * abs(opt) + tol
    assert out[lost].status.has_plan or all(not t.status.has_plan for t in given)
    assert np.isfinite(out[lost].objective) or all(not t.status.has_plan for t in given)


def test_the_chord_of_two_bounds_bounds_the_points_between_them():
    from energyopt.sweep import concave_bounds

    got = concave_bounds([0.0, 0.25, 0.5, 1.0], [-1.0, -np.inf, -0.9, 0.0])
    assert got[1] == pytest.approx(0.75 * -1.0 + 0.25 * 0.0)  # the best chord over it: of 0 and 1
    assert got[2] == pytest.approx(-0.5)  # the chord of 0 and 1 (-0.5) is above its own -0.9
    assert got[0] == -1.0 and got[3] == 0.0  # the ends keep their own


def test_chord_bounds_never_pass_the_brute_force_optimum():
    from energyopt.sweep import concave_bounds

    tried = 0
    for seed in SEEDS:
        wl, fleet, models, kw = random_instance(9100 + seed)
        kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
        zs = np.linspace(0, 1, 6)
        problems = [build_problem(wl, fleet, models, objective="tradeoff", zeta=float(z), **kw) for z in zs]
        opt = np.array([brute_force_optimum(p) for p in problems])
        if not np.isfinite(opt).all():
            continue
        tried += 1
        # the optima themselves as bounds: the chords stay at or under every optimum (concavity)
        got = concave_bounds(zs, opt)
        assert np.all(got <= opt + 1e-9 * np.maximum(1.0, np.abs(opt))), seed
    assert tried >= 5
