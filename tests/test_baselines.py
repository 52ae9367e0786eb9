"""methods/baselines.py: each routing rule on a tiny problem, the even split of the pools, and a
baseline plan packed, priced and checked like every plan (the checker counts what it misses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TWO_LLM_MODELS as MODELS
from conftest import make_models, workload_of
from conftest import two_llm_fleet as fleet

from energyopt.fleet import fleet_from_dict
from energyopt.methods.baselines import BASELINES, baseline_choice, baseline_names, baseline_routing, even_split
from energyopt.plan import schedule_choice
from energyopt.problem import build_problem
from energyopt.schema import BoundSource, Status, Termination

SMALL_G, BIG_G, BIG_C = 0, 1, 2

# q2 is too long for small's context; q1 needs accuracy 0.6; q3 is due before any option ends
FIVE = workload_of([(10, 100, 0.0, None), (10, 100, 0.6, None), (950, 100, 0.0, None), (10, 100, 0.0, 0.5),
                 (10, 300, 0.0, None)])


@pytest.fixture(scope="module")
def five():
    return build_problem(FIVE, fleet(), make_models(MODELS))


def test_round_robin_takes_the_next_deployment_that_can_run_the_query(five):
    assert baseline_routing(five, "round-robin").tolist() == [SMALL_G, BIG_G, BIG_C, SMALL_G, BIG_G]


def test_round_robin_skips_a_deployment_that_cannot_run_the_query():
    wl = workload_of([(10, 100, 0.0, None), (950, 100, 0.0, None)] * 2)
    p = build_problem(wl, fleet(), make_models(MODELS))
    # q0 → small@g; q1 would be big@g next (small cannot hold it anyway); q2 → big@c; q3 → small cannot, big@g
    assert baseline_routing(p, "round-robin").tolist() == [SMALL_G, BIG_G, BIG_C, BIG_G]


def test_fastest_takes_the_least_runtime_among_runnable_deployments(five):
    # small@g 0.01 s/token everywhere it can run; q2 only big: big@g (0.02) beats big@c (0.1)
    assert baseline_routing(five, "fastest").tolist() == [SMALL_G, SMALL_G, BIG_G, SMALL_G, SMALL_G]


def test_most_accurate_fastest_takes_the_best_llm_on_its_fastest_device(five):
    assert baseline_routing(five, "most-accurate-fastest").tolist() == [BIG_G] * 5


def test_most_accurate_fastest_falls_back_to_the_next_llm_for_what_the_best_cannot_run():
    big_small_ctx = fleet(big_context=500)
    p = build_problem(workload_of([(10, 100, 0.0, None), (600, 100, 0.0, None)]), big_small_ctx, make_models(MODELS))
    assert baseline_routing(p, "most-accurate-fastest").tolist() == [BIG_G, SMALL_G]


def test_only_llm_spreads_queries_over_that_llms_deployments_in_turn(five):
    assert baseline_routing(five, "only:big").tolist() == [BIG_G, BIG_C, BIG_G, BIG_C, BIG_G]


def test_only_llm_leaves_queries_it_cannot_run_unrouted(five):
    assert baseline_routing(five, "only:small").tolist() == [SMALL_G, SMALL_G, -1, SMALL_G, SMALL_G]


def test_random_routing_is_seeded_and_picks_only_runnable_deployments():
    wl = workload_of([(10, 100, 0.0, None), (950, 100, 0.0, None)] * 20)
    p = build_problem(wl, fleet(), make_models(MODELS))
    a, b, c = (baseline_routing(p, "random", seed=s) for s in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(p.runnable[np.arange(p.n_queries), a])
    assert set(a.tolist()) == {SMALL_G, BIG_G, BIG_C}


def test_unknown_rules_and_llms_are_refused(five):
    with pytest.raises(ValueError, match="unknown baseline 'cheapest'"):
        baseline_routing(five, "cheapest")
    with pytest.raises(ValueError, match="no deployment of huge"):
        baseline_routing(five, "only:huge")


def test_baseline_names_are_the_rules_and_one_per_llm(five):
    assert baseline_names(five) == list(BASELINES) + ["only:big", "only:small"]


# --- even_split -----------------------------------------------------------------------------

def split_fleet(count: int, deps):
    return fleet_from_dict({
        "horizon_s": 100.0,
        "pools": {"g": {"kind": "gpu", "count": count, "memory_gb": 80, "idle_power_w": 0}},
        "llms": {"s": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1},
                 "b": {"accuracy": 0.8, "accuracy_source": "t", "params_b": 1}},
        "deployments": deps,
    })


def split_problem(count: int, deps):
    models = make_models({("s", "g"): MODELS[("small", "g")], ("b", "g"): MODELS[("big", "g")]})
    return build_problem(workload_of([(10, 100, 0.0, None)] * 2), split_fleet(count, deps), models)


def test_even_split_shares_a_pools_devices_among_the_deployments_used():
    p = split_problem(4, [{"llm": "s", "pool": "g"}, {"llm": "b", "pool": "g"}])
    assert even_split(p, np.array([0, 1])).tolist() == [2, 2]
    assert even_split(p, np.array([0, 0])).tolist() == [4, 0]  # one deployment used: all of the pool
    assert even_split(p, np.array([-1, -1])).tolist() == [0, 0]


def test_even_split_divides_by_devices_per_instance_and_caps_at_max_instances():
    p = split_problem(4, [{"llm": "s", "pool": "g", "max_instances": 1}, {"llm": "b", "pool": "g", "devices_per_instance": 2}])
    # share 2 devices each: s capped at its 1 instance; b 2 devices / 2 per instance
    assert even_split(p, np.array([0, 1])).tolist() == [1, 1]


def test_even_split_gives_each_used_deployment_at_least_one_instance():
    p = split_problem(2, [{"llm": "s", "pool": "g"}, {"llm": "b", "pool": "g", "devices_per_instance": 2}])
    # share 1 device each: b's instance needs 2, still gets one (the pool is then overcommitted)
    assert even_split(p, np.array([0, 1])).tolist() == [1, 1]


# --- a baseline as a choice, packed, priced and checked -------------------------------------

def test_baseline_choice_is_a_feasible_choice_without_a_bound(five):
    c = baseline_choice(five, "fastest")
    assert c.method == "baseline:fastest" and c.solver == "-"
    assert c.status is Status.FEASIBLE and c.termination is Termination.FEASIBLE
    assert c.bound == -math.inf and c.bound_source is BoundSource.NONE
    assert c.n_inst.tolist() == even_split(five, c.dep_of_q).tolist() == [1, 1, 0]
    assert c.lane_of_q is None and c.message == ""


def test_baseline_choice_says_how_many_queries_no_deployment_can_run(five):
    c = baseline_choice(five, "only:small")
    assert c.message == "1 queries no deployment can run" and c.dep_of_q.tolist()[2] == -1


def test_baseline_plan_keeps_the_checkers_violations_and_stays_feasible(five):
    s = schedule_choice(five, baseline_choice(five, "only:small"))
    assert s.status is Status.FEASIBLE and s.termination is Termination.FEASIBLE
    # q1 on small misses its 0.6 floor; q3 ends at 1 s, after its 0.5 s deadline; q2 left out is not a violation
    assert sorted(s.check_violations) == ["1 queries end after their deadline, e.g. q3",
                                          "1 queries run on an LLM below their min_accuracy, e.g. q1"]
    assert sorted(s.assignment["query_id"]) == ["q0", "q1", "q3", "q4"]
    summary = s.summary()
    assert summary.accuracy_floors_met == 3 and summary.deadlines_met == 0 and summary.queries_with_deadline == 1
    assert summary.check == {"ok": False, "violations": s.check_violations}


def test_baseline_plan_is_packed_without_deadlines_on_its_even_split():
    wl = workload_of([(10, 100, 0.0, 1.0)] * 3)  # three 1 s queries due by 1 s on small@g's two GPUs
    p = build_problem(wl, fleet(), make_models(MODELS))
    s = schedule_choice(p, baseline_choice(p, "only:small"))
    assert s.assignment["instance"].nunique() == 2 and s.assignment["end_s"].max() == pytest.approx(2.0)
    assert s.check_violations == ["1 queries end after their deadline, e.g. q2"]
    assert s.unplaced == [] and s.status is Status.FEASIBLE


def test_baseline_plan_that_overcommits_a_pool_is_flagged_by_the_checker():
    p = split_problem(2, [{"llm": "s", "pool": "g"}, {"llm": "b", "pool": "g", "devices_per_instance": 2}])
    s = schedule_choice(p, baseline_choice(p, "round-robin"))
    assert s.check_violations == ["pool g: 3 devices switched on, only 2 exist"]


def test_baseline_plan_within_its_options_is_priced_like_an_optimised_plan():
    wl = workload_of([(10, 100, 0.0, None), (10, 300, 0.0, None)])
    p = build_problem(wl, fleet(), make_models(MODELS), idle=True)
    s = schedule_choice(p, baseline_choice(p, "only:big"))
    # big@g: 300 J − 50 W·2 s = 200 J; big@c: 600 J − 10 W·30 s = 300 J; one instance each on for 100 s
    assert s.objective == pytest.approx(200.0 + 300.0 + 50 * 100 + 10 * 100)
    assert s.summary().total_energy_j == pytest.approx(s.objective)
    assert s.check_violations == [] and s.bound == -math.inf and s.gap == math.inf


def test_baseline_plan_that_misses_a_floor_is_still_priced_at_its_energy(five):
    s = schedule_choice(five, baseline_choice(five, "only:small"))
    # energy objective without idle: the objective is the plan's energy, as for every optimised plan
    assert s.objective == pytest.approx(s.summary().total_energy_j)


def test_most_accurate_fastest_routes_without_a_warning_when_a_deployment_can_run_nothing():
    # 1600 tokens: beyond small's 1000-token context, so small@g can run none of them
    p = build_problem(workload_of([(1500, 100, 0.0, None)] * 3), fleet(), make_models(MODELS))
    assert not p.runnable[:, SMALL_G].any()
    assert baseline_routing(p, "most-accurate-fastest").tolist() == [BIG_G] * 3
