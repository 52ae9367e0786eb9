"""methods/: Limits, choose_method, get_method, Choice, and every method's bound against its own
objective and against the brute-force optimum."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
from conftest import ROOT, TWO_LLM_MODELS, make_models, random_instance, two_llm_fleet, workload_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import brute_force_optimum

import energyopt.methods as methods
from energyopt.check import check_plan
from energyopt.errors import DataError
from energyopt.methods import Choice, Limits, choose_method, get_method
from energyopt.methods.baselines import baseline_choice
from energyopt.methods.decompose import DecomposeMethod
from energyopt.methods.milp import MilpMethod
from energyopt.plan import plan_problem, schedule_choice
from energyopt.problem import build_problem
from energyopt.schema import BoundSource, Status, Termination
from energyopt.solvers import available_solvers, get_solver

BACKENDS = available_solvers()
METHODS = ("exact", "aggregate", "decompose")


def quiet(_: str) -> None:
    pass


def tol(value: float, backend: str) -> float:
    """Objective tolerance: CP-SAT searches on integer-scaled coefficients."""
    return (1e-4 if backend == "cpsat" else 1e-6) * max(1.0, abs(value))


# --- Limits ---------------------------------------------------------------------------------

def test_limits_without_a_time_limit_never_expire():
    lim = Limits()
    assert lim.remaining_s() is None and not lim.expired() and lim.deadline() is None


def test_limits_remaining_counts_down_from_started_at():
    lim = Limits(10.0, started_at=time.perf_counter() - 4.0)
    assert 5.0 < lim.remaining_s() <= 6.0 and not lim.expired()
    assert lim.deadline() == pytest.approx(lim.started_at + 10.0)


def test_limits_remaining_never_goes_below_zero_and_then_expired():
    lim = Limits(1.0, started_at=time.perf_counter() - 5.0)
    assert lim.remaining_s() == 0.0 and lim.expired()


def test_limits_capped_is_what_is_left_at_most_the_cap():
    lim = Limits(10.0, started_at=time.perf_counter() - 4.0)
    assert lim.capped_s(2.0) == 2.0
    assert 5.0 < lim.capped_s(60.0) <= 6.0
    assert 5.0 < lim.capped_s(None) <= 6.0


def test_limits_capped_is_at_least_the_floor_once_time_is_up():
    lim = Limits(1.0, started_at=time.perf_counter() - 5.0)
    assert lim.capped_s(60.0) == 1.0 and lim.capped_s(60.0, floor_s=3.0) == 3.0


def test_limits_capped_without_a_time_limit_is_the_cap():
    assert Limits().capped_s(60.0) == 60.0 and Limits().capped_s(None) is None


def test_limits_default_gap_threads_and_start():
    before = time.perf_counter()
    lim = Limits()
    assert lim.mip_rel_gap == 1e-4 and lim.threads == 2 and before <= lim.started_at <= time.perf_counter()


@pytest.mark.parametrize("kw, match", [
    ({"time_limit_s": 0}, "time limit must be > 0 s, got 0"),
    ({"time_limit_s": -1.0}, "time limit must be > 0 s, got -1.0"),
    ({"time_limit_s": math.nan}, "time limit must be > 0 s, got nan"),
    ({"mip_rel_gap": -0.1}, r"gap must be in \[0, 1\], got -0.1"),
    ({"mip_rel_gap": 1.5}, r"gap must be in \[0, 1\], got 1.5"),
    ({"threads": 0}, "threads must be >= 1, got 0"),
])
def test_limits_refuse_bad_values(kw, match):
    with pytest.raises(DataError, match=match):
        Limits(**kw)


def test_limits_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().threads = 4  # type: ignore[misc]


# --- choose_method, get_method, Choice.none -------------------------------------------------

@pytest.fixture(scope="module")
def four():
    wl = workload_of([(10, 100, 0.0, None), (10, 100, 0.6, None), (950, 100, 0.0, None), (10, 100, 0.0, 5.0)])
    return build_problem(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS))


def exact_columns(problem) -> int:
    """x columns of the exact model, counted by hand: options of each deployment × its instances."""
    m = problem.deployments["max_instances"].tolist()
    return sum(int(problem.ok[:, d].sum()) * m[d] for d in range(problem.n_deployments))


def test_choose_method_auto_is_exact_up_to_the_column_limit_then_aggregate_then_decompose(four, monkeypatch):
    cols = exact_columns(four)
    assert cols == 2 * 2 + 4 * 2 + 3 * 1  # small@g: 2 options × 2 GPUs; big@g: 4 × 2; big@c: 3 × 1
    monkeypatch.setattr(methods, "EXACT_MAX_COLUMNS", cols)
    assert choose_method(four) == "exact"
    monkeypatch.setattr(methods, "EXACT_MAX_COLUMNS", cols - 1)
    monkeypatch.setattr(methods, "AGGREGATE_MAX_QUERIES", four.n_queries)
    assert choose_method(four, "auto") == "aggregate"
    monkeypatch.setattr(methods, "AGGREGATE_MAX_QUERIES", four.n_queries - 1)
    assert choose_method(four, "auto") == "decompose"


@pytest.mark.parametrize("name", ["exact", "aggregate", "decompose"])
def test_choose_method_keeps_a_named_method(four, name, monkeypatch):
    monkeypatch.setattr(methods, "EXACT_MAX_COLUMNS", 0)
    assert choose_method(four, name) == name


def test_choose_method_refuses_an_unknown_name(four):
    with pytest.raises(DataError, match="formulation must be one of auto, exact, aggregate, decompose, got 'lp'"):
        choose_method(four, "lp")


def test_get_method_returns_each_method_by_name():
    assert isinstance(get_method("exact"), MilpMethod) and get_method("exact").name == "exact"
    assert isinstance(get_method("aggregate"), MilpMethod) and get_method("aggregate").name == "aggregate"
    assert isinstance(get_method("decompose"), DecomposeMethod) and get_method("decompose").name == "decompose"
    with pytest.raises(DataError, match="unknown method 'auto'; choose one of exact, aggregate, decompose"):
        get_method("auto")


def test_choice_none_has_no_plan_and_keeps_its_status():
    c = Choice.none("exact", "highs", Status.INFEASIBLE, Termination.INFEASIBLE, math.inf, BoundSource.MIP,
                    solver_s=1.5, message="why")
    assert not c.has_choice and c.dep_of_q is None and c.n_inst is None and c.lane_of_q is None
    assert c.status is Status.INFEASIBLE and c.termination is Termination.INFEASIBLE
    assert c.bound == math.inf and c.bound_source is BoundSource.MIP and c.solver_s == 1.5 and c.message == "why"
    assert math.isnan(c.objective) and c.unplaced == []


# --- every method: its choice on a small problem --------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", METHODS)
def test_every_method_returns_a_choice_whose_bound_is_at_most_its_objective(four, name, backend):
    c = get_method(name).solve(four, get_solver(backend), Limits(mip_rel_gap=0.0), quiet)
    assert c.method == name and c.solver == backend and c.has_choice
    assert c.status.has_plan and c.bound <= c.objective + tol(c.objective, backend)
    # every query on one of its options, every deployment used has an instance
    q = np.arange(four.n_queries)
    assert np.all(four.ok[q, c.dep_of_q])
    assert np.all(c.n_inst[np.unique(c.dep_of_q)] >= 1)
    # the exact model names each query's instance, decompose packs its own plan, the aggregate model's
    # choice gets lanes where every deployment's queries fit its instances (methods/lanecuts.py)
    assert c.lane_of_q is not None
    want_source = BoundSource.LAGRANGIAN if name == "decompose" else (BoundSource.LP if backend == "cpsat" else None)
    if want_source is not None:
        assert c.bound_source is want_source


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["exact", "aggregate"])
def test_a_backend_stopped_by_the_time_limit_without_a_plan_says_time_limit(four, name, backend):
    spent = Limits(1.0, started_at=time.perf_counter() - 5.0)
    c = get_method(name).solve(four, get_solver(backend), spent, quiet)
    assert not c.has_choice and c.status is Status.NO_SOLUTION
    assert c.termination is Termination.TIME_LIMIT


def test_decompose_with_the_time_spent_still_gives_each_sub_milp_its_floor_of_a_second(four):
    c = get_method("decompose").solve(four, get_solver("highs"), Limits(1.0, started_at=time.perf_counter() - 5.0), quiet)
    assert c.has_choice and c.bound_source is BoundSource.LAGRANGIAN and c.bound <= c.objective + 1e-9


@pytest.mark.parametrize("name", METHODS)
def test_every_method_reports_a_capacity_shortage_without_a_plan(name):
    # four 1 s queries due by 1 s, one LLM on one GPU: each has an option, together they cannot fit
    wl = workload_of([(10, 100, 0.0, 1.0)] * 4)
    fl = dataclasses.replace(two_llm_fleet(), deployments=two_llm_fleet().deployments[:1])
    p = build_problem(wl, fl, make_models({("small", "g"): TWO_LLM_MODELS[("small", "g")]}))
    assert p.unservable.empty
    c = get_method(name).solve(p, get_solver("highs"), Limits(), quiet)
    assert not c.has_choice and c.status in (Status.INFEASIBLE, Status.NO_SOLUTION)
    assert not math.isnan(c.bound) and c.bound_source in set(BoundSource)


def test_a_baseline_choice_has_a_bound_below_any_objective(four):
    c = baseline_choice(four, "round-robin")
    s = schedule_choice(four, c)
    assert c.bound == -math.inf and c.bound <= s.objective


# --- property: every bound ≤ the brute-force optimum ----------------------------------------

@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_property_every_bound_is_at_most_the_brute_force_optimum(seed, n_q):
    """On a random tiny instance, for each method and backend: the bound never exceeds the
    optimum found by enumeration; the exact method reaches it; a packed plan is never below it
    and passes the checker; a proven-infeasible status only where enumeration finds nothing."""
    wl, fleet, models, kw = random_instance(seed, n_q=n_q)
    problem = build_problem(wl, fleet, models, **kw)
    if not problem.unservable.empty:  # about half of them: planning says infeasible before any method runs
        s = plan_problem(problem, solver=BACKENDS[0])
        assert s.status is Status.INFEASIBLE and not s.status.has_plan
        return
    opt = brute_force_optimum(problem)
    for name in METHODS:
        for backend in BACKENDS:
            c = get_method(name).solve(problem, get_solver(backend), Limits(mip_rel_gap=0.0), quiet)
            where = (seed, name, backend, c.status, c.bound, opt)
            if c.status is Status.INFEASIBLE:
                assert math.isinf(opt), where
                continue
            assert c.bound <= opt + tol(opt, backend), where
            if not c.has_choice:
                assert c.status is Status.NO_SOLUTION, where
                continue
            # the exact model is exact; so is the aggregate one with its lane cuts, where its choice got lanes
            if name == "exact" or (name == "aggregate" and c.lane_of_q is not None):
                assert c.objective == pytest.approx(opt, abs=tol(opt, backend)), where
            s = schedule_choice(problem, c, mip_rel_gap=0.0)
            if s.status.has_plan:
                assert s.objective >= opt - tol(opt, backend), where
                assert s.bound <= s.objective and s.check_violations == [], where
                assert check_plan(s.assignment, wl, fleet, models, min_mean_accuracy=kw.get("min_mean_accuracy")) == []
            else:
                assert s.status is Status.NO_SOLUTION and s.unplaced, where


# --- the time limit of a whole call -----------------------------------------------------------

def test_limits_less_keeps_time_for_what_follows_and_since_process_start_counts_at_most_its_allowance():
    lim = Limits(10.0, started_at=100.0)
    assert lim.less(3.0).time_limit_s == 7.0 and lim.less(3.0).started_at == 100.0
    assert lim.less(30.0).time_limit_s > 0 and Limits().less(5.0).time_limit_s is None
    t0 = time.perf_counter()
    p = Limits.since_process_start(5.0, at_most_s=0.5)
    assert t0 - 0.5 - 1e-3 <= p.started_at <= time.perf_counter()


def test_a_plan_under_a_small_time_limit_ends_within_it_and_2_s_although_the_backend_ignores_its_own(monkeypatch):
    from types import SimpleNamespace

    from energyopt.methods import strong
    from energyopt.plan import plan
    from energyopt.solvers.highs import HighsSolver

    def stuck(self, model, **kw):  # a backend that ignores its time limit
        time.sleep(60)

    monkeypatch.setattr(HighsSolver, "solve", stuck)
    monkeypatch.setattr(strong, "_lp", lambda model, time_limit_s: SimpleNamespace(status=1, x=None, fun=None))
    wl = workload_of([(10, 100, 0.0, None)] * 6)
    t0 = time.perf_counter()
    s = plan(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS), formulation="exact", solver="highs", time_limit_s=1.0)
    assert time.perf_counter() - t0 < 1.0 + 2.0
    assert s.status is Status.NO_SOLUTION and s.assignment.empty


# --- the exact model's size and the time limit ----------------------------------------------

def test_an_exact_model_too_large_to_build_is_refused_before_anything_is_built(monkeypatch):
    from energyopt.formulation import matrix_nonzeros

    p = build_problem(workload_of([(10, 100, 0.0, 1.0 + i) for i in range(6)]), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    monkeypatch.setattr(methods, "EXACT_MAX_NONZEROS", matrix_nonzeros(p, "exact") - 1)
    with pytest.raises(DataError, match=r"--formulation exact: the exact model of these 6 queries would have .* "
                                        r"non-zeros.*use --formulation auto, aggregate or decompose"):
        choose_method(p, "exact")
    assert choose_method(p, "aggregate") == "aggregate"  # the others are not refused
    monkeypatch.setattr(methods, "EXACT_MAX_NONZEROS", matrix_nonzeros(p, "exact"))
    assert choose_method(p, "exact") == "exact"


def test_the_exact_model_of_the_example_under_a_short_limit_ends_within_it():
    # the 1,000-query example's exact model has 5.7 million non-zeros: building it takes seconds
    # and scipy spends seconds on its LP before HiGHS's clock starts (4.8 s under a 0.1 s limit);
    # the build checks the clock and that LP runs under the watchdog
    from energyopt.plan import plan

    ex = ROOT / "examples"
    t0 = time.perf_counter()
    s = plan(ex / "workload.csv", ex / "fleet.toml", ex.parent / "models", formulation="exact", solver="highs",
             time_limit_s=1.5)
    assert time.perf_counter() - t0 < 1.5 + 1.5
    assert s.status is Status.NO_SOLUTION and s.termination is Termination.TIME_LIMIT and s.assignment.empty


def test_a_large_lp_under_a_time_limit_runs_under_the_watchdog_with_the_same_answer(monkeypatch):
    from energyopt.formulation import build_matrix
    from energyopt.methods import strong

    p = build_problem(workload_of([(10, 100 * (i + 1), 0.0, 30.0 + i) for i in range(6)]), two_llm_fleet(),
                      make_models(TWO_LLM_MODELS))
    model = build_matrix(p, "aggregate")
    here = strong._lp(model, 10.0)
    monkeypatch.setattr(strong, "LP_IN_PROCESS_MAX_NONZEROS", 0)
    watched = strong._lp(model, 10.0)
    assert here.status == watched.status == 0 and watched.fun == pytest.approx(here.fun)
    assert np.allclose(watched.x, here.x)
    assert strong._lp(model, strong.LP_MIN_S / 2).status != 0  # no time left: not started


def test_the_exact_models_size_limit_is_the_one_the_readme_and_help_give():
    from click.testing import CliRunner

    from energyopt.cli import main

    figure = f"{methods.EXACT_MAX_NONZEROS // 1_000_000} million"
    assert figure in " ".join((ROOT / "README.md").read_text().split())
    assert figure in " ".join(CliRunner().invoke(main, ["solve", "--help"]).output.split())
