"""solvers/cpsat.py: the time limit that reaches CP-SAT's parameters is what is left of the call's."""

from __future__ import annotations

import time

import pytest
from conftest import TWO_LLM_MODELS, make_models, two_llm_fleet, workload_of

from energyopt.formulation import build_matrix
from energyopt.problem import build_problem
from energyopt.schema import Status, Termination

cp_model = pytest.importorskip("ortools.sat.python.cp_model")
from energyopt.solvers import cpsat  # noqa: E402


def model():
    p = build_problem(workload_of([(10, 100 * (i + 1), 0.0, 30.0 + i) for i in range(5)]), two_llm_fleet(),
                      make_models(TWO_LLM_MODELS))
    return build_matrix(p, "aggregate")


def test_search_time_is_the_limit_less_the_build_less_the_lp_bounds_reserve():
    assert cpsat.search_time_s(20.0, 3.0) == pytest.approx(20.0 - 3.0 - 2.0)  # reserve at most 2 s
    assert cpsat.search_time_s(5.0, 1.0) == pytest.approx(5.0 - 1.0 - 0.5)  # a tenth of the limit
    assert cpsat.search_time_s(5.0, 6.0) == cpsat.SEARCH_MIN_S


@pytest.fixture
def slow_build_and_recorded_search(monkeypatch):
    """The clock jumps ``jump_s`` ahead after its first reading (as if building the model took that
    long); each search's max_time_in_seconds is recorded."""
    state = {"jump_s": 0.0, "reads": 0, "searches": []}

    def clock() -> float:
        state["reads"] += 1
        return time.perf_counter() + (state["jump_s"] if state["reads"] > 1 else 0.0)

    real = cp_model.CpSolver.solve

    def recorded(self, *args, **kwargs):
        state["searches"].append(self.parameters.max_time_in_seconds)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cpsat, "now", clock)
    monkeypatch.setattr(cp_model.CpSolver, "solve", recorded)
    return state


def test_the_search_gets_what_the_model_build_left_of_the_limit(slow_build_and_recorded_search):
    state = slow_build_and_recorded_search
    state["jump_s"] = 6.0
    res = cpsat.CpSatSolver().solve(model(), time_limit_s=10.0)
    assert res.x is not None
    [search_s] = state["searches"]
    assert search_s <= 10.0 - 6.0 - cpsat.lp_reserve_s(10.0) + 1e-9  # not the whole 10 s again


def test_a_build_that_used_the_limit_ends_without_a_search(slow_build_and_recorded_search):
    state = slow_build_and_recorded_search
    state["jump_s"] = 11.0
    res = cpsat.CpSatSolver().solve(model(), time_limit_s=10.0)
    assert state["searches"] == []
    assert res.status is Status.NO_SOLUTION and res.termination is Termination.TIME_LIMIT
    assert "ran out while its model was being built" in res.message


def test_without_a_limit_the_search_has_none():
    res = cpsat.CpSatSolver().solve(model())
    assert res.status is Status.OPTIMAL
