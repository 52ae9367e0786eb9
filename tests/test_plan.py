"""plan.py: the straight line (problem → method → pack → schedule → check) and the status each
outcome gets, on the hand-built fleet of conftest.two_llm_fleet."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TWO_LLM_MODELS, make_models, two_llm_fleet, workload_of

from energyopt.errors import DataError, SolverNotAvailableError
from energyopt.methods import Choice
from energyopt.plan import plan, plan_problem, schedule_choice
from energyopt.problem import build_problem
from energyopt.schema import BoundSource, Status, Termination

SMALL_G = 0
FOUR = workload_of([(10, 100, 0.0, None), (10, 100, 0.6, None), (950, 100, 0.0, None), (10, 100, 0.0, 5.0)])
# three 1 s queries due by 1.5 s: only small@g is fast enough, and it has two instances
TIGHT = workload_of([(10, 100, 0.0, 1.5)] * 3)


def run(wl, **kw):
    return plan(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS), **kw)


def problem(wl):
    return build_problem(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS))


def choice(dep, n_inst, *, inst=None, bound=0.0, termination=Termination.OPTIMAL) -> Choice:
    return Choice("aggregate", "highs", Status.OPTIMAL, termination, bound, BoundSource.MIP,
                  dep_of_q=np.asarray(dep), n_inst=np.asarray(n_inst), lane_of_q=None if inst is None else np.asarray(inst))


@pytest.mark.parametrize("formulation", ["auto", "exact", "aggregate", "decompose"])
def test_plan_is_optimal_and_checked_on_a_small_feasible_workload(formulation):
    s = run(FOUR, formulation=formulation, mip_rel_gap=0.0)
    assert s.status is Status.OPTIMAL and s.termination is Termination.OPTIMAL
    assert s.check_violations == [] and s.unplaced == [] and len(s.assignment) == 4
    # the least energy: q0, q3 on small@g (100 J each), q1, q2 on big@c (200 J each)
    assert s.objective == pytest.approx(600.0) and s.gap <= 1e-9
    assert s.formulation == ("exact" if formulation == "auto" else formulation)


def test_plan_times_each_step():
    s = run(FOUR)
    assert set(s.timings_s) == {"build_s", "backend_s", "matrix_s", "solve_s", "schedule_s", "check_s", "total_s",
                                "solver_s"}
    assert all(v >= 0 for v in s.timings_s.values())


def test_plan_reports_its_progress_from_problem_to_plan():
    said: list[str] = []
    run(FOUR, progress=said.append)
    assert said[0] == "problem: 4 queries, 3 deployments, 9 options"
    assert said[-1].startswith("plan: optimal, objective 600, gap 0.0000%, check ok")


def test_plan_with_an_unservable_query_is_infeasible_before_any_method_runs():
    wl = workload_of([(10, 100, 0.0, None), (10, 100, 0.9, None)])
    s = run(wl)
    assert s.status is Status.INFEASIBLE and s.termination is Termination.INFEASIBLE
    assert s.formulation == "none" and s.bound == math.inf and s.bound_source is BoundSource.NONE
    assert math.isnan(s.objective) and s.assignment.empty
    assert s.message == ("1 queries have no feasible option: "
                         "query q1: needs accuracy >= 0.9; the best LLM in the fleet has 0.8")


@pytest.mark.parametrize("formulation", ["exact", "aggregate", "decompose"])
def test_plan_over_capacity_is_infeasible_with_the_diagnosis(formulation):
    # five 1 s queries due by 1.5 s, only small@g fast enough: 5 s of work, 2 instances × 1.5 s
    s = run(workload_of([(10, 100, 0.0, 1.5)] * 5), formulation=formulation)
    assert s.status is Status.INFEASIBLE and s.termination is Termination.INFEASIBLE and s.assignment.empty
    assert s.message.startswith("small@g: queries only it can serve need 5.0 instance-seconds by the deadline 1.5 s")


def test_exact_and_aggregate_with_lane_cuts_prove_what_the_pooled_rows_cannot():
    # TIGHT: 3 s of work fits 2 instances × 1.5 s as seconds, but no query can be split
    for formulation in ("exact", "aggregate"):  # the aggregate model through its lane cuts (methods/lanecuts.py)
        s = run(TIGHT, formulation=formulation)
        assert s.status is Status.INFEASIBLE, formulation
        assert s.message.startswith("capacity and deadlines together cannot be met"), (formulation, s.message)
    s = run(TIGHT, formulation="decompose")
    assert s.status is Status.NO_SOLUTION and s.termination is Termination.NO_SOLUTION
    assert s.unplaced == ["q2"] and len(s.assignment) == 2


def test_plan_refuses_an_unknown_formulation_and_solver():
    with pytest.raises(DataError, match="formulation must be one of"):
        run(FOUR, formulation="lp")
    with pytest.raises(SolverNotAvailableError, match="unknown solver 'gurobi'"):
        run(FOUR, solver="gurobi")


def test_plan_problem_equals_plan_on_the_same_problem():
    a = run(FOUR, formulation="exact")
    b = plan_problem(problem(FOUR), formulation="exact")
    assert b.status is a.status and b.objective == pytest.approx(a.objective)
    assert b.assignment.equals(a.assignment)


# --- schedule_choice: the status of a packed choice -----------------------------------------

def test_schedule_choice_within_the_gap_is_optimal():
    p = problem(FOUR.iloc[:1])
    s = schedule_choice(p, choice([SMALL_G], [1, 0, 0], bound=100.0), mip_rel_gap=1e-4)
    assert s.status is Status.OPTIMAL and s.termination is Termination.OPTIMAL and s.objective == 100.0


def test_schedule_choice_beyond_the_gap_is_feasible_with_the_methods_termination():
    p = problem(FOUR.iloc[:1])
    s = schedule_choice(p, choice([SMALL_G], [1, 0, 0], bound=50.0, termination=Termination.TIME_LIMIT))
    assert s.status is Status.FEASIBLE and s.termination is Termination.TIME_LIMIT and s.gap == pytest.approx(0.5)


def test_schedule_choice_that_packing_cannot_complete_has_no_solution():
    p = problem(TIGHT)
    s = schedule_choice(p, choice([SMALL_G] * 3, [1, 0, 0]))
    assert s.status is Status.NO_SOLUTION and s.termination is Termination.NO_SOLUTION
    assert s.unplaced == ["q2"] and s.message == "packing could not place 1 queries within their deadlines"
    assert len(s.assignment) == 2  # repair switched small@g's second instance on for q1


def test_schedule_choice_that_fails_the_independent_check_is_an_error():
    p = problem(TIGHT)
    # a method naming one instance for all three: the timeline is taken as given, and two end late
    s = schedule_choice(p, choice([SMALL_G] * 3, [1, 0, 0], inst=[0, 0, 0]))
    assert s.status is Status.ERROR and s.termination is Termination.ERROR
    assert s.check_violations == ["2 queries end after their deadline, e.g. q1"]
    assert s.message == "the independent check failed: 2 queries end after their deadline, e.g. q1"


def test_schedule_choice_without_the_check_lists_no_violations():
    p = problem(TIGHT)
    s = schedule_choice(p, choice([SMALL_G] * 3, [1, 0, 0], inst=[0, 0, 0]), check=False)
    assert s.check_violations == [] and s.status is not Status.ERROR


def test_a_prefill_only_query_is_planned_as_one_output_token():
    """0 output tokens (a prefill-only request) is planned, and checked, as 1 output token: the
    prefill yields the first token, and the models predict for one token or more."""
    prefill = workload_of([(10, 0, 0.0, None), (10, 100, 0.0, None)])
    one = workload_of([(10, 1, 0.0, None), (10, 100, 0.0, None)])
    p0, p1 = problem(prefill), problem(one)
    assert np.array_equal(p0.energy_j, p1.energy_j) and np.array_equal(p0.runtime_s, p1.runtime_s)
    s = run(prefill)
    assert s.status is Status.OPTIMAL and s.check_violations == []
    assert s.assignment.set_index("query_id").loc["q0", "energy_j"] == pytest.approx(1.0)  # small@g: 1 J per output token


def test_time_kept_after_the_method_stretches_with_a_busy_machine(monkeypatch):
    """The seconds a time limit keeps for packing, the check and writing grow with how much slower
    than its CPU time the build ran (another busy process on the core), held to [1, 4]×."""
    import importlib

    plan_module = importlib.import_module("energyopt.plan")  # (the package's `plan` is the function)

    now = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(plan_module.time, "perf_counter", lambda: now["wall"])
    monkeypatch.setattr(plan_module.time, "process_time", lambda: now["cpu"])
    clock = plan_module._Clock()
    now.update(wall=102.0, cpu=11.0)  # 2 s of wall-clock time for 1 s of CPU
    assert clock.slowdown() == pytest.approx(2.0)
    p = problem(FOUR)
    assert plan_module._after_method_s(p, clock.slowdown()) == pytest.approx(2 * plan_module._after_method_s(p))
    now.update(wall=150.0)
    assert clock.slowdown() == plan_module.MAX_SLOWDOWN
    now.update(wall=100.5, cpu=10.9)  # threads: more CPU than wall-clock time
    assert clock.slowdown() == 1.0
