"""Review of the lane rounds of methods/milp.py and the steps of methods/strong.py."""

from __future__ import annotations

import math
import time

import pytest
from conftest import random_instance

from energyopt.formulation import build_matrix
from energyopt.methods import Limits, get_method, milp, strong
from energyopt.problem import build_problem
from energyopt.schema import BoundSource, Status, Termination
from energyopt.solvers import SolveResult, get_solver
from energyopt.solvers.highs import HighsSolver


@pytest.fixture(autouse=True)
def _counts_first_on_tiny_batches(monkeypatch):
    """These cases are tiny: step 3 runs on them as it runs on batches of COUNTS_MIN_QUERIES or more."""
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)


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


class _WholeLimitHighs(HighsSolver):
    """HiGHS that uses the whole time limit it is given (as a MILP that does not close its gap)."""

    def solve(self, model, *, time_limit_s=None, mip_rel_gap=1e-4, threads=2):
        res = super().solve(model, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, threads=threads)
        if time_limit_s is not None:
            time.sleep(max(time_limit_s - res.time_s, 0.0))
        return res


def test_cap_s_caps_the_whole_call_of_solve_strong_not_each_step():
    problem = _tradeoff_case()
    model = build_matrix(problem, "aggregate")
    said: list[str] = []
    strong.solve_strong(model, problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    # the case this test is about: four MILPs or more (the split queries, step 3's two, the counts
    # split at step 3's or the whole model)
    assert any("options relaxed" in m for m in said)
    assert any("counts at least step 3's" in m or "the whole model" in m for m in said)
    said.clear()
    t0 = time.perf_counter()
    res = strong.solve_strong(model, problem, _WholeLimitHighs(), Limits(mip_rel_gap=0.0), said.append, cap_s=1.0)
    took = time.perf_counter() - t0
    assert took < 1.0 + 0.8, (took, said)  # the LP, the forks and the watchdog's checks: well under a second
    assert res.bound <= res.objective or res.x is None


def test_cpsat_skips_the_counts_first_step_whose_relaxed_model_it_would_solve_whole():
    # CP-SAT makes every column an integer and reports the LP bound: the "relaxed" model is the whole
    # model searched to a tenth of the gap, for no bound; step 3 is skipped, the plan stays the same
    problem = _tradeoff_case()
    model = build_matrix(problem, "aggregate")
    said: list[str] = []
    res = strong.solve_strong(model, problem, get_solver("cpsat"), Limits(mip_rel_gap=1e-4), said.append)
    assert not any("options relaxed" in m for m in said), said
    ref = strong.solve_strong(model, problem, get_solver("highs"), Limits(mip_rel_gap=1e-4), lambda m: None)
    assert res.x is not None and res.objective == pytest.approx(ref.objective, rel=1e-4)
    assert res.bound <= ref.objective + 1e-9


class _SlowRelaxedHighs(HighsSolver):
    """HiGHS that spends its whole time limit on a model whose options are relaxed (step 3's first
    MILP, as a large batch's can), and solves every other model at once."""

    def solve(self, model, *, time_limit_s=None, mip_rel_gap=1e-4, threads=2):
        res = super().solve(model, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, threads=threads)
        if time_limit_s is not None and (model.integrality[: model.n_x] == 0).any():
            time.sleep(max(time_limit_s - res.time_s, 0.0))
        return res


def test_under_a_time_limit_step_3_leaves_time_for_a_plan():
    # the LP splits most queries (no step 2): before step 3, the whole model got the time; step 3's
    # relaxed model must not take all of it, or the call ends without any plan
    wl, fl, models, kw = random_instance(13, n_q=6)
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    problem = build_problem(wl, fl, models, objective="tradeoff", zeta=0.3, **kw)
    model = build_matrix(problem, "aggregate")
    said: list[str] = []
    res = strong.solve_strong(model, problem, _SlowRelaxedHighs(), Limits(time_limit_s=3.0, mip_rel_gap=0.0), said.append)
    assert any("nearly the whole model" in m for m in said), said  # the case this test is about
    assert res.x is not None, said
    ref = strong.solve_strong(model, problem, get_solver("highs"), Limits(mip_rel_gap=0.0), lambda m: None)
    assert ref.bound - 1e-9 <= res.objective and res.bound <= ref.objective + 1e-9


def _seed_13_case():
    wl, fl, models, kw = random_instance(13, n_q=6)
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta")}
    problem = build_problem(wl, fl, models, objective="tradeoff", zeta=0.3, **kw)
    return problem, build_matrix(problem, "aggregate")


def test_a_bound_from_step_3_is_labelled_as_the_mip_bound_it_is():
    problem, model = _seed_13_case()
    said: list[str] = []
    res = strong.solve_strong(model, problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append, close_gap=False)
    lp = strong._lp(model, None).fun  # the LP without cuts: at most the LP with them
    assert res.bound > lp + 1e-6  # step 3's bound (the LP's with cuts is -0.326, step 3's -0.262)
    assert res.bound_source is BoundSource.MIP, said


class _WrongInfeasibleHighs(HighsSolver):
    """HiGHS that calls a model with whole options, none fixed, and instance counts not all fixed
    infeasible (a wrong verdict, as HiGHS's presolve has given): the whole model and the split's
    region 1 (counts at least step 3's), not step 2's (some options fixed) nor step 3's plan (counts
    fixed)."""

    def solve(self, model, *, time_limit_s=None, mip_rel_gap=1e-4, threads=2):
        n_x, counts = model.n_x, strong.count_columns(model)
        if ((model.integrality[:n_x] == 1).all() and (model.var_lo[:n_x] < model.var_hi[:n_x]).all()
                and (model.var_lo[counts] < model.var_hi[counts]).any()):
            return SolveResult(Status.INFEASIBLE, None, math.nan, math.inf, BoundSource.MIP, self.name, 0.0, "wrong")
        return super().solve(model, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, threads=threads)


def test_a_whole_model_called_infeasible_after_step_3_found_a_plan_keeps_that_plan():
    problem, model = _seed_13_case()
    said: list[str] = []
    res = strong.solve_strong(model, problem, _WrongInfeasibleHighs(), Limits(mip_rel_gap=0.0), said.append)
    assert any("counts at least step 3's: infeasible, ignored" in m for m in said), said
    assert any("verdict is ignored" in m for m in said), said
    assert res.x is not None and res.status is Status.FEASIBLE and res.termination is not Termination.INFEASIBLE
    assert math.isfinite(res.bound) and res.bound <= res.objective


def test_the_gap_closing_round_does_not_solve_steps_2_and_3_again():
    # the quick round's model is the one solved to the gap next: its plan and bound are known
    problem = _tradeoff_case()
    said: list[str] = []
    c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    assert any("solving the model to the gap" in m for m in said)
    assert sum("instance counts with the options relaxed" in m for m in said) == 1, said
    # then the counts split at step 3's (which closes this case's gap) or the whole model, once
    assert sum("counts at least step 3's" in m for m in said) + sum("the whole model with its cuts" in m for m in said) == 1
    assert c.status is Status.OPTIMAL and c.bound <= c.objective


def test_when_the_lane_rounds_run_out_the_plan_packing_gets_is_solved_to_the_gap(monkeypatch):
    # before the quick rounds, the last round's plan was solved to the gap (packing then places it);
    # rounds spent on quick plans must not hand packing a plan with a gap left
    monkeypatch.setattr(milp, "LANE_CUT_ROUNDS", 0)
    problem = _tradeoff_case(seed=3)
    said: list[str] = []
    c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    assert any("options relaxed" in m for m in said)  # a quick plan first
    assert c.status is Status.OPTIMAL, said
    assert c.bound <= c.objective


def test_the_gap_closing_solve_has_a_budget_of_its_own_and_ends_with_the_plan_and_its_gap(monkeypatch):
    # the solve to the gap after the quick rounds is capped (CLOSE_GAP_*): spent at once, the quick
    # plan is the answer, feasible with its bound, not optimal (the case's quick plan is not within gap 0)
    problem = _tradeoff_case()
    free = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), lambda m: None)
    monkeypatch.setattr(milp, "CLOSE_GAP_MIN_S", 0.0)
    monkeypatch.setattr(milp, "CLOSE_GAP_TIME_FACTOR", 0.0)
    said: list[str] = []
    c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    assert any("solving the model to the gap (in 0 s at most)" in m for m in said), said
    assert c.status is Status.FEASIBLE and c.lane_of_q is not None
    assert math.isfinite(c.bound) and c.bound < c.objective
    assert free.status is Status.OPTIMAL and c.bound <= free.objective <= c.objective


def test_a_spent_lane_rounds_budget_does_not_end_the_rounds_with_a_plan_whose_lanes_fail(monkeypatch):
    # seed 10: every round's plan needs another lane cut. Before, once the rounds' budget was spent the
    # last plan (whose lanes were known to fail) went to packing after one round; a round now gets at
    # least the longest round's time, and the rounds go on to LANE_CUT_ROUNDS as with a budget
    problem = _tradeoff_case(seed=10)
    free: list[str] = []
    get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), free.append)
    monkeypatch.setattr(milp, "LANE_CUT_MIN_S", 0.0)
    monkeypatch.setattr(milp, "LANE_CUT_TIME_FACTOR", 0.0)
    said: list[str] = []
    c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    rounds = sum("cut, solving again" in m for m in said)
    assert rounds == sum("cut, solving again" in m for m in free) == milp.LANE_CUT_ROUNDS, (free, said)
    assert c.dep_of_q is not None and c.bound <= c.objective


def test_when_the_rounds_end_with_their_budget_spent_the_last_model_is_still_solved_to_the_gap(monkeypatch):
    # LANE_CUT_ROUNDS rounds done and the rounds' budget spent: before, the quick plan went to packing
    # with its gap; the last model now gets a round's time to be solved to the gap, as a round does
    monkeypatch.setattr(milp, "LANE_CUT_ROUNDS", 0)
    monkeypatch.setattr(milp, "LANE_CUT_MIN_S", 0.0)
    monkeypatch.setattr(milp, "LANE_CUT_TIME_FACTOR", 0.0)
    said: list[str] = []
    c = get_method("aggregate").solve(_tradeoff_case(seed=3), get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    spent = [k for k, m in enumerate(said) if "the rounds are spent" in m]
    assert spent, said  # the case this test is about
    assert any("counts at least step 3's" in m or "the whole model" in m for m in said[spent[0]:]), said
    assert c.status is Status.OPTIMAL and c.bound <= c.objective
