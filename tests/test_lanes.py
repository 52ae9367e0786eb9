"""Batched serving: an instance at batch size b is b lanes. Fleets, models, problems, every method,
packing, the checker and explain on lanes, against a brute-force optimum over lanes."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from energyopt.accounting import edf_feasible
from energyopt.check import check_plan
from energyopt.errors import DataError
from energyopt.fleet import fleet_from_dict, kv_context_tokens
from energyopt.modelstore import FitMetrics, FittedModel, FittedModels
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schema import Status

# Per query at batch size b: energy = 2·tout/b + 0.01·tin·tout/1000 [J] (the weights' read is
# shared by the batch), runtime = 0.01·tout + 0.001·b·tout [s] (every query's step slows as the
# batch grows). Measured at batch sizes 1..4.
_ENERGY = (("tout/b", 2.0), ("tin*tout", 1e-5))
_RUNTIME = (("tout", 0.01), ("b*tout", 0.001))


def _batch_model(llm: str, device: str, scale: float = 1.0, batch_range: tuple[int, int] = (1, 4)) -> dict:
    m = FitMetrics(1.0, 1.0, 0.0, 0.0, 10, 10)
    out = {}
    for target, terms in (("energy_j", _ENERGY), ("runtime_s", _RUNTIME)):
        feats = tuple(f for f, _ in terms)
        coef = np.array([c * (scale if target == "energy_j" else 1.0) for _, c in terms])
        out[target] = FittedModel(llm, device, target, "batch", feats, coef, m, (1, 8192), (1, 4096),
                                  batch_size_range=batch_range)
    return out


def _fleet(batch_sizes=(1, 2), count: int = 1, kv: float = 1e6, memory_gb: float = 80.0, horizon_s: float = 100.0,
           max_instances: int | None = None):
    dep = {"llm": "m", "pool": "g", "batch_sizes": list(batch_sizes)}
    if max_instances is not None:
        dep["max_instances"] = max_instances
    return fleet_from_dict({
        "horizon_s": horizon_s,
        "pools": {"g": {"kind": "gpu", "count": count, "memory_gb": memory_gb, "idle_power_w": 50.0},
                  "c": {"kind": "cpu", "count": 1, "memory_gb": 64, "idle_power_w": 0.0}},
        "llms": {"m": {"accuracy": 0.6, "accuracy_source": "t", "params_b": 1, "context_tokens": 8192,
                       "kv_bytes_per_token": kv},
                 "s": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 0.5}},
        "deployments": [dep, {"llm": "s", "pool": "c"}],
    })


def _models() -> FittedModels:
    return FittedModels({("m", "g"): _batch_model("m", "g"), ("s", "c"): _batch_model("s", "c", scale=3.0, batch_range=(1, 1))})


def _workload(n: int, seed: int = 0, deadline: float | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "input_tokens": rng.integers(10, 400, n),
                         "output_tokens": rng.integers(50, 800, n), "min_accuracy": np.zeros(n),
                         "deadline_s": np.full(n, np.nan if deadline is None else deadline)})


# --- fleet ----------------------------------------------------------------------------------------


def test_fleet_lists_one_problem_deployment_per_batch_size():
    t = _fleet(batch_sizes=(4, 1, 2)).deployments_table()
    m = t[t["llm"] == "m"]
    assert m["batch_size"].tolist() == [1, 2, 4] and m["lanes"].tolist() == [1, 2, 4]
    assert m["group"].nunique() == 1 and m["deployment"].tolist() == ["m@g/b1", "m@g/b2", "m@g/b4"]
    assert t[t["llm"] == "s"]["deployment"].tolist() == ["s@c"]  # batch size 1 only: today's name


def test_kv_context_is_what_the_lanes_leave_beside_the_weights():
    fl = _fleet(kv=1e6, memory_gb=10.0)
    pool, llm = fl.pools["g"], fl.llms["m"]
    # 10 GB − 2 GB of weights (1e9 parameters × 2 bytes) × 1.2 = 7.6e9 bytes, over 4 lanes of 1e6 bytes per token
    assert kv_context_tokens(pool, llm, 1, 4) == int(7.6e9 // 4e6) == 1900
    assert kv_context_tokens(pool, llm, 1, 1) == 10**12  # one query: the weights' overhead covers it


@pytest.mark.parametrize(("dep", "message"), [
    ({"llm": "m", "pool": "g", "batch_size": 2, "batch_sizes": [1, 2]}, "give batch_size or batch_sizes, not both"),
    ({"llm": "m", "pool": "g", "batch_sizes": []}, "batch_sizes must be a non-empty list"),
    ({"llm": "m", "pool": "g", "batch_sizes": [1, 0]}, r"batch_sizes must hold whole numbers >= 1, got 0"),
    ({"llm": "m", "pool": "g", "batch_sizes": [2, 2]}, "lists a batch size twice"),
    ({"llm": "m", "pool": "g", "batch_size": 2.5}, r"batch_size must hold whole numbers >= 1, got 2.5"),
    ({"llm": "m", "pool": "g", "max_instance": 2}, r"unknown key deployments\[0\].max_instance; did you mean max_instances\?"),
])
def test_bad_deployment_keys_are_one_line_errors(dep, message):
    doc = {"horizon_s": 10, "pools": {"g": {"kind": "gpu", "count": 1, "memory_gb": 80, "idle_power_w": 1}},
           "llms": {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1, "kv_bytes_per_token": 1e5}},
           "deployments": [dep]}
    with pytest.raises(DataError, match=message):
        fleet_from_dict(doc, "f.toml")


def test_a_batched_deployment_needs_the_kv_size_of_its_llm():
    doc = {"horizon_s": 10, "pools": {"g": {"kind": "gpu", "count": 1, "memory_gb": 80, "idle_power_w": 1}},
           "llms": {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1}},
           "deployments": [{"llm": "m", "pool": "g", "batch_sizes": [1, 8]}]}
    with pytest.raises(DataError, match=r"f.toml: key llms.m.kv_bytes_per_token is missing; deployments\[0\] runs at"):
        fleet_from_dict(doc, "f.toml")
    doc["llms"]["m"]["context_token"] = 4096
    with pytest.raises(DataError, match="unknown key llms.m.context_token; did you mean context_tokens"):
        fleet_from_dict(doc, "f.toml")


# --- models ---------------------------------------------------------------------------------------


def test_models_predict_at_a_batch_size_within_their_range_only(tmp_path):
    fm = _models()
    p1 = fm.predict("m", "g", [100], [200], batch_size=1).iloc[0]
    p4 = fm.predict("m", "g", [100], [200], batch_size=4).iloc[0]
    assert p1["energy_j"] == pytest.approx(2 * 200 + 1e-5 * 100 * 200)
    assert p4["energy_j"] == pytest.approx(2 * 200 / 4 + 1e-5 * 100 * 200)
    assert p4["runtime_s"] == pytest.approx(0.01 * 200 + 0.004 * 200)
    with pytest.raises(DataError, match="measured at batch sizes 1..4, not at 8"):
        fm.predict("m", "g", [100], [200], batch_size=8)
    with pytest.raises(DataError, match="measured at batch sizes 1..1, not at 2"):
        fm.predict_matrix([("s", "c")], np.array([10]), np.array([10]), [2])
    fm.save(tmp_path)
    back = FittedModels.load(tmp_path)
    assert back.get("m", "g")["energy_j"].batch_size_range == (1, 4)
    doc = json.loads((tmp_path / "s__c.json").read_text())
    for target in ("energy_j", "runtime_s"):
        doc["targets"][target].pop("batch_size_range", None) if "targets" in doc else doc[target].pop("batch_size_range")
    (tmp_path / "s__c.json").write_text(json.dumps(doc))
    assert FittedModels.load(tmp_path).get("s", "c")["energy_j"].batch_size_range == (1, 1)  # older files: batch 1


def test_a_fleet_asking_for_an_unmeasured_batch_size_is_refused():
    with pytest.raises(DataError, match="measured at batch sizes 1..4, not at 8"):
        build_problem(_workload(3), _fleet(batch_sizes=(1, 8)), _models())


# --- the problem ----------------------------------------------------------------------------------


def test_the_kv_cache_rules_long_queries_out_of_wide_batches():
    # 3.2 GB − 2.4 GB of weights leaves 8e8 bytes: 2 lanes × 1e5 bytes/token hold 4000 tokens each
    fl = _fleet(batch_sizes=(1, 2), kv=1e5, memory_gb=3.2)
    wl = pd.DataFrame({"query_id": ["short", "long"], "input_tokens": [100, 4000], "output_tokens": [100, 100],
                       "min_accuracy": [0.5, 0.5], "deadline_s": [np.nan, np.nan]})
    p = build_problem(wl, fl, _models())
    b = p.deployments["batch_size"].to_numpy()
    m = (p.deployments["llm"] == "m").to_numpy()
    assert p.ok[0, m].tolist() == [True, True]
    assert p.ok[1, m & (b == 1)].tolist() == [True] and p.ok[1, m & (b == 2)].tolist() == [False]


# --- every method on lanes, against brute force ------------------------------------------------------


def _brute_force_over_lanes(problem) -> float:
    """The least objective over every placement of every query on a lane of an instance of an
    option (instances per deployment up to max_instances, the group's max_instances and the pool's
    devices respected, each lane EDF-feasible); inf if none."""
    deps = problem.deployments
    lanes = deps["lanes"].to_numpy()
    places = [(d, i, ln) for d in range(len(deps)) for i in range(int(deps["max_instances"].iloc[d]))
              for ln in range(int(lanes[d]))]
    due = problem.queries["deadline_eff_s"].to_numpy()
    count = dict(zip(problem.pools["pool"], problem.pools["count"], strict=True))
    best = np.inf
    per_query = [[k for k, (d, _, _) in enumerate(places) if problem.ok[q, d]] for q in range(problem.n_queries)]
    for combo in itertools.product(*per_query):
        on = {(places[k][0], places[k][1]) for k in combo}
        devices: dict[str, int] = {}
        groups: dict[int, int] = {}
        for d, _ in on:
            pool = deps["device"].iloc[d]
            devices[pool] = devices.get(pool, 0) + int(deps["devices_per_instance"].iloc[d])
            g = int(deps["group"].iloc[d])
            groups[g] = groups.get(g, 0) + 1
        if any(n > count[p] for p, n in devices.items()):
            continue
        if any(n > int(deps["max_instances"][deps["group"] == g].iloc[0]) for g, n in groups.items()):
            continue
        ok = True
        for place in set(combo):
            qs = [q for q, k in enumerate(combo) if k == place]
            d = places[place][0]
            if not edf_feasible(problem.runtime_s[qs, d], due[qs]):
                ok = False
                break
        if not ok:
            continue
        cost = sum(problem.cost[q, places[k][0]] for q, k in enumerate(combo))
        cost += sum(problem.instance_cost[d] for d, _ in on)
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("idle", [False, True])
def test_every_method_on_lanes_is_checked_and_bounded_by_brute_force(seed, idle):
    rng = np.random.default_rng(seed)
    wl = _workload(4, seed=seed)
    wl["deadline_s"] = np.where(rng.random(4) < 0.5, rng.uniform(5, 12, 4), np.nan)
    fl = _fleet(batch_sizes=(1, 2), count=2, horizon_s=14.0, max_instances=1)
    fm = _models()
    problem = build_problem(wl, fl, fm, idle=idle)
    best = _brute_force_over_lanes(problem)
    for method in ("exact", "aggregate", "decompose"):
        s = plan(wl, fl, fm, idle=idle, formulation=method, mip_rel_gap=0.0)
        if not np.isfinite(best):
            assert s.status in (Status.INFEASIBLE, Status.NO_SOLUTION), (method, s.status)
            continue
        assert s.bound <= best * (1 + 1e-7) + 1e-7, (method, s.bound, best)
        if s.status.has_plan:
            assert check_plan(s.assignment, wl, fl, fm) == []
            assert s.objective >= best * (1 - 1e-7) - 1e-7
            assert (s.assignment["lane"] < s.assignment["batch_size"]).all()
        if method == "exact":
            assert s.status is Status.OPTIMAL and s.objective == pytest.approx(best, rel=1e-7, abs=1e-7)


def test_batching_is_chosen_where_it_saves_energy_and_queries_share_an_instance():
    wl = _workload(12, seed=3)
    fl = _fleet(batch_sizes=(1, 2, 4), count=1, horizon_s=1000.0)
    s = plan(wl, fl, _models(), formulation="aggregate")
    a = s.assignment
    assert s.status.has_plan and check_plan(a, wl, fl, _models()) == []
    on_m = a[a["llm"] == "m"]
    assert set(on_m["batch_size"]) == {4} and on_m["instance"].nunique() == 1  # one GPU, the cheapest batch size
    # its lanes run at the same time: some queries overlap in time on different lanes
    assert on_m["lane"].nunique() == 4
    starts = on_m.groupby("lane")["start_s"].min()
    assert (starts == 0).all()


def test_the_checker_refuses_what_lanes_forbid():
    wl = _workload(6, seed=1)
    fl = _fleet(batch_sizes=(1, 2), count=1, horizon_s=1000.0)
    fm = _models()
    s = plan(wl, fl, fm, formulation="aggregate")
    a = s.assignment.copy()
    on_m = a.index[a["llm"] == "m"]
    assert len(on_m) >= 2
    # an instance at a batch size the deployment does not list (and its models do not cover)
    b = a.copy()
    b.loc[on_m, "batch_size"] = 8
    out = check_plan(b, wl, fl, fm)
    assert any("batch size 8 is not one of its batch sizes [1, 2]" in v for v in out)
    assert any("at a batch size its models were not measured at" in v for v in out)
    # two batch sizes on one instance
    c = a.copy()
    c.loc[on_m[0], "batch_size"] = 1 if c.loc[on_m[0], "batch_size"] == 2 else 2
    assert any("run at more than one batch size" in v for v in check_plan(c, wl, fl, fm))
    # two queries on one lane at the same time
    d = a.copy()
    d.loc[on_m[:2], "lane"] = 0
    d.loc[on_m[:2], "start_s"] = 0.0
    d.loc[on_m[:2], "end_s"] = d.loc[on_m[:2], "runtime_s"]
    assert any("overlap another on the same lane" in v for v in check_plan(d, wl, fl, fm))


def test_a_query_without_kv_room_anywhere_is_unservable_with_its_reason():
    fl = _fleet(batch_sizes=(2,), kv=1e5, memory_gb=3.2)  # lanes hold 4000 tokens of context each
    wl = pd.DataFrame({"query_id": ["long"], "input_tokens": [4000], "output_tokens": [100], "min_accuracy": [0.5],
                       "deadline_s": [np.nan]})
    p = build_problem(wl, fl, _models())
    assert p.unservable["reason"].tolist() == [
        "4100 tokens do not fit the KV cache that the lanes of every accurate-enough deployment leave room for "
        "at its batch sizes"]


def test_explain_on_a_batched_plan_names_lanes_and_batch_sizes(tmp_path):
    from energyopt.explain import explain_plan_dir

    wl = _workload(8, seed=2)
    fl, fm = _fleet(batch_sizes=(1, 4), count=1, horizon_s=1000.0), _models()
    s = plan(wl, fl, fm, formulation="aggregate")
    s.write(tmp_path)
    a = s.assignment
    qid = str(a.loc[a["llm"] == "m", "query_id"].iloc[0])
    ex = explain_plan_dir(tmp_path, qid, workload=wl, fleet=fl, models=fm)
    assert ex.query["batch_size"] == 4 and 0 <= ex.query["lane"] < 4
    opts = ex.options.set_index(["llm", "batch_size"])
    assert opts.loc[("m", 4), "verdict"] == "chosen"
    # its instance runs at batch size 4: batch size 1 needs an instance of its own, and the one GPU is taken
    assert "run at batch size 4, not 1" in opts.loc[("m", 1), "reasons"]


def test_idle_counted_charges_a_query_its_share_of_the_instances_idle_power():
    # the model gives a query's share of its batch's energy: with idle counted, it is charged that
    # share less its share of the instance's idle draw, P_idle · t / b (not the whole P_idle · t)
    wl = _workload(3, seed=4)
    p = build_problem(wl, _fleet(batch_sizes=(1, 4)), _models(), idle=True)
    deps = p.deployments
    for d in np.flatnonzero((deps["llm"] == "m").to_numpy()):
        b = int(deps["batch_size"].iloc[d])
        expect = np.maximum(p.energy_j[:, d] - 50.0 * p.runtime_s[:, d] / b, 0.0)
        assert np.allclose(p.cost[:, d], expect) and (expect > 0).all()
        assert np.allclose(p.pair_cost(np.arange(3), np.full(3, d)), expect)
    s = plan(wl, _fleet(batch_sizes=(1, 4)), _models(), idle=True)
    assert s.status.has_plan and s.check_violations == []


def test_explain_with_a_mean_accuracy_floor_and_a_kv_ruling_on_several_batch_sizes(tmp_path):
    from energyopt.explain import explain_plan_dir

    wl = pd.DataFrame({"query_id": ["short", "long"], "input_tokens": [100, 4000], "output_tokens": [100, 100],
                       "min_accuracy": [0.0, 0.0], "deadline_s": [np.nan, np.nan]})
    fl, fm = _fleet(batch_sizes=(1, 2), kv=1e5, memory_gb=3.2, horizon_s=1000.0), _models()
    s = plan(wl, fl, fm, min_mean_accuracy=0.5)
    s.write(tmp_path)
    ex = explain_plan_dir(tmp_path, "long", workload=wl, fleet=fl, models=fm)
    opts = ex.options.set_index(["llm", "batch_size"])
    assert "memory: the KV cache of 2 lanes holds 4000 tokens of context each" in opts.loc[("m", 2), "reasons"]


def test_the_diagnosis_counts_lanes():
    from energyopt.diagnose import explain_infeasible

    # 84 s of work due by 60 s fits one instance of 4 lanes (240 lane-seconds): no capacity reason,
    # only the unreachable floor
    wl = pd.DataFrame({"query_id": [f"q{i}" for i in range(6)], "input_tokens": [100] * 6,
                       "output_tokens": [1000] * 6, "min_accuracy": [0.5] * 6, "deadline_s": [60.0] * 6})
    fl = _fleet(batch_sizes=(4,), horizon_s=60.0)
    p = build_problem(wl, fl, _models(), min_mean_accuracy=0.9)
    reasons = explain_infeasible(p)
    assert len(reasons) == 1 and reasons[0].startswith("token-weighted mean accuracy can reach at most 0.6000")


def test_the_checker_refuses_fractional_lanes_and_instances():
    wl = _workload(4, seed=1)
    fl, fm = _fleet(batch_sizes=(2,), count=1, horizon_s=1000.0), _models()
    a = plan(wl, fl, fm, formulation="aggregate").assignment.copy()
    on_m = a.index[a["llm"] == "m"]
    half = a.copy()
    half["lane"] = half["lane"].astype(float)
    half.loc[on_m, "lane"] += 0.5
    assert any("on a lane outside 0..batch size - 1" in v for v in check_plan(half, wl, fl, fm))
    quarter = a.copy()
    quarter["instance"] = quarter["instance"].astype(float)
    quarter.loc[on_m[0], "instance"] = 0.25
    assert any("instance numbers -1..0 outside" in v for v in check_plan(quarter, wl, fl, fm))


def test_a_routing_rule_runs_a_query_at_the_largest_batch_size_whose_kv_holds_it():
    from energyopt.methods.baselines import baseline_routing

    wl = pd.DataFrame({"query_id": ["short", "long"], "input_tokens": [100, 4000], "output_tokens": [100, 100],
                       "min_accuracy": [0.0, 0.0], "deadline_s": [np.nan, np.nan]})
    p = build_problem(wl, _fleet(batch_sizes=(1, 2), kv=1e5, memory_gb=3.2), _models())
    route = baseline_routing(p, "only:m")
    assert p.deployments["batch_size"].to_numpy()[route].tolist() == [2, 1]  # the long one does not fit 2 lanes
