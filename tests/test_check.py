"""The independent checker catches each kind of violation in an exported plan: each rule on a small
plan made by hand that breaks exactly that rule, then on real plans; and it re-derives the energy
totals of a plan's summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import lognormal_workload, make_models

from energyopt import check
from energyopt.check import check_plan, derive_totals
from energyopt.errors import DataError
from energyopt.fleet import fleet_from_dict, read_fleet
from energyopt.modelstore import FittedModels
from energyopt.plan import plan
from energyopt.schema import Status

# --- a plan made by hand, and one test per rule ----------------------------------------------------
#
# Fleet: pool g (2 GPUs, 10 W idle each), pool c (2 CPUs, 20 W idle each); LLM s (accuracy 0.4,
# 1000-token context) and b (0.7); deployments s@g and b@g (1 device each, at most 2 instances) and
# b@c (2 devices, 1 instance). Models: s@g  E = 100 - tin + tout [J] (<= 0 for long prompts),
# R = 0.01 tout [s]; b@g  E = 5 tout, R = 0.05 tout; b@c  E = 3 tout, R = 0.2 tout.
#
#   query  tin  tout  floor  deadline  placed           start  end   runtime  energy
#   q1     100   100   0      -        s@g instance 0    0      1     1        100
#   q2     100   200   0      10       s@g instance 0    1      3     2        200
#   q3      50   100   0.6    -        b@c instance 0    0     20    20        300
#   q4     100    60   0      -        s@g instance 1    0      0.6   0.6       60


def _hand_fleet(s_context_tokens: int = 1000):
    return fleet_from_dict({
        "horizon_s": 100,
        "pools": {"g": {"kind": "gpu", "count": 2, "memory_gb": 80, "idle_power_w": 10},
                  "c": {"kind": "cpu", "count": 2, "memory_gb": 80, "idle_power_w": 20}},
        "llms": {"s": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1, "context_tokens": s_context_tokens},
                 "b": {"accuracy": 0.7, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "s", "pool": "g"}, {"llm": "b", "pool": "g"},
                        {"llm": "b", "pool": "c", "devices_per_instance": 2}],
    })


HAND_MODELS = make_models({("s", "g"): ((100, -1, 1, 0), (0, 0, 0.01, 0)),
                           ("b", "g"): ((0, 0, 5, 0), (0, 0, 0.05, 0)),
                           ("b", "c"): ((0, 0, 3, 0), (0, 0, 0.2, 0))})


def _hand_workload() -> pd.DataFrame:
    return pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "input_tokens": [100, 100, 50, 100],
                         "output_tokens": [100, 200, 100, 60], "min_accuracy": [0.0, 0.0, 0.6, 0.0],
                         "deadline_s": [np.nan, 10.0, np.nan, np.nan]})


def _hand_plan() -> pd.DataFrame:
    return pd.DataFrame({
        "query_id": ["q1", "q2", "q3", "q4"], "llm": ["s", "s", "b", "s"], "device": ["g", "g", "c", "g"],
        "instance": [0, 0, 0, 1], "lane": [0, 0, 0, 0], "batch_size": [1, 1, 1, 1],
        "start_s": [0.0, 1.0, 0.0, 0.0], "end_s": [1.0, 3.0, 20.0, 0.6],
        "runtime_s": [1.0, 2.0, 20.0, 0.6], "energy_j": [100.0, 200.0, 300.0, 60.0], "accuracy": [0.4, 0.4, 0.7, 0.4],
        "deadline_s": [np.nan, 10.0, np.nan, np.nan]})


def _with(plan_table: pd.DataFrame, qid: str, **values) -> pd.DataFrame:
    """The plan with some columns of one query's row changed."""
    out = plan_table.copy()
    for col, v in values.items():
        out.loc[out["query_id"] == qid, col] = v
    return out


def _extra_row(plan_table: pd.DataFrame, **values) -> pd.DataFrame:
    """The plan with one more row (on lane 0 of a batch-1 instance unless ``values`` say otherwise)."""
    return pd.concat([plan_table, pd.DataFrame([{"lane": 0, "batch_size": 1, **values}])], ignore_index=True)


def test_the_hand_made_plan_is_valid():
    assert check_plan(_hand_plan(), _hand_workload(), _hand_fleet(), HAND_MODELS, min_mean_accuracy=0.45) == []


def test_rule_columns_present():
    out = check_plan(_hand_plan().drop(columns=["energy_j"]), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["assignment lacks column(s) energy_j"]


def test_rule_each_query_exactly_once():
    wl, fl = _hand_workload(), _hand_fleet()
    # q1 a second time, on b@c after q3 (valid there): only the duplicate is wrong
    twice = _extra_row(_hand_plan(), query_id="q1", llm="b", device="c", instance=0, start_s=20.0, end_s=40.0,
                       runtime_s=20.0, energy_j=300.0, accuracy=0.7, deadline_s=np.nan)
    assert check_plan(twice, wl, fl, HAND_MODELS) == ["queries assigned more than once: q1"]
    ghost = _extra_row(_hand_plan(), query_id="ghost", llm="s", device="g", instance=1, start_s=5.0, end_s=6.0,
                       runtime_s=1.0, energy_j=100.0, accuracy=0.4, deadline_s=np.nan)
    assert check_plan(ghost, wl, fl, HAND_MODELS) == ["assignment names queries not in the workload: ghost"]
    without_q4 = _hand_plan().iloc[:3]
    assert check_plan(without_q4, wl, fl, HAND_MODELS) == ["1 queries not assigned, e.g. q4"]
    assert check_plan(without_q4, wl, fl, HAND_MODELS, require_all=False) == []


def test_rule_deployments_exist():
    out = check_plan(_with(_hand_plan(), "q3", device="x"), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["b on x is not a deployment of the fleet"]


def test_rule_instances_within_deployments_and_pools():
    wl, fl = _hand_workload(), _hand_fleet()
    out = check_plan(_with(_hand_plan(), "q4", instance=5), wl, fl, HAND_MODELS)
    assert out == ["s on g: instance numbers 0..5 outside 0..1"]
    # q1 on an instance of b@g: with s@g's two instances, three devices of pool g's two
    moved = _with(_hand_plan(), "q1", llm="b", end_s=5.0, runtime_s=5.0, energy_j=500.0, accuracy=0.7)
    assert check_plan(moved, wl, fl, HAND_MODELS) == ["pool g: 3 devices switched on, only 2 exist"]


def test_rule_predictions_valid_and_within_context():
    # q4 with a 200-token prompt: s@g's model predicts 100 - 200 + 60 < 0 J (the plan states 0 J, the clipped value)
    wl = _hand_workload()
    wl.loc[3, "input_tokens"] = 200
    out = check_plan(_with(_hand_plan(), "q4", energy_j=0.0), wl, _hand_fleet(), HAND_MODELS)
    assert out == ["s on g: 1 queries where the model predicts <= 0"]
    out = check_plan(_hand_plan(), _hand_workload(), _hand_fleet(s_context_tokens=250), HAND_MODELS)
    assert out == ["s: 1 queries exceed its 250-token context"]  # q2: 300 tokens


def test_rule_runtimes_and_energies_match_models():
    wl, fl = _hand_workload(), _hand_fleet()
    out = check_plan(_with(_hand_plan(), "q2", energy_j=100.0), wl, fl, HAND_MODELS)
    assert out == ["energy_j differs from the model's prediction for 1 queries, e.g. q2"]
    out = check_plan(_with(_hand_plan(), "q2", runtime_s=1.0), wl, fl, HAND_MODELS)
    assert out == ["runtime_s differs from the model's prediction for 1 queries, e.g. q2"]
    # within the relative tolerance: still valid
    assert check_plan(_with(_hand_plan(), "q2", energy_j=200.0 * (1 + 1e-8)), wl, fl, HAND_MODELS) == []


def test_rule_starts_at_or_after_zero():
    out = check_plan(_with(_hand_plan(), "q4", start_s=-0.5, end_s=0.1), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["1 queries start before t = 0"]


def test_rule_starts_at_or_after_release():
    """A plan that starts a query before its release fails; the workload's release is what counts,
    and an assignment's release_s column that differs from it is named too."""
    wl = _hand_workload().assign(release_s=[0.0, 0.0, 0.0, 5.0])
    out = check_plan(_hand_plan(), wl, _hand_fleet(), HAND_MODELS)
    assert out == ["1 queries start before their release, e.g. q4 at 0 s, released at 5 s"]
    late_enough = _with(_hand_plan(), "q4", start_s=5.0, end_s=5.6)
    assert check_plan(late_enough, wl, _hand_fleet(), HAND_MODELS) == []
    assert check_plan(late_enough.assign(release_s=[0.0, 0.0, 0.0, 5.0]), wl, _hand_fleet(), HAND_MODELS) == []
    out = check_plan(late_enough.assign(release_s=[0.0, 0.0, 0.0, 4.0]), wl, _hand_fleet(), HAND_MODELS)
    assert out == ["release_s differs from the workload's for 1 queries, e.g. q4"]
    # a plan made before release times (no release_s column) against a workload without releases
    assert check_plan(_hand_plan(), _hand_workload(), _hand_fleet(), HAND_MODELS) == []


def test_rule_durations_match_runtimes():
    out = check_plan(_with(_hand_plan(), "q4", end_s=0.7), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["end_s - start_s differs from the runtime for 1 queries, e.g. q4"]


def test_rule_deadlines_met():
    out = check_plan(_with(_hand_plan(), "q2", start_s=9.0, end_s=11.0), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["1 queries end after their deadline, e.g. q2"]


def test_rule_horizon_met():
    out = check_plan(_with(_hand_plan(), "q4", start_s=99.8, end_s=100.4), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["1 queries end after the horizon of 100 s"]


def test_rule_accuracy_column_matches_catalog():
    out = check_plan(_with(_hand_plan(), "q1", accuracy=0.5), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["accuracy column differs from the fleet's LLM catalog"]


def test_rule_accuracy_floors_met():
    wl = _hand_workload()
    wl.loc[0, "min_accuracy"] = 0.5
    assert check_plan(_hand_plan(), wl, _hand_fleet(), HAND_MODELS) == [
        "1 queries run on an LLM below their min_accuracy, e.g. q1"]


def test_rule_batch_mean_accuracy_floor_met():
    # token weights 200, 300, 150, 160: (200 + 300 + 160) * 0.4 + 150 * 0.7 = 369 over 810
    out = check_plan(_hand_plan(), _hand_workload(), _hand_fleet(), HAND_MODELS, min_mean_accuracy=0.5)
    assert out == ["token-weighted mean accuracy 0.4556 below the floor 0.5"]


def test_rule_batch_sizes_and_lanes_valid():
    out = check_plan(_with(_hand_plan(), "q4", lane=1), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["1 queries on a lane outside 0..batch size - 1, e.g. q4"]


def test_rule_no_overlap_on_a_lane():
    out = check_plan(_with(_hand_plan(), "q2", start_s=0.5, end_s=2.5), _hand_workload(), _hand_fleet(), HAND_MODELS)
    assert out == ["1 queries overlap another on the same lane"]
    # the same times on different instances do not overlap
    apart = _with(_hand_plan(), "q4", start_s=0.2, end_s=0.8)
    assert check_plan(apart, _hand_workload(), _hand_fleet(), HAND_MODELS) == []


def test_every_rule_is_tested_here():
    tested = {name.removeprefix("test_rule_") for name in globals() if name.startswith("test_rule_")}
    rules = {"columns_present", "each_query_exactly_once", "deployments_exist", "instances_within_deployments_and_pools",
             "predictions_valid_and_within_context", "runtimes_and_energies_match_models", "starts_at_or_after_zero",
             "starts_at_or_after_release", "durations_match_runtimes", "deadlines_met", "horizon_met",
             "accuracy_column_matches_catalog", "accuracy_floors_met", "batch_mean_accuracy_floor_met",
             "batch_sizes_and_lanes_valid", "no_overlap_on_a_lane", "totals_match"}
    assert rules <= set(check.__all__)
    assert tested == rules


# --- the energy totals, re-derived ------------------------------------------------------------------


def test_derive_totals_by_hand():
    wl, fl = _hand_workload(), _hand_fleet()
    # the plan's own energies are not read
    plan_table = _with(_hand_plan(), "q1", energy_j=1e6, runtime_s=1e6)
    assert derive_totals(plan_table, wl, fl, HAND_MODELS, idle=False) == {
        "query_energy_j": 660.0, "idle_energy_j": 0.0, "total_energy_j": 660.0}
    # above idle: q1 100 - 10·1, q2 200 - 10·2, q3 max(300 - 2·20 W·20 s, 0), q4 60 - 10·0.6;
    # idle: instances s@g 0 and 1 (10 W each) and b@c 0 (2 devices of 20 W), over 100 s
    got = derive_totals(plan_table, wl, fl, HAND_MODELS, idle=True)
    assert got == pytest.approx({"query_energy_j": 90 + 180 + 0 + 54, "idle_energy_j": 6000.0,
                                 "total_energy_j": 6324.0}, rel=1e-12)


def test_derive_totals_refuses_rows_it_cannot_price():
    wl, fl = _hand_workload(), _hand_fleet()
    with pytest.raises(DataError, match="query 'ghost' is not in the workload"):
        derive_totals(_with(_hand_plan(), "q1", query_id="ghost"), wl, fl, HAND_MODELS, idle=False)
    with pytest.raises(DataError, match="query 'q3' is on b/x, which the fleet does not deploy"):
        derive_totals(_with(_hand_plan(), "q3", device="x"), wl, fl, HAND_MODELS, idle=True)
    with pytest.raises(DataError, match="assignment lacks column"):
        derive_totals(_hand_plan().drop(columns=["instance"]), wl, fl, HAND_MODELS, idle=True)


def test_rule_totals_match():
    wl, fl = _hand_workload(), _hand_fleet()
    ok = {"query_energy_j": 324.0, "idle_energy_j": 6000.0, "total_energy_j": 6324.0}
    assert check_plan(_hand_plan(), wl, fl, HAND_MODELS, totals=ok, idle=True) == []
    assert check_plan(_hand_plan(), wl, fl, HAND_MODELS, totals={"total_energy_j": 660.0 * (1 + 1e-8)}) == []
    out = check_plan(_hand_plan(), wl, fl, HAND_MODELS, totals={"total_energy_j": 661.0})
    assert out == ["total_energy_j 661 J differs from the 660 J re-derived from the assignment and the models"]
    # totals counted without idle power checked as if with it: the query and idle parts differ
    out = check_plan(_hand_plan(), wl, fl, HAND_MODELS, totals={**ok, "query_energy_j": 660.0, "idle_energy_j": 0.0},
                     idle=True)
    assert out == ["query_energy_j 660 J differs from the 324 J re-derived from the assignment and the models",
                   "idle_energy_j 0 J differs from the 6000 J re-derived from the assignment and the models"]
    assert check_plan(_hand_plan(), wl, fl, HAND_MODELS, totals={"energy": 1.0}) == [
        "the totals name none of query_energy_j, idle_energy_j, total_energy_j"]


@pytest.mark.parametrize("idle", [False, True])
def test_totals_of_real_plans_match_the_schedule(synthetic_models, idle):
    # a short horizon and a high accuracy floor: the one big-llm instance of gpu-b is not enough, so
    # big-llm also runs on 2-device instances of gpu-a
    fl = fleet_from_dict({
        "horizon_s": 200,
        "pools": {"gpu-a": {"kind": "gpu", "count": 4, "memory_gb": 80, "idle_power_w": 60},
                  "gpu-b": {"kind": "gpu", "count": 1, "memory_gb": 40, "idle_power_w": 50}},
        "llms": {"small-llm": {"accuracy": 0.45, "accuracy_source": "t", "params_b": 7},
                 "big-llm": {"accuracy": 0.6, "accuracy_source": "t", "params_b": 13}},
        "deployments": [{"llm": "small-llm", "pool": "gpu-a"}, {"llm": "big-llm", "pool": "gpu-a", "devices_per_instance": 2},
                        {"llm": "big-llm", "pool": "gpu-b"}],
    })
    fm = FittedModels.load(synthetic_models)
    wl = lognormal_workload(80, seed=11, deadline_fraction=0.2, deadline_range=(30, 300))
    s = plan(wl, fl, fm, idle=idle, min_mean_accuracy=0.58)
    assert s.status.has_plan
    on = s.assignment.groupby(["llm", "device"]).size()
    assert on.get(("big-llm", "gpu-a"), 0) and on.get(("small-llm", "gpu-a"), 0), on  # 2-device and 1-device instances
    got = derive_totals(s.assignment, wl, fl, fm, idle=idle)
    assert got == pytest.approx(s.energy_totals(), rel=1e-9)
    assert (got["idle_energy_j"] > 0) == idle
    assert check_plan(s.assignment, wl, fl, fm, totals=s.summary().to_dict(), idle=idle) == []
    # the other accounting's totals are caught
    other = derive_totals(s.assignment, wl, fl, fm, idle=not idle)
    assert check_plan(s.assignment, wl, fl, fm, totals=other, idle=idle) != []


# --- real plans ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def solved(synthetic_models, synthetic_fleet):
    wl = lognormal_workload(60, seed=5, deadline_fraction=0.3, deadline_range=(20, 300))
    fl, fm = read_fleet(synthetic_fleet), FittedModels.load(synthetic_models)
    s = plan(wl, fl, fm)
    assert s.status is Status.OPTIMAL
    return s, wl, fl, fm


def test_valid_plan_passes(solved, tmp_path):
    s, wl, fl, fm = solved
    s.to_csv(tmp_path / "a.csv")
    assert check_plan(tmp_path / "a.csv", wl, fl, fm) == []


def _set(col, value_fn):
    def fn(a, wl):
        a = a.copy()
        a.loc[0, col] = value_fn(a)
        return a, wl
    return fn


def _drop_first(a, wl):
    return a.iloc[1:], wl


def _raise_floor(a, wl):
    wl = wl.copy()
    wl.loc[wl["query_id"] == a.loc[0, "query_id"], "min_accuracy"] = 0.99
    return a, wl


@pytest.mark.parametrize(
    "fn, match",
    [
        (_drop_first, "not assigned"),
        (_set("query_id", lambda a: a.loc[1, "query_id"]), "more than once"),
        (_set("energy_j", lambda a: a.loc[0, "energy_j"] * 0.5), "energy_j differs"),
        (_set("runtime_s", lambda a: a.loc[0, "runtime_s"] * 0.5), "runtime_s differs"),
        (_set("instance", lambda a: 99), "instance numbers"),
        (_set("llm", lambda a: "nope"), "not a deployment"),
        (_raise_floor, "below their min_accuracy"),
        (_set("query_id", lambda a: "ghost"), "not in the workload: ghost"),
        (_set("instance", lambda a: -1), "instance numbers -1.."),
        (_set("end_s", lambda a: a.loc[0, "end_s"] + 1.0), "end_s - start_s differs"),
    ],
)
def test_violations_are_found(solved, fn, match):
    s, wl, fl, fm = solved
    a, wl2 = fn(s.assignment, wl)
    out = check_plan(a, wl2, fl, fm)
    assert any(match in v for v in out), out


def test_repeated_unknown_ids_and_a_workload_listing_an_id_twice(solved):
    s, wl, fl, fm = solved
    a = s.assignment.copy()
    a.loc[[0, 1], "query_id"] = "ghost"
    out = check_plan(a, wl, fl, fm)
    assert any("more than once: ghost" in v for v in out) and any("2 queries not assigned" in v for v in out), out
    # an id listed twice in a workload given through the API: its first row is the one checked
    wl2 = pd.concat([wl, wl.iloc[[0]].assign(input_tokens=wl["input_tokens"].iloc[0] + 1)], ignore_index=True)
    assert check_plan(s.assignment, wl2, fl, fm) == []


def test_overlap_late_and_horizon(solved):
    s, wl, fl, fm = solved
    a = s.assignment.copy()
    key = a.groupby(["llm", "device", "instance"]).filter(lambda g: len(g) > 1).index[:2]
    a.loc[key[1], ["start_s", "end_s"]] = [a.loc[key[0], "start_s"], a.loc[key[0], "start_s"] + a.loc[key[1], "runtime_s"]]
    assert any("overlap" in v for v in check_plan(a, wl, fl, fm))
    b = s.assignment.copy()
    b[["start_s", "end_s"]] += fl.horizon_s
    out = check_plan(b, wl, fl, fm)
    assert any("after the horizon" in v for v in out) and any("after their deadline" in v for v in out)


def test_pool_capacity(solved):
    s, wl, fl, fm = solved
    a = s.assignment.copy()
    dev = a["device"].iloc[0]
    llms = [d.llm for d in fl.deployments if d.pool == dev]
    a.loc[a["device"] == dev, "llm"] = llms[0]
    a.loc[a["device"] == dev, "instance"] = range((a["device"] == dev).sum())
    a.loc[a["device"] == dev, "instance"] %= 2
    other = a[(a["device"] == dev)].index[:1]
    a.loc[other, "llm"] = llms[1]
    out = check_plan(a, wl, fl, fm)
    assert any("devices switched on" in v for v in out), out


def test_check_schedule_api(solved):
    from energyopt import check_schedule

    s, wl, fl, fm = solved
    assert check_schedule(s.problem, s) == []
    # it compares the schedule's own energy totals with the re-derived ones
    s.assignment.loc[0, "energy_j"] *= 2
    try:
        out = check_schedule(s.problem, s)
    finally:
        s.assignment.loc[0, "energy_j"] /= 2
    assert any("energy_j differs from the model" in v for v in out)
    assert any(v.startswith("total_energy_j") and "re-derived" in v for v in out), out


def test_infeasible_capacity_is_explained():
    fleet = fleet_from_dict({
        "horizon_s": 100.0,
        "pools": {"g": {"kind": "gpu", "count": 4, "memory_gb": 80, "idle_power_w": 0}},
        "llms": {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1},
                 "x": {"accuracy": 0.9, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "m", "pool": "g", "max_instances": 1},
                        {"llm": "x", "pool": "g", "devices_per_instance": 2, "max_instances": 2}],
    })
    models = make_models({("m", "g"): ((1, 0, 0, 0), (0, 0, 0.02, 0)), ("x", "g"): ((1, 0, 0, 0), (0, 0, 0.05, 0))})
    # three 2-second queries only "m" may serve (floor 0.5 < 0.9 is fine, but x is too slow: 5 s > 3 s)
    wl = pd.DataFrame({"query_id": ["a", "b", "c"], "input_tokens": [1, 1, 1], "output_tokens": [100, 100, 100],
                       "min_accuracy": [0.0] * 3, "deadline_s": [3.0, 3.0, 3.0]})
    s = plan(wl, fleet, models)
    assert s.status is Status.INFEASIBLE
    assert "m@g: queries only it can serve need 6.0 instance-seconds by the deadline 3 s" in s.message
    assert "short by 3.0 s" in s.message
    # queries only "x" can serve need both of its 2-device instances, and "m" one device more
    wl2 = pd.DataFrame({"query_id": list("pqrs"), "input_tokens": [1] * 4, "output_tokens": [100] * 4,
                        "min_accuracy": [0.9, 0.9, 0.0, 0.0], "deadline_s": [5.0, 5.0, 2.5, None]})
    s2 = plan(wl2, fleet, models)
    assert s2.status is Status.INFEASIBLE
    assert "pool g: the queries only one deployment can serve need" in s2.message and "the pool has 4 devices" in s2.message


# --- predictions outside the measured token ranges -----------------------------------------------


def test_under_strict_range_the_checker_refuses_a_query_on_an_extrapolated_prediction():
    from conftest import inside_outside_workload, ranged_two_llm_models, two_llm_fleet

    wl, fl, fm = inside_outside_workload(), two_llm_fleet(), ranged_two_llm_models()
    s = plan(wl, fl, fm, solver="highs")  # q1 (600 + 300 tokens, outside every model's 8-512 x 8-256) on small@g
    assert check_plan(s.assignment, wl, fl, fm) == []
    assert check_plan(s.assignment, wl, fl, fm, strict_range=True) == [
        "small on g: 1 queries outside the token ranges its models were measured on (--strict-range), e.g. q1"]


def test_the_checker_re_derives_the_summary_count_of_extrapolated_queries_and_their_energy():
    from conftest import inside_outside_workload, ranged_two_llm_models, two_llm_fleet

    wl, fl, fm = inside_outside_workload(), two_llm_fleet(), ranged_two_llm_models()
    s = plan(wl, fl, fm, solver="highs")
    doc = s.summary().to_dict()
    assert check_plan(s.assignment, wl, fl, fm, totals=doc) == []
    out = check_plan(s.assignment, wl, fl, fm, totals={**doc, "extrapolated_queries": 0, "extrapolated_energy_j": 0.0})
    assert out == ["extrapolated_queries 0 differs from the 1 re-derived from the assignment and the models' measured "
                   "ranges",
                   "extrapolated_energy_j 0 differs from the 300 re-derived from the assignment and the models' "
                   "measured ranges"]
    # a summary without a plan states no energy (null): nothing to compare
    assert check_plan(s.assignment, wl, fl, fm, totals={**doc, "extrapolated_energy_j": None}) == []


def test_stated_engine_times_are_those_of_the_plans_lanes():
    # the replay example planned batched: its engine times re-derived from the rows; a changed
    # time or two swapped lanes are caught; a plan that states none is not checked for them
    from pathlib import Path

    from energyopt.modelstore import FittedModels
    from energyopt.plan import plan

    ex = Path(__file__).parent.parent / "examples" / "replay"
    models = FittedModels.load(ex / "models-engine")
    w = pd.read_csv(ex / "workload.csv")
    sched = plan(w, ex / "fleet-batched.toml", models)
    a = sched.assignment
    fleet = sched.problem.inputs.fleet
    assert a["engine_end_s"].notna().all() and check_plan(a, w, fleet, models) == []
    later = a.copy()
    later.loc[3, "engine_end_s"] += 0.01
    assert check_plan(later, w, fleet, models) == [
        f"engine_end_s differs from the engine simulation of the plan's lanes for 1 queries, e.g. {a.loc[3, 'query_id']}"]
    inst = a[(a["llm"] == "qwen2.5-0.5b")]
    i = inst.index[inst["start_s"] == 0][0]
    j = inst.index[(inst["start_s"] == 0) & (inst["lane"] != a.loc[i, "lane"])][0]
    swapped = a.copy()
    swapped.loc[[i, j], "lane"] = a.loc[[j, i], "lane"].to_numpy()
    assert any(v.startswith("engine_start_s differs") for v in check_plan(swapped, w, fleet, models))
    assert check_plan(a.drop(columns=["engine_start_s", "engine_end_s"]), w, fleet, models) == []
    assert check_plan(a.assign(engine_start_s=np.nan, engine_end_s=np.nan), w, fleet, models) == []
