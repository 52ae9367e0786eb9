"""The independent checker catches each kind of violation in an exported plan."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import lognormal_workload
from energyopt.check import check_plan
from energyopt.modelstore import FittedModels
from energyopt.fleet import read_fleet
from energyopt.plan import plan


@pytest.fixture(scope="module")
def solved(synthetic_models, synthetic_fleet):
    wl = lognormal_workload(60, seed=5, deadline_fraction=0.3, deadline_range=(20, 300))
    fl, fm = read_fleet(synthetic_fleet), FittedModels.load(synthetic_models)
    s = plan(wl, fl, fm)
    assert s.status.value == "optimal"
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


def test_infeasible_capacity_is_explained():
    import pandas as pd

    from conftest import make_models
    from energyopt.fleet import fleet_from_dict

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
    assert s.status.value == "infeasible"
    assert "m@g: queries only it can serve need 6.0 instance-seconds by t = 3.0 s" in s.message
    assert "short by 3.0 s" in s.message
    # queries only "x" can serve need both of its 2-device instances, and "m" one device more
    wl2 = pd.DataFrame({"query_id": list("pqrs"), "input_tokens": [1] * 4, "output_tokens": [100] * 4,
                        "min_accuracy": [0.9, 0.9, 0.0, 0.0], "deadline_s": [5.0, 5.0, 2.5, None]})
    s2 = plan(wl2, fleet, models)
    assert s2.status.value == "infeasible"
    assert "pool g: the queries only one deployment can serve need" in s2.message and "the pool has 4 devices" in s2.message
