"""diagnose.py: why no plan exists, each reason on a case small enough to compute by hand.

The fleet (conftest.two_llm_fleet): pool g has 2 GPUs (small@g and big@g, up to 2 instances each),
pool c 1 CPU (big@c). A 100-token query takes 1 s on small@g, 2 s on big@g and 10 s on big@c."""

from __future__ import annotations

from conftest import TWO_LLM_MODELS, make_models, two_llm_fleet, workload_of

from energyopt.diagnose import explain_infeasible
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schema import Status


def problem(rows, **kw):
    return build_problem(workload_of(rows), two_llm_fleet(), make_models(TWO_LLM_MODELS), **kw)


def test_unservable_queries_are_the_only_reasons_given():
    p = problem([(10, 100, 0.0, None), (10, 100, 0.9, None)], min_mean_accuracy=0.99)
    assert explain_infeasible(p) == ["query q1: needs accuracy >= 0.9; the best LLM in the fleet has 0.8"]


def test_a_mean_accuracy_floor_out_of_reach():
    p = problem([(10, 100, 0.0, None), (10, 300, 0.0, None)], min_mean_accuracy=0.9)
    assert explain_infeasible(p) == [
        "token-weighted mean accuracy can reach at most 0.8000 (every query on its most accurate option), below the floor 0.9"]


def test_a_deployment_short_of_instance_seconds_for_the_queries_only_it_can_serve():
    # five queries due by 1.5 s: only small@g (1 s) is fast enough; 5 s of work, 2 instances × 1.5 s
    p = problem([(10, 100, 0.0, 1.5)] * 5)
    assert explain_infeasible(p) == [
        "small@g: queries only it can serve need 5.0 instance-seconds by the deadline 1.5 s, but its 2 instances offer 3.0 "
        "(short by 2.0 s)",
        "pool g: the queries only one deployment can serve need small@g at least 4 instances (4 devices); "
        "the pool has 2 devices",
    ]


def test_a_pool_short_of_devices_for_the_instances_single_deployment_queries_need():
    # small@g alone: 3 s of work due by 1.5 s → 2 instances (its maximum, not short);
    # big@g alone (floor 0.6, 5 s deadline; big@c takes 10 s): 1 instance; pool g has 2 GPUs, not 3
    p = problem([(10, 100, 0.0, 1.5)] * 3 + [(10, 100, 0.6, 5.0)])
    assert explain_infeasible(p) == [
        "pool g: the queries only one deployment can serve need small@g at least 2 instances (2 devices), "
        "big@g at least 1 instances (1 devices); the pool has 2 devices"]


def test_a_pool_short_of_device_seconds_for_the_queries_only_it_can_serve():
    # due by 3 s: small@g (1 s) or big@g (2 s), both on pool g; at least 7 device-seconds, 2 GPUs × 3 s
    p = problem([(10, 100, 0.0, 3.0)] * 7)
    assert explain_infeasible(p) == [
        "pool g: queries only it can serve need at least 7.0 device-seconds by the deadline 3 s, but its 2 devices offer "
        "6.0 (short by 1.0 device-seconds)"]


def test_a_shortage_no_single_rule_pins_down_gets_the_general_reason():
    # 25 queries due by 10 s, each may run anywhere: pool g serves 20 (1 s each), big@c one
    rows = [(10, 100, 0.0, 10.0)] * 25
    p = problem(rows)
    assert explain_infeasible(p) == [
        "capacity and deadlines together cannot be met: instances are too few for the work due before some deadlines "
        "(relax deadlines, add devices, or allow more instances)"]
    s = plan(workload_of(rows), two_llm_fleet(), make_models(TWO_LLM_MODELS), formulation="aggregate")
    assert s.status is Status.INFEASIBLE and s.message == explain_infeasible(p)[0]


def test_a_shortage_without_deadlines_names_the_horizon_not_deadlines():
    # horizon 10 s, no deadlines: three queries of 6 s on small@g only (big@g takes 12 s, big@c 60 s);
    # 18 of the 20 device-seconds, but an instance holds one such query and small@g has two
    rows = [(10, 600, 0.0, None)] * 3
    p = build_problem(workload_of(rows), two_llm_fleet(horizon_s=10.0), make_models(TWO_LLM_MODELS))
    assert explain_infeasible(p) == [
        "capacity cannot be met: instances are too few for the work by the horizon (10 s) "
        "(lengthen the horizon, add devices, or allow more instances)"]
    s = plan(workload_of(rows), two_llm_fleet(horizon_s=10.0), make_models(TWO_LLM_MODELS), formulation="exact")
    assert s.status is Status.INFEASIBLE and "deadline" not in s.message
