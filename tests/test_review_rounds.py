"""Review of the lane rounds of methods/milp.py and the steps of methods/strong.py."""

from __future__ import annotations

import pytest
from conftest import random_instance

from energyopt.methods import Limits, get_method, milp
from energyopt.problem import build_problem
from energyopt.schema import Status
from energyopt.solvers import get_solver


def _tradeoff_case(seed: int = 2, zeta: float = 0.3, n_q: int = 8):
    """A batch whose first plan (instance counts first) is not within gap 0 and whose lanes hold."""
    wl, fl, models, kw = random_instance(seed, n_q=n_q)
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    return build_problem(wl, fl, models, objective="tradeoff", zeta=zeta, **kw)


def test_the_gap_closing_solve_is_not_cut_short_by_the_lane_rounds_budget(monkeypatch):
    problem = _tradeoff_case()
    free = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), lambda m: None)
    assert free.status is Status.OPTIMAL
    # the lane rounds' budget spent at once (as where the gap-closing MILP takes longer than the
    # budget the quick first round sets): without a time limit the plan must still be solved to the gap
    monkeypatch.setattr(milp, "LANE_CUT_MIN_S", 0.0)
    monkeypatch.setattr(milp, "LANE_CUT_TIME_FACTOR", 0.0)
    said: list[str] = []
    c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    assert any("solving the model to the gap" in m for m in said)  # the case this test is about
    assert c.status is Status.OPTIMAL
    assert c.objective == pytest.approx(free.objective, rel=1e-9, abs=1e-12)
    assert c.bound <= c.objective
