"""explain: every verdict is re-derived — a move it allows passes the independent checker and changes
the energy by what it says; a move it forbids breaks a constraint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import lognormal_workload, make_models, random_instance
from energyopt.check import check_plan
from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.explain import explain
from energyopt.fleet import fleet_from_dict
from energyopt.plan import plan


def _move(a: pd.DataFrame, problem, qid: str, llm: str, dev: str, where: str) -> pd.DataFrame:
    """The assignment with ``qid`` moved to (llm, dev) as explain proposes, its new instance in EDF order."""
    deps = problem.deployments
    j = int(np.flatnonzero((deps["llm"] == llm).to_numpy() & (deps["device"] == dev).to_numpy())[0])
    i = int(np.flatnonzero(problem.queries["query_id"].astype(str).to_numpy() == qid)[0])
    rest = a[a["query_id"] != qid]
    if where == "a new instance":
        used = rest.loc[(rest["llm"] == llm) & (rest["device"] == dev), "instance"]
        k = int(used.max()) + 1 if len(used) else 0
    else:
        k = int(where.split()[-1])
    on = rest[(rest["llm"] == llm) & (rest["device"] == dev) & (rest["instance"] == k)]
    row = a[a["query_id"] == qid].iloc[0].copy()
    row["llm"], row["device"], row["instance"] = llm, dev, k
    row["runtime_s"], row["energy_j"] = problem.runtime_s[i, j], problem.energy_j[i, j]
    row["accuracy"] = deps["accuracy"].iloc[j]
    q = pd.concat([on, row.to_frame().T], ignore_index=True)
    due = np.where(q["deadline_s"].isna(), problem.horizon_s, q["deadline_s"].astype(float))
    q = q.iloc[np.argsort(due, kind="stable")].copy()
    q["end_s"] = np.cumsum(q["runtime_s"].astype(float).to_numpy())
    q["start_s"] = q["end_s"] - q["runtime_s"].astype(float)
    others = rest.drop(on.index)
    out = pd.concat([others, q], ignore_index=True)
    for c in ("instance",):
        out[c] = out[c].astype(int)
    for c in ("start_s", "end_s", "runtime_s", "energy_j", "accuracy", "deadline_s"):
        out[c] = out[c].astype(float)
    return out


@pytest.mark.parametrize("seed", range(60))
def test_verdicts_rederived_on_random_instances(seed):
    wl, fleet, models, kw = random_instance(seed, n_q=5)
    s = plan(wl, fleet, models, **kw)
    if not s.status.has_plan:
        return
    a = s.assignment
    floor = s.problem.min_mean_accuracy
    for qid in a["query_id"]:
        ex = explain(s.problem, a, qid)
        o = ex.options
        assert (o["verdict"] == "chosen").sum() == 1
        for r in o.itertuples():
            if r.verdict == "could move":
                moved = _move(a, s.problem, qid, r.llm, r.device, r.where)
                assert check_plan(moved, wl, fleet, models, min_mean_accuracy=floor) == [], (seed, qid, r)
                if not s.problem.idle:
                    assert moved["energy_j"].sum() - a["energy_j"].sum() == pytest.approx(r.delta_energy_j, abs=1e-6)
            elif r.verdict == "ruled out":
                assert r.reasons
                if r.reasons.startswith("capacity") and "each of its" in r.reasons:
                    # every existing instance would break something
                    rest = a[(a["llm"] == r.llm) & (a["device"] == r.device) & (a["query_id"] != qid)]
                    for k in rest["instance"].unique():
                        moved = _move(a, s.problem, qid, r.llm, r.device, f"instance {k}")
                        assert check_plan(moved, wl, fleet, models) != [], (seed, qid, r)


def _fleet(count_b: int = 1):
    pools = {"g": {"kind": "gpu", "count": 1, "memory_gb": 80, "idle_power_w": 0},
             "h": {"kind": "gpu", "count": count_b, "memory_gb": 80, "idle_power_w": 0}}
    llms = {"s": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1, "context_tokens": 1000},
            "b": {"accuracy": 0.7, "accuracy_source": "t", "params_b": 1}}
    deps = [{"llm": "s", "pool": "g"}, {"llm": "b", "pool": "g"}, {"llm": "b", "pool": "h"}]
    fleet = fleet_from_dict({"horizon_s": 100, "pools": pools, "llms": llms, "deployments": deps})
    models = make_models({("s", "g"): ((0, 0, 1, 0), (0, 0, 0.01, 0)),
                          ("b", "g"): ((0, 0, 5, 0), (0, 0, 0.05, 0)),
                          ("b", "h"): ((0, 0, 3, 0), (0, 0, 0.2, 0))})
    return fleet, models


def test_reasons_named():
    fleet, models = _fleet()
    wl = pd.DataFrame({"query_id": ["floor", "fast", "long"], "input_tokens": [10, 10, 1200],
                       "output_tokens": [100, 100, 50], "min_accuracy": [0.5, 0.0, 0.0],
                       "deadline_s": [np.nan, 10.0, np.nan]})
    s = plan(wl, fleet, models)
    a = s.assignment
    o = explain(s.problem, a, "floor").options.set_index(["llm", "device"])
    assert o.loc[("s", "g"), "verdict"] == "ruled out" and "accuracy: s scores 0.4" in o.loc[("s", "g"), "reasons"]
    assert o.loc[("b", "h"), "verdict"] == "chosen"  # 300 J, against 500 J for b on g (which shares g's one device)
    assert "capacity: no instance can be switched on" in o.loc[("b", "g"), "reasons"]
    o = explain(s.problem, a, "fast").options.set_index(["llm", "device"])
    assert o.loc[("s", "g"), "verdict"] == "chosen"
    assert "deadline: it takes 20 s alone, after its deadline of 10 s" in o.loc[("b", "h"), "reasons"]
    o = explain(s.problem, a, "long").options.set_index(["llm", "device"])
    assert "context: 1250 tokens exceed s's 1000" in o.loc[("s", "g"), "reasons"]
    assert o.loc[("b", "h"), "verdict"] == "chosen"
    with pytest.raises(DataError, match="'nope' is not in the plan's workload"):
        explain(s.problem, a, "nope")


def test_batch_accuracy_floor_rules_out_a_move():
    fleet, models = _fleet(count_b=2)
    wl = pd.DataFrame({"query_id": ["x", "y"], "input_tokens": [10, 10], "output_tokens": [100, 100],
                       "min_accuracy": [0.0, 0.0], "deadline_s": [np.nan, np.nan]})
    s = plan(wl, fleet, models, min_mean_accuracy=0.55)
    a = s.assignment
    assert sorted(a["llm"]) == ["b", "s"]
    on_b = a.loc[a["llm"] == "b", "query_id"].iloc[0]
    o = explain(s.problem, a, on_b).options.set_index(["llm", "device"])
    assert "mean accuracy: the batch's token-weighted accuracy would drop to 0.4000" in o.loc[("s", "g"), "reasons"]


def test_explain_cli(tmp_path, synthetic_models, synthetic_fleet):
    w = tmp_path / "w.csv"
    lognormal_workload(25, seed=7, deadline_fraction=0.3).to_csv(w, index=False)
    r = CliRunner().invoke(main, ["solve", str(w), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models),
                                  "--out", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "q3"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("query q3:") and "chosen" in r.output
    r = CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "q3", "--json"])
    d = json.loads(r.output)
    assert d["query"]["query_id"] == "q3" and len(d["options"]) == 4
    r = CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "zz"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "'zz' is not in the plan's workload" in r.output
    r = CliRunner().invoke(main, ["explain", str(tmp_path / "nothing"), "q3"])
    assert r.exit_code == 2 and "summary.json: not found" in r.output
    # a plan made from other inputs is detected, not explained wrongly
    lognormal_workload(25, seed=8).to_csv(w, index=False)
    r = CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "q3"])
    assert r.exit_code == 2 and "made from other inputs" in r.output
