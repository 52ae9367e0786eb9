"""methods/lanecuts.py: lanes for the aggregate model's choice, proofs that a deployment's queries
do not fit its lanes, and the cuts that make the aggregate model plan such batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import TWO_LLM_MODELS, make_models, two_llm_fleet, workload_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import brute_force, edf_feasible_by_permutations

from energyopt.accounting import latest_end_s
from energyopt.check import check_plan
from energyopt.formulation import build_matrix
from energyopt.methods import Limits, get_method
from energyopt.methods.lanecuts import LaneCut, _level_over, _minimal_infeasible, assign_lanes, deployment_lanes, with_lane_cuts
from energyopt.packing import place_lanes
from energyopt.plan import plan_problem
from energyopt.problem import build_problem
from energyopt.solvers import get_solver

# the shipped example's case at zeta = 0.5 (rounded): two lanes pass every pooled deadline row, no assignment fits
RUN_S = np.array([1.76, 0.92, 1.63, 0.52, 3.33])
DUE_S = np.array([2.0, 2.3, 2.9, 3.3, 4.9])


def by_enumeration(run, due, k) -> bool:
    """Whether some assignment of the queries to k lanes (each in EDF order) meets every due time."""
    for lanes in itertools.product(range(k), repeat=len(run)):
        if all(edf_feasible_by_permutations(run[[j for j in range(len(run)) if lanes[j] == i]],
                                            due[[j for j in range(len(run)) if lanes[j] == i]], tol_s=1e-9)
               for i in range(k)):
            return True
    return False


def lanes_meet_due(run, due, k, lanes) -> bool:
    return all(edf_feasible_by_permutations(run[lanes == i], due[lanes == i], tol_s=1e-9) for i in range(k))


def test_the_example_case_passes_the_pooled_rows_but_no_two_lanes_run_it():
    for t in DUE_S:  # the aggregate model's rows: work due by t fits 2·t lane-seconds
        assert RUN_S[DUE_S <= t].sum() <= 2 * t
    assert not by_enumeration(RUN_S, DUE_S, 2)
    assert assign_lanes(RUN_S, DUE_S, 2) == (False, None)
    ok, lanes = assign_lanes(RUN_S, DUE_S, 3)
    assert ok and lanes_meet_due(RUN_S, DUE_S, 3, lanes)


def test_the_minimal_set_is_infeasible_and_every_query_of_it_is_needed():
    keep = _minimal_infeasible(RUN_S, DUE_S, 2)
    assert keep is not None and not by_enumeration(RUN_S[keep], DUE_S[keep], 2)
    for p in keep:
        rest = keep[keep != p]
        assert by_enumeration(RUN_S[rest], DUE_S[rest], 2), (keep, p)


def test_where_the_packer_leaves_a_query_late_the_search_finds_lanes():
    # two 1 s queries due by 2 s and a 2.5 s one due by 3 s on two lanes: lane-free-first puts the
    # two short ones on both lanes, so the long one starts at 1 s and ends late; both short ones on
    # one lane leave the other to the long one
    run, due = np.array([1.0, 1.0, 2.5]), np.array([2.0, 2.0, 3.0])
    greedy = place_lanes([(run, due, 2, None)])[0]
    assert (greedy < 0).any()
    ok, lanes = deployment_lanes(run, due, 2, greedy)
    assert ok and lanes_meet_due(run, due, 2, lanes)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 3))
def test_property_the_search_agrees_with_enumeration(seed, n, k):
    rng = np.random.default_rng(seed)
    run = np.round(rng.uniform(0.2, 3.0, n), 2)
    due = np.sort(np.round(rng.uniform(0.5, 6.0, n), 1))
    order = np.lexsort((-run, due))
    run, due = run[order], due[order]
    ok, lanes = assign_lanes(run, due, k)
    assert ok == by_enumeration(run, due, k)
    if ok:
        assert lanes_meet_due(run, due, k, lanes)
    greedy = place_lanes([(run, due, k, None)])[0]
    ok2, found = deployment_lanes(run, due, k, greedy)
    assert ok2 == ok
    if ok2:
        assert lanes_meet_due(run, due, k, found)
    else:
        keep = _minimal_infeasible(run[found], due[found], k)
        assert keep is not None and not by_enumeration(run[found][keep], due[found][keep], k)


def test_a_search_past_its_node_limit_does_not_decide():
    run = np.full(12, 1.0)
    due = np.full(12, 3.9)  # twelve 1 s queries by 3.9 s on 3 lanes: 9 fit, deciding takes a search
    assert assign_lanes(run, due, 3, node_limit=5) == (None, None)
    assert assign_lanes(run, due, 3)[0] is False


def example_case():
    """The example's five queries on a fleet whose cheap deployment (small@g, 2 GPUs) cannot run
    them on two lanes: the aggregate model's first choice cannot be packed."""
    outputs = (RUN_S / 0.01).round().astype(int)  # small@g: 0.01 s per output token
    wl = workload_of([(10, int(o), 0.0, float(d)) for o, d in zip(outputs, DUE_S)])
    # big@g twice as fast as small@g at three times its energy: the way out for one query
    models = make_models({**TWO_LLM_MODELS, ("big", "g"): ((0, 0, 3.0, 0), (0, 0, 0.005, 0))})
    return wl, two_llm_fleet(), models


def test_the_aggregate_model_plans_the_example_case_at_the_brute_force_optimum():
    wl, fl, models = example_case()
    problem = build_problem(wl, fl, models)
    bf = brute_force(problem)
    assert np.isfinite(bf.value)
    c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), lambda s: None)
    assert c.has_choice and c.lane_of_q is not None
    assert c.objective == pytest.approx(bf.value, rel=1e-9) and c.bound <= bf.value + 1e-9
    s = plan_problem(problem, formulation="aggregate", limits=Limits(mip_rel_gap=0.0))
    assert s.status.has_plan and s.objective == pytest.approx(bf.value, rel=1e-9)
    assert check_plan(s.assignment, wl, fl, models) == []


def test_a_series_starts_from_the_lane_cuts_of_its_last_plan_and_each_plan_keeps_the_brute_force_optimum():
    from energyopt.methods.strong import remembered_cuts

    wl, fl, models = example_case()
    said: list[str] = []
    with remembered_cuts():
        for zeta in (0.5, 0.2, 0.9):  # one problem's options, runtimes and deadlines; the costs differ
            problem = build_problem(wl, fl, models, objective="tradeoff", zeta=zeta)
            bf = brute_force(problem)
            c = get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
            assert c.objective == pytest.approx(bf.value, rel=1e-9, abs=1e-12) and c.bound <= bf.value + 1e-9, zeta
    assert sum("no lanes of" in m for m in said) >= 1  # the first plan found its cuts
    assert sum("lane cuts remembered" in m for m in said) == 2  # the later ones started from them
    # another problem (other deadlines) does not get them
    later = wl.assign(deadline_s=wl["deadline_s"] * 10)  # the same queries, other deadlines
    said.clear()
    with remembered_cuts():
        get_method("aggregate").solve(build_problem(wl, fl, models), get_solver("highs"), Limits(), said.append)
        get_method("aggregate").solve(build_problem(later, fl, models), get_solver("highs"), Limits(), said.append)
    assert sum("lane cuts remembered" in m for m in said) == 0


def test_a_lane_cut_is_valid_for_every_plan_and_cuts_off_the_unpackable_choice():
    wl, fl, models = example_case()
    problem = build_problem(wl, fl, models)
    model = build_matrix(problem, "aggregate")
    d = int(np.flatnonzero(problem.deployments["deployment"].to_numpy() == "small@g")[0])
    cut = LaneCut(d, 2, tuple(range(problem.n_queries)))
    cm = with_lane_cuts(model, problem, [cut])
    assert cm.A.shape == (model.A.shape[0] + 2, model.n_vars + 1) and (cm.row_kind[-2:] == "lane").all()
    q_of = problem.cand["q"].to_numpy()[model.x_cand]
    d_of = problem.cand["d"].to_numpy()[model.x_cand]

    def row_values(dep_of_q, n_inst, w):
        x = np.zeros(cm.n_vars)
        x[np.flatnonzero(d_of == dep_of_q[q_of])] = 1.0
        x[model.u_start + np.arange(len(model.u_dep))] = n_inst[model.u_dep]
        x[-1] = w
        return cm.A[-2:] @ x

    def holds(dep_of_q, n_inst):  # some w in {0, 1} meets both rows
        return any(np.all((row_values(dep_of_q, n_inst, w) >= cm.row_lo[-2:] - 1e-9)
                          & (row_values(dep_of_q, n_inst, w) <= cm.row_hi[-2:] + 1e-9)) for w in (0, 1))

    # every feasible plan of brute force satisfies the cut (all five on small@g with 2 instances is none of them)
    bf = brute_force(problem)
    n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
    for dd in np.unique(bf.dep_of_q):
        n_inst[dd] = len(np.unique(bf.inst_of_q[bf.dep_of_q == dd]))
    assert holds(bf.dep_of_q, n_inst)
    all_small = np.full(problem.n_queries, d)
    n2 = np.zeros(problem.n_deployments, dtype=np.int64)
    n2[d] = 2
    assert not holds(all_small, n2)


def test_the_level_of_a_set_is_the_first_deadline_whose_work_exceeds_the_lanes_seconds():
    assert _level_over(RUN_S, DUE_S, 1) == 2.3  # 1.76 + 0.92 > 2.3 on one lane
    assert _level_over(RUN_S, DUE_S, 2) is None  # the pooled rows hold on two lanes
    assert _level_over(np.array([1.0, 1.0]), np.array([1.5, 1.5]), 1) == 1.5  # the last of equal deadlines


def test_a_level_cut_is_the_pooled_row_at_every_deadline_of_its_deployment_and_holds_for_every_plan():
    wl, fl, models = example_case()
    problem = build_problem(wl, fl, models)
    model = build_matrix(problem, "aggregate")
    d = int(np.flatnonzero(problem.deployments["deployment"].to_numpy() == "small@g")[0])
    level = float(latest_end_s(2.3))
    cm = with_lane_cuts(model, problem, [LaneCut(d, 1, (0, 1), level)])
    q_of = problem.cand["q"].to_numpy()[model.x_cand]
    d_of = problem.cand["d"].to_numpy()[model.x_cand]
    due = latest_end_s(problem.queries["deadline_eff_s"].to_numpy(dtype=float))
    levels = np.unique(due[q_of[d_of == d]])
    assert len(levels) > 1 and level in levels
    assert cm.A.shape == (model.A.shape[0] + len(levels), model.n_vars)  # a row per deadline, no new column
    new = cm.A[model.A.shape[0]:]
    lanes = float(problem.deployments["lanes"].to_numpy()[d])
    u_col = model.u_start + int(np.flatnonzero(model.u_dep == d)[0])
    assert sorted(-new[:, u_col].toarray().ravel() / lanes) == pytest.approx(levels.tolist())
    at_level = int(np.flatnonzero(np.isclose(-new[:, u_col].toarray().ravel(), level * lanes))[0])

    def rows(dep_of_q, n_inst):
        x = np.zeros(cm.n_vars)
        x[np.flatnonzero(d_of == dep_of_q[q_of])] = 1.0
        x[model.u_start + np.arange(len(model.u_dep))] = n_inst[model.u_dep]
        return new @ x

    one = np.zeros(problem.n_deployments, dtype=np.int64)
    one[d] = 1
    assert rows(np.full(problem.n_queries, d), one)[at_level] == pytest.approx(1.76 + 0.92 - 2.3, abs=0.01)  # cut off
    bf = brute_force(problem)
    n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
    for dd in np.unique(bf.dep_of_q):
        n_inst[dd] = len(np.unique(bf.inst_of_q[bf.dep_of_q == dd]))
    assert np.all(rows(bf.dep_of_q, n_inst) <= 1e-9)  # every row holds for the optimum


def test_a_round_of_lane_cuts_starts_from_the_option_on_instance_rows_of_the_round_before():
    # the rows x <= u hold whatever rows and columns a lane cut adds: the model with its cuts has
    # the layout (option and instance columns) of the model without them
    from conftest import random_instance

    from energyopt.methods import strong

    for seed in range(40):  # a batch whose LP switches on slivers of instances (rows are added)
        wl, fl, models, kw = random_instance(seed, n_q=6)
        problem = build_problem(wl, fl, models, **kw)
        if problem.n_queries == 0 or problem.cand["q"].nunique() != problem.n_queries:
            continue
        model = build_matrix(problem, "aggregate")
        u_of_x = strong.machine_columns(model, problem)
        said: list[str] = []
        with strong.remembered_cuts():
            first, _ = strong._strengthen(model, u_of_x, Limits(), said.append)
            added = first.A.shape[0] - model.A.shape[0]
            if not added:
                continue
            d = int(problem.cand["d"].to_numpy()[model.x_cand[0]])
            q = int(problem.cand["q"].to_numpy()[model.x_cand[0]])
            cut = with_lane_cuts(model, problem, [LaneCut(d, 1, (q,))])  # any cut: rows and a column added
            assert cut.n_vars > model.n_vars and cut.A.shape[0] > model.A.shape[0]
            said.clear()
            _, lp = strong._strengthen(cut, strong.machine_columns(cut, problem), Limits(), said.append)
        assert said[0] == f"cuts: {added} option-on-instance rows remembered from the last plan of this layout"
        assert lp is not None
        break
    else:
        raise AssertionError("no batch among the seeds whose LP needs option-on-instance rows")
    # outside a block the method keeps its own memory for its rounds, and leaves none behind
    get_method("aggregate").solve(problem, get_solver("highs"), Limits(mip_rel_gap=0.0), lambda s: None)
    assert strong._MEMORY is None
