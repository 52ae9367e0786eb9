"""packing.py: from a deployment per query to a timeline (EDF per instance, repair, rounds), and
the price of a placed plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_models
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracles import timeline_cost

from energyopt.check import check_plan
from energyopt.fleet import fleet_from_dict
from energyopt.packing import ROUND_MIN_INSTANCES, Timeline, _place, pack, plan_objective
from energyopt.problem import build_problem
from energyopt.schedule import assignment_table

PROPERTY = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def one_llm_problem(deadlines, *, count=2, max_instances=2, horizon_s=100.0, idle_w=0.0, idle=False,
                    tout=100, energy_j=10.0):
    """One LLM on one pool, each query 0.01 s per output token (1 s at 100 tokens)."""
    fleet = fleet_from_dict({
        "horizon_s": horizon_s,
        "pools": {"g": {"kind": "gpu", "count": count, "memory_gb": 80, "idle_power_w": idle_w}},
        "llms": {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "m", "pool": "g", "max_instances": max_instances}],
    })
    models = make_models({("m", "g"): ((energy_j, 0, 0, 0), (0, 0, 0.01, 0))})
    n = len(deadlines)
    tout = np.broadcast_to(np.asarray(tout), (n,))
    wl = pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "input_tokens": 10, "output_tokens": tout,
                       "min_accuracy": 0.0, "deadline_s": np.asarray(deadlines, dtype=float)})
    return build_problem(wl, fleet, models, idle=idle)


def ends(problem, tl: Timeline) -> dict[str, float]:
    a = assignment_table(problem, tl)
    return dict(zip(a["query_id"], a["end_s"]))


# --- pack: EDF per instance, the instance free first ----------------------------------------

def test_pack_runs_one_instance_in_edf_order():
    p = one_llm_problem([3.0, 1.0, 2.0], count=1, max_instances=1)
    tl = pack(p, np.zeros(3, dtype=int), np.array([1]))
    assert tl.unplaced == [] and tl.lane.tolist() == [0, 0, 0]
    assert ends(p, tl) == pytest.approx({"q1": 1.0, "q2": 2.0, "q0": 3.0})


def test_pack_puts_each_query_on_the_instance_free_first():
    # EDF order q0 (due 1), q1 (due 2), q2 (due 2): q0 -> 0, q1 -> 1, q2 -> 0 (both free at 1 s; lower index)
    p = one_llm_problem([1.0, 2.0, 2.0])
    tl = pack(p, np.zeros(3, dtype=int), np.array([2]))
    assert tl.unplaced == [] and tl.lane.tolist() == [0, 1, 0]
    assert max(ends(p, tl).values()) == pytest.approx(2.0)


def test_pack_caps_instances_at_the_deployments_maximum():
    p = one_llm_problem([np.nan] * 4, count=4, max_instances=2)
    tl = pack(p, np.zeros(4, dtype=int), np.array([9]), repair=False)
    assert set(tl.lane.tolist()) == {0, 1}


def test_pack_leaves_queries_without_a_deployment_unplaced_and_unlisted():
    p = one_llm_problem([np.nan, np.nan])
    tl = pack(p, np.array([0, -1]), np.array([1]))
    assert tl.lane.tolist() == [0, -1] and tl.unplaced == []
    assert assignment_table(p, tl)["query_id"].tolist() == ["q0"]


def test_pack_without_repair_reports_the_late_query_unplaced():
    p = one_llm_problem([1.0, 2.0, 2.0])
    tl = pack(p, np.zeros(3, dtype=int), np.array([1]), repair=False)
    # on one instance q0 ends at 1, q1 (longest first among equals: both 1 s, stable) at 2, the third at 3 > 2
    assert len(tl.unplaced) == 1 and tl.lane[tl.unplaced[0]] == -1
    placed = [q for q in range(3) if q not in tl.unplaced]
    assert all(tl.lane[q] == 0 for q in placed)


def test_pack_with_enforce_due_off_places_every_query_however_late():
    p = one_llm_problem([1.0, 1.0, 1.0], count=1, max_instances=1)
    tl = pack(p, np.zeros(3, dtype=int), np.array([1]), repair=False, enforce_due=False)
    assert tl.unplaced == [] and tl.lane.tolist() == [0, 0, 0]
    assert max(ends(p, tl).values()) == pytest.approx(3.0)  # two of them late: a routing rule's plan


def test_pack_meets_a_due_time_exactly_at_the_boundary():
    # 1 s + 1 s end at 2 s, exactly the deadline: not late
    p = one_llm_problem([2.0, 2.0], count=1, max_instances=1)
    tl = pack(p, np.zeros(2, dtype=int), np.array([1]), repair=False)
    assert tl.unplaced == []


# --- repair ---------------------------------------------------------------------------------

def test_repair_switches_on_another_instance_where_the_pool_has_devices():
    p = one_llm_problem([1.0, 2.0, 2.0], count=2, max_instances=2)
    tl = pack(p, np.zeros(3, dtype=int), np.array([1]))
    assert tl.unplaced == []
    assert sorted(tl.lane.tolist()) == [0, 0, 1]
    assert all(ends(p, tl)[f"q{q}"] <= d + 1e-9 for q, d in enumerate([1.0, 2.0, 2.0]))


def test_repair_gives_up_when_no_instance_can_take_the_query():
    p = one_llm_problem([1.0, 2.0, 2.0], count=1, max_instances=1)
    tl = pack(p, np.zeros(3, dtype=int), np.array([1]))
    assert len(tl.unplaced) == 1 and tl.lane[tl.unplaced[0]] == -1


def test_repair_moves_a_late_query_to_the_cheapest_option_that_fits():
    fleet = fleet_from_dict({
        "horizon_s": 100.0,
        "pools": {"g": {"kind": "gpu", "count": 1, "memory_gb": 80, "idle_power_w": 0},
                  "c": {"kind": "cpu", "count": 2, "memory_gb": 80, "idle_power_w": 0}},
        "llms": {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "m", "pool": "g"}, {"llm": "m", "pool": "c"}],
    })
    # GPU: 1 s for 10 J; CPU: 1 s for 30 J
    models = make_models({("m", "g"): ((10, 0, 0, 0), (0, 0, 0.01, 0)), ("m", "c"): ((30, 0, 0, 0), (0, 0, 0.01, 0))})
    wl = pd.DataFrame({"query_id": ["a", "b"], "input_tokens": 10, "output_tokens": 100, "min_accuracy": 0.0,
                       "deadline_s": [1.0, 1.0]})
    p = build_problem(wl, fleet, models)
    tl = pack(p, np.array([0, 0]), np.array([1, 0]))
    assert tl.unplaced == [] and sorted(tl.dep.tolist()) == [0, 1]  # one stays on the GPU, the late one goes to a CPU
    assert plan_objective(p, tl) == pytest.approx(40.0)


def test_repair_never_lowers_accuracy_under_a_mean_floor():
    """A late query is moved only to an option at least as accurate when a mean floor is set."""
    fleet = fleet_from_dict({
        "horizon_s": 100.0,
        "pools": {"g": {"kind": "gpu", "count": 3, "memory_gb": 80, "idle_power_w": 0}},
        "llms": {"lo": {"accuracy": 0.3, "accuracy_source": "t", "params_b": 1},
                 "hi": {"accuracy": 0.7, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "hi", "pool": "g", "max_instances": 2}, {"llm": "lo", "pool": "g", "max_instances": 1}],
    })
    models = make_models({("hi", "g"): ((10, 0, 0, 0), (0, 0, 0.1, 0)), ("lo", "g"): ((1, 0, 0, 0), (0, 0, 0.1, 0))})
    wl = pd.DataFrame({"query_id": ["a", "b"], "input_tokens": [10, 10], "output_tokens": [50, 50],
                       "min_accuracy": [0.0, 0.0], "deadline_s": [5.0, 5.0]})
    for floor, want in ((None, "lo"), (0.7, "hi")):
        p = build_problem(wl, fleet, models, min_mean_accuracy=floor)
        # both on one "hi" instance: the second finishes at 10 s > 5 s and must be repaired
        tl = pack(p, np.array([0, 0]), np.array([1, 0]))
        moved = [q for q in range(2) if tl.dep[q] != 0]
        dep = {0: "hi", 1: "lo"}
        got = dep[int(tl.dep[moved[0]])] if moved else "hi"
        assert got == want and not tl.unplaced


# --- plan_objective -------------------------------------------------------------------------

def test_plan_objective_adds_each_instance_with_work_once():
    # idle 10 W over a 100 s horizon: 1000 J per switched-on instance; each query 10 J at 1 s, 0 above idle
    p = one_llm_problem([np.nan] * 3, count=2, idle_w=10.0, idle=True, energy_j=25.0)
    tl = Timeline(np.zeros(3, dtype=np.int64), np.array([0, 1, 0]))
    # above idle: 25 − 10·1 = 15 J per query; two instances on
    assert plan_objective(p, tl) == pytest.approx(3 * 15.0 + 2 * 1000.0)
    assert plan_objective(p, tl) == pytest.approx(timeline_cost(p, tl.dep, tl.lane))


def test_plan_objective_ignores_unplaced_queries():
    p = one_llm_problem([np.nan] * 3, energy_j=7.0)
    tl = Timeline(np.array([0, 0, -1]), np.array([0, -1, -1]), unplaced=[1])
    assert plan_objective(p, tl) == pytest.approx(7.0)


def test_plan_objective_of_an_empty_plan_is_zero():
    p = one_llm_problem([np.nan, np.nan], idle=True, idle_w=5.0)
    assert plan_objective(p, Timeline(np.full(2, -1), np.full(2, -1))) == 0.0


# --- rounds (16 or more instances) ----------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_round_packing_meets_every_due_time_and_balances(seed):
    """With many instances queries go a round at a time; every placed query ends by its due
    time, and without deadlines the loads stay within one query of each other's mean."""
    rng = np.random.default_rng(seed)
    k = ROUND_MIN_INSTANCES + int(rng.integers(0, 30))
    n = int(rng.integers(50, 2000))
    runs = rng.lognormal(0, 1, n)
    if seed % 2:
        dues = np.sort(rng.uniform(1, 3 * runs.sum() / k, n))
        order = np.lexsort((-runs, dues))
    else:
        dues = np.full(n, np.inf)
        order = np.argsort(-runs, kind="stable")
    runs, dues = runs[order], dues[order]
    got = _place(runs, dues, k)
    load = np.zeros(k)
    for r, due, i in zip(runs, dues, got):
        if i >= 0:
            load[i] += r
            assert load[i] <= due
    if seed % 2 == 0:
        assert np.all(got >= 0)
        assert load.max() <= runs.sum() / k + runs.max() + 1e-9


def test_round_packing_fills_two_rounds_by_the_deadline_and_passes_the_checker():
    n = 3 * ROUND_MIN_INSTANCES  # 1 s each, all due by 2 s: two rounds fit, the third does not
    p = one_llm_problem([2.0] * n, count=ROUND_MIN_INSTANCES, max_instances=ROUND_MIN_INSTANCES)
    tl = pack(p, np.zeros(n, dtype=int), np.array([ROUND_MIN_INSTANCES]), repair=False)
    assert len(tl.unplaced) == ROUND_MIN_INSTANCES
    a = assignment_table(p, tl)
    assert a.groupby("instance").size().tolist() == [2] * ROUND_MIN_INSTANCES  # two rounds of 16 fit by 2 s
    wl, fl, fm = p.inputs
    assert check_plan(a, wl, fl, fm, require_all=False) == []


# --- properties on random small problems ----------------------------------------------------

@st.composite
def packing_cases(draw):
    """A small random fleet (1–2 pools, 1–3 deployments, sometimes 16+ instances), a workload
    with some deadlines and floors, and a choice: instance counts within the pools and a
    deployment per query among its options."""
    n_pools = draw(st.integers(1, 2))
    many = draw(st.booleans())
    pools = {f"p{j}": {"kind": "gpu", "count": draw(st.integers(16, 20) if many else st.integers(1, 3)), "memory_gb": 80,
                       "idle_power_w": draw(st.sampled_from([0.0, 50.0]))} for j in range(n_pools)}
    llms = {"s": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1},
            "b": {"accuracy": 0.7, "accuracy_source": "t", "params_b": 1}}
    pairs = [(llm, pool) for llm in llms for pool in pools]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3, unique=True))
    deps = []
    for llm, pool in chosen:
        k = draw(st.integers(1, 2)) if pools[pool]["count"] >= 2 else 1
        deps.append({"llm": llm, "pool": pool, "devices_per_instance": k})
    horizon = draw(st.floats(2.0, 20.0))
    fleet = fleet_from_dict({"horizon_s": horizon, "pools": pools, "llms": llms, "deployments": deps})
    spec = {}
    for llm, pool in chosen:
        intercept = draw(st.floats(0.05, 1.0))
        per_token = draw(st.floats(0.0, 0.01))
        spec[(llm, pool)] = ((draw(st.floats(1.0, 50.0)), 0.0, 0.1, 0.0), (intercept, 0.0, per_token, 0.0))
    models = make_models(spec)
    n_q = draw(st.integers(1, 40 if many else 10))
    tout = draw(st.lists(st.integers(1, 300), min_size=n_q, max_size=n_q))
    dl = draw(st.lists(st.one_of(st.just(np.nan), st.floats(0.2, 15.0)), min_size=n_q, max_size=n_q))
    floor = draw(st.lists(st.sampled_from([0.0, 0.0, 0.5]), min_size=n_q, max_size=n_q))
    wl = pd.DataFrame({"query_id": [f"q{i}" for i in range(n_q)], "input_tokens": 10, "output_tokens": tout,
                       "min_accuracy": floor, "deadline_s": dl})
    floor_mean = draw(st.one_of(st.none(), st.just(0.5)))
    p = build_problem(wl, fleet, models, idle=draw(st.booleans()), min_mean_accuracy=floor_mean)
    # instance counts within each pool's devices (deployments of a pool served in turn), then a
    # deployment per query among its options that have an instance (as every method chooses)
    left = dict(zip(p.pools["pool"], p.pools["count"]))
    n_inst = np.zeros(p.n_deployments, dtype=np.int64)
    for d, r in p.deployments.iterrows():
        fit = min(int(r["max_instances"]), left[r["device"]] // int(r["devices_per_instance"]))
        n_inst[d] = draw(st.one_of(st.just(fit), st.integers(0, fit)) if many else st.integers(0, fit))
        left[r["device"]] -= int(n_inst[d]) * int(r["devices_per_instance"])
    dep_of_q = np.full(n_q, -1, dtype=np.int64)
    for q in range(n_q):
        opts = np.flatnonzero(p.ok[q] & (n_inst > 0)).tolist()
        if opts:
            dep_of_q[q] = draw(st.sampled_from(opts))
    return p, dep_of_q, n_inst


@PROPERTY
@given(packing_cases())
def test_property_every_placed_query_ends_by_its_due_time_without_overlap(case):
    p, dep_of_q, n_inst = case
    tl = pack(p, dep_of_q, n_inst)
    a = assignment_table(p, tl)
    due = dict(zip(p.queries["query_id"], p.queries["deadline_eff_s"]))
    assert all(end <= due[q] * (1 + 1e-12) + 1e-9 for q, end in zip(a["query_id"], a["end_s"]))
    for _, on in a.sort_values("start_s").groupby(["llm", "device", "instance"]):
        assert np.all(on["start_s"].to_numpy()[1:] >= on["end_s"].to_numpy()[:-1] - 1e-9)
    # every query with a deployment is either placed or reported unplaced, never both
    placed = set(np.flatnonzero(tl.lane >= 0).tolist())
    assert placed.isdisjoint(tl.unplaced)
    assert placed | set(tl.unplaced) == set(np.flatnonzero(dep_of_q >= 0).tolist())


@PROPERTY
@given(packing_cases())
def test_property_repair_keeps_every_first_pass_placement_and_only_shrinks_the_unplaced(case):
    p, dep_of_q, n_inst = case
    first = pack(p, dep_of_q, n_inst, repair=False)
    fixed = pack(p, dep_of_q, n_inst)
    kept = first.lane >= 0
    assert np.array_equal(fixed.dep[kept], first.dep[kept]) and np.array_equal(fixed.lane[kept], first.lane[kept])
    assert set(fixed.unplaced) <= set(first.unplaced)


@PROPERTY
@given(packing_cases())
def test_property_a_packed_plan_passes_the_independent_checker(case):
    p, dep_of_q, n_inst = case
    tl = pack(p, dep_of_q, n_inst)
    a = assignment_table(p, tl)
    wl, fl, fm = p.inputs
    assert check_plan(a, wl, fl, fm, require_all=False) == []
    assert plan_objective(p, tl) == pytest.approx(timeline_cost(p, tl.dep, tl.lane), rel=1e-12, abs=1e-9)


@PROPERTY
@given(packing_cases())
def test_property_repair_under_a_mean_accuracy_floor_never_lowers_a_querys_accuracy(case):
    p, dep_of_q, n_inst = case
    assume(p.min_mean_accuracy is not None)
    tl = pack(p, dep_of_q, n_inst)
    acc = p.deployments["accuracy"].to_numpy()
    moved = np.flatnonzero((tl.dep != dep_of_q) & (tl.lane >= 0))
    assert np.all(acc[tl.dep[moved]] >= acc[dep_of_q[moved]])


@PROPERTY
@given(packing_cases())
def test_property_a_placer_that_places_each_deployment_elsewhere_gives_the_same_timeline(case):
    # what the distributed planner does: every deployment's placement handed to place_lanes apart,
    # in any order, and the lanes given back in the order asked
    from energyopt.packing import place_lanes

    problem, dep, n_inst = case
    seen: list[int] = []

    def placer(jobs):
        seen.append(len(jobs))
        got = [place_lanes([j])[0] for j in reversed(jobs)]
        return got[::-1]

    a = pack(problem, dep, n_inst)
    b = pack(problem, dep, n_inst, placer=placer)
    assert seen == [int((np.bincount(dep[dep >= 0], minlength=problem.n_deployments) > 0).sum())]
    assert a.dep.tolist() == b.dep.tolist() and a.lane.tolist() == b.lane.tolist() and a.unplaced == b.unplaced


def test_move_off_to_another_lane_never_puts_a_query_back_where_it_was():
    # two instances, q0 on instance 0 before q1: moved with other_lane, q1 leaves instance 0 for the
    # free instance 1 (the cheapest lane that takes it, at no extra cost); without, it may return
    from energyopt.packing import move_off
    p = one_llm_problem([5.0, 5.0], count=2, max_instances=2)
    tl = Timeline(np.array([0, 0]), np.array([0, 0]))
    moved = move_off(p, tl, np.array([1]), {}, other_lane=True)
    assert moved.unplaced == [] and moved.dep[1] == 0 and moved.lane[1] != 0 and moved.lane[0] == 0
    back = move_off(p, tl, np.array([1]), {})
    assert back.unplaced == [] and back.lane[1] == 0  # the least-loaded lane in use, as before
