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
from energyopt.explain import (
    batch_accuracy_floor,
    explain,
    explain_plan_dir,
    locate_query,
    move_energy_delta_j,
    notes_on,
    queues_without,
    rules_on_its_own,
    where_it_could_go,
)
from energyopt.fleet import fleet_from_dict
from energyopt.plan import plan
from energyopt.problem import build_problem


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


# --- the steps of explain, on a plan made by hand ---------------------------------------------------
#
# Pool g: 3 GPUs, 10 W idle each. LLM a (accuracy 0.4) on 1 device, c (0.5) and b (0.7) on 2 devices
# per instance (so one instance each at most). Models: E = 1, 2, 3 J per output token and
# R = 0.01, 0.02, 0.03 s per output token on a, c, b. Three queries of 10 + 100 tokens:
# x alone on a's instance 0 (1 s, 100 J); y then z on c's instance 0 (2 s, 200 J each). All 3
# devices are on.


def _steps_problem(*, idle: bool = False, min_mean_accuracy: float | None = None, x_deadline_s: float = np.nan):
    fleet = fleet_from_dict({
        "horizon_s": 100,
        "pools": {"g": {"kind": "gpu", "count": 3, "memory_gb": 80, "idle_power_w": 10}},
        "llms": {n: {"accuracy": acc, "accuracy_source": "t", "params_b": 1} for n, acc in (("a", 0.4), ("c", 0.5), ("b", 0.7))},
        "deployments": [{"llm": "a", "pool": "g"}, {"llm": "c", "pool": "g", "devices_per_instance": 2},
                        {"llm": "b", "pool": "g", "devices_per_instance": 2}],
    })
    models = make_models({("a", "g"): ((0, 0, 1, 0), (0, 0, 0.01, 0)), ("c", "g"): ((0, 0, 2, 0), (0, 0, 0.02, 0)),
                          ("b", "g"): ((0, 0, 3, 0), (0, 0, 0.03, 0))})
    wl = pd.DataFrame({"query_id": ["x", "y", "z"], "input_tokens": [10] * 3, "output_tokens": [100] * 3,
                       "min_accuracy": [0.0] * 3, "deadline_s": [x_deadline_s, np.nan, np.nan]})
    problem = build_problem(wl, fleet, models, idle=idle, min_mean_accuracy=min_mean_accuracy)
    plan_table = pd.DataFrame({
        "query_id": ["x", "y", "z"], "llm": ["a", "c", "c"], "device": ["g", "g", "g"],
        "instance": [0, 0, 0], "lane": [0, 0, 0], "batch_size": [1, 1, 1],
        "start_s": [0.0, 0.0, 2.0], "end_s": [1.0, 2.0, 4.0], "runtime_s": [1.0, 2.0, 2.0],
        "energy_j": [100.0, 200.0, 200.0], "accuracy": [0.4, 0.5, 0.5], "deadline_s": [x_deadline_s, np.nan, np.nan]})
    assert check_plan(plan_table, wl, fleet, models, min_mean_accuracy=min_mean_accuracy) == []
    return problem, plan_table, (wl, fleet, models)


def test_locate_query():
    problem, a, _ = _steps_problem()
    x = locate_query(problem, a, "x")
    assert (x.query_id, x.index, x.deployment, x.queries_on_its_instance, x.alone) == ("x", 0, 0, 1, True)
    y = locate_query(problem, a, "y")
    assert (y.index, y.deployment, y.queries_on_its_instance, y.alone) == (1, 1, 2, False)
    with pytest.raises(DataError, match="'w' is not in the plan's workload"):
        locate_query(problem, a, "w")
    with pytest.raises(DataError, match="'z' is in the workload but not in assignment.csv"):
        locate_query(problem, a[a["query_id"] != "z"], "z")
    with pytest.raises(DataError, match="'y' is on b/h at batch size 1, which the fleet does not deploy"):
        locate_query(problem, a.replace({"device": {"g": "h"}}).assign(llm=["a", "b", "c"]), "y")
    with pytest.raises(DataError, match="'y' has energy_j 201 but the models predict 200 J on c/g"):
        locate_query(problem, a.assign(energy_j=[100.0, 201.0, 200.0]), "y")


def test_queues_without():
    problem, a, _ = _steps_problem()
    qx = queues_without(problem, a, "x")  # x ran alone: its instance is off without it
    # queues per lane: (llm, device, instance, lane)
    assert list(qx.runtime_s) == [("c", "g", 0, 0)] and qx.runtime_s[("c", "g", 0, 0)].tolist() == [2.0, 2.0]
    assert qx.due_s[("c", "g", 0, 0)].tolist() == [100.0, 100.0]  # no deadline: the horizon
    assert qx.instances_of == {("c", "g"): [0]} and qx.devices_on == {"g": 2}
    assert qx.batch_size_of == {("c", "g", 0): 1}
    qy = queues_without(problem, a, "y")
    assert qy.runtime_s[("c", "g", 0, 0)].tolist() == [2.0] and qy.runtime_s[("a", "g", 0, 0)].tolist() == [1.0]
    assert qy.devices_on == {"g": 3}


def test_rules_on_its_own():
    fleet, models = _fleet()
    wl = pd.DataFrame({"query_id": ["floor", "fast", "long"], "input_tokens": [10, 10, 1200],
                       "output_tokens": [100, 100, 50], "min_accuracy": [0.5, 0.0, 0.0],
                       "deadline_s": [np.nan, 10.0, np.nan]})
    s = plan(wl, fleet, models)
    deps = list(zip(s.problem.deployments["llm"], s.problem.deployments["device"], strict=True))
    s_g, b_g, b_h = deps.index(("s", "g")), deps.index(("b", "g")), deps.index(("b", "h"))

    def rules(qid, j):
        return rules_on_its_own(s.problem, locate_query(s.problem, s.assignment, qid), j)

    assert rules("floor", s_g) == ["accuracy: s scores 0.4, below the query's floor 0.5"]
    assert rules("floor", b_g) == [] and rules("floor", b_h) == []
    assert rules("fast", b_h) == ["deadline: it takes 20 s alone, after its deadline of 10 s"]
    assert rules("long", s_g) == ["context: 1250 tokens exceed s's 1000"]
    assert rules("long", b_h) == []


def test_where_it_could_go():
    problem, a, inputs = _steps_problem()
    x = locate_query(problem, a, "x")
    queues = queues_without(problem, a, "x")
    assert where_it_could_go(problem, x, queues, 1) == ("instance 0", [])  # c: 2 + 2 + 2 s, all by 100 s
    # b needs 2 devices: c's instance holds 2 of 3 and x's own instance is off without it, so 1 is free
    # (the devices of x's instance count once; counted twice, a new instance looked possible)
    assert where_it_could_go(problem, x, queues, 2) == (
        "", ["capacity: no instance can be switched on (1 free device(s) in pool g, 2 needed)"])
    moved = a.copy()
    moved.loc[0, ["llm", "runtime_s", "end_s", "energy_j", "accuracy"]] = ["b", 3.0, 3.0, 300.0, 0.7]
    assert check_plan(moved, *inputs) == ["pool g: 4 devices switched on, only 3 exist"]
    y = locate_query(problem, a, "y")
    assert where_it_could_go(problem, y, queues_without(problem, a, "y"), 0) == ("instance 0", [])
    assert where_it_could_go(problem, y, queues_without(problem, a, "y"), 2) == (
        "", ["capacity: no instance can be switched on (0 free device(s) in pool g, 2 needed)"])
    # x due at 3 s: last on c's instance it would end at 6 s, but in EDF order it goes first (y and z
    # are due at the horizon) and ends at 2 s
    problem, a, _ = _steps_problem(x_deadline_s=3.0)
    x = locate_query(problem, a, "x")
    assert where_it_could_go(problem, x, queues_without(problem, a, "x"), 1) == ("instance 0", [])


def test_where_it_could_go_when_every_instance_would_be_late():
    problem, a, _ = _steps_problem()
    # y and z due at 2 and 4 s on c's instance, which is then full until 4 s; x due at 3 s
    problem.queries["deadline_s"] = [3.0, 2.0, 4.0]
    problem.queries["deadline_eff_s"] = [3.0, 2.0, 4.0]
    a["deadline_s"] = [3.0, 2.0, 4.0]
    x = locate_query(problem, a, "x")
    assert where_it_could_go(problem, x, queues_without(problem, a, "x"), 1) == (
        "", ["capacity: each of its 1 instance(s) would then miss a deadline or the horizon (the least late would "
             "end at 6 s), and no more can be switched on"])


def test_batch_accuracy_floor():
    problem, a, _ = _steps_problem(min_mean_accuracy=0.45)  # now (0.4 + 0.5 + 0.5) / 3
    y = locate_query(problem, a, "y")
    assert batch_accuracy_floor(problem, a, y, 0) == [
        "mean accuracy: the batch's token-weighted accuracy would drop to 0.4333, below its floor 0.4500"]
    assert batch_accuracy_floor(problem, a, y, 2) == []
    assert batch_accuracy_floor(problem, a, locate_query(problem, a, "x"), 1) == []
    problem, a, _ = _steps_problem()
    assert batch_accuracy_floor(problem, a, locate_query(problem, a, "y"), 0) == []  # no floor


def test_move_energy_delta_j():
    problem, a, _ = _steps_problem()
    x, y = locate_query(problem, a, "x"), locate_query(problem, a, "y")
    assert move_energy_delta_j(problem, x, 1, new_instance=False) == pytest.approx(200 - 100)
    assert move_energy_delta_j(problem, y, 0, new_instance=False) == pytest.approx(100 - 200)
    problem, a, _ = _steps_problem(idle=True)
    x, y = locate_query(problem, a, "x"), locate_query(problem, a, "y")
    # above idle: x on a 100 - 10·1 = 90, on c 200 - 20·2 = 160, on b 300 - 20·3 = 240; x's instance of
    # a (10 W) goes off when it leaves: 10 W × 100 s saved; a new instance of b would cost 20 W × 100 s
    assert move_energy_delta_j(problem, x, 1, new_instance=False) == pytest.approx(160 - 90 - 1000)
    assert move_energy_delta_j(problem, x, 2, new_instance=True) == pytest.approx(240 - 90 - 1000 + 2000)
    assert move_energy_delta_j(problem, y, 0, new_instance=False) == pytest.approx(90 - 160)


def test_explain_on_the_hand_made_plan_and_its_notes():
    problem, a, _ = _steps_problem(idle=True)
    ex = explain(problem, a, "x")
    o = ex.options.set_index("llm")
    assert o["verdict"].to_dict() == {"a": "chosen", "c": "could move", "b": "ruled out"}
    assert o.loc["c", "where"] == "instance 0" and o.loc["c", "delta_energy_j"] == pytest.approx(-930)
    assert o.loc["b", "delta_energy_j"] == pytest.approx(240 - 90 - 1000)  # what the capacity rule costs
    assert ex.notes == ["moving it to c/g (instance 0) would save 930 J: the plan is optimal only within its proven "
                        "gap, or other queries' moves made room"]
    assert ex.query["queries_on_its_instance"] == 1 and ex.query["instance"] == 0
    problem, a, _ = _steps_problem()
    assert explain(problem, a, "x").notes == [
        "its cheapest alternative is c/g (instance 0): moving it there would cost 100 J more"]
    assert notes_on(problem, pd.DataFrame({"verdict": ["chosen", "ruled out"], "delta_energy_j": [np.nan, 5.0]})) == [
        "no other option can take it without breaking a constraint: the plan must keep it where it is"]


# --- a damaged plan is refused ----------------------------------------------------------------------


@pytest.fixture()
def solved_dir(tmp_path, synthetic_models, synthetic_fleet):
    w = tmp_path / "w.csv"
    lognormal_workload(25, seed=7, deadline_fraction=0.3).to_csv(w, index=False)
    r = CliRunner().invoke(main, ["solve", str(w), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models),
                                  "--out", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "q3"]).exit_code == 0
    return tmp_path / "p", w


def _refused(plan_dir, *words: str) -> str:
    r = CliRunner().invoke(main, ["explain", str(plan_dir), "q3"])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "assignment.csv" in r.output and all(w in r.output for w in words), r.output
    return r.output


def test_a_deleted_row_is_refused(solved_dir):
    plan_dir, _ = solved_dir
    asg = plan_dir / "assignment.csv"
    lines = asg.read_text().splitlines(keepends=True)
    gone = next(ln for ln in lines[1:] if ln.startswith('"q10"'))
    asg.write_text("".join(ln for ln in lines if ln is not gone))
    _refused(plan_dir, "query 'q10' of the workload is missing")


def test_a_truncated_file_is_refused(solved_dir):
    plan_dir, _ = solved_dir
    asg = plan_dir / "assignment.csv"
    text = asg.read_text()
    asg.write_text(text[: len(text) // 2])
    _refused(plan_dir)
    # cut inside the last row, after its energy (the 10th column): the row is there, its accuracy is not
    lines = text.splitlines(keepends=True)
    last = lines[-1]
    asg.write_text("".join(lines[:-1]) + ",".join(last.split(",")[:10]) + "\n")
    _refused(plan_dir, f"query {last.split(',')[0].strip(chr(34))!r} has no number in column accuracy")


def test_a_duplicated_row_is_refused(solved_dir):
    plan_dir, _ = solved_dir
    asg = plan_dir / "assignment.csv"
    lines = asg.read_text().splitlines(keepends=True)
    asg.write_text("".join(lines + [lines[5]]))
    _refused(plan_dir, f"query {lines[5].split(',')[0].strip(chr(34))!r} is listed more than once")


def test_a_workload_edited_after_planning_is_refused(solved_dir):
    plan_dir, w = solved_dir
    original = pd.read_csv(w, dtype={"query_id": str})
    edited = original.copy()
    edited.loc[edited["query_id"] == "q12", "output_tokens"] += 7
    edited.to_csv(w, index=False)
    _refused(plan_dir, "query 'q12' has energy_j", "the plan was made from other inputs")
    edited = original.copy()
    row = int(np.flatnonzero(edited["deadline_s"].notna())[0])
    edited.loc[row, "deadline_s"] += 1
    edited.to_csv(w, index=False)
    _refused(plan_dir, f"query {edited.loc[row, 'query_id']!r} has deadline_s", "but the workload says")
    original[original["query_id"] != "q20"].to_csv(w, index=False)
    _refused(plan_dir, "query 'q20' is not in the workload")
    pd.concat([original, original.iloc[[0]].assign(query_id="q99")]).to_csv(w, index=False)
    _refused(plan_dir, "query 'q99' of the workload is missing")
    original.to_csv(w, index=False)
    assert CliRunner().invoke(main, ["explain", str(plan_dir), "q3"]).exit_code == 0


def test_an_input_edited_where_no_row_shows_it_is_refused(tmp_path, synthetic_models, synthetic_fleet):
    """A raised accuracy floor, an LLM's accuracy in the fleet or a model file's figures change no
    row of the plan, yet the explanation would rest on them: the files' SHA-256 in summary.json
    tell, and the bytes as planned explain again."""
    import shutil

    w, fleet, models = tmp_path / "w.csv", tmp_path / "fleet.toml", tmp_path / "models"
    lognormal_workload(25, seed=7, deadline_fraction=0.3).to_csv(w, index=False)
    shutil.copy(synthetic_fleet, fleet)
    shutil.copytree(synthetic_models, models)
    r = CliRunner().invoke(main, ["solve", str(w), "--fleet", str(fleet), "--models", str(models), "--out",
                                  str(tmp_path / "p"), "-q"])
    assert r.exit_code == 0, r.output

    def refused(*words: str) -> None:
        r = CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "q3"])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and all(x in r.output for x in words), r.output

    planned = {f: f.read_bytes() for f in (w, fleet, *models.glob("*.json"))}
    lines = w.read_text().splitlines(keepends=True)
    head, row = lines[0].strip().split(","), lines[4].rstrip("\n").split(",")
    row[head.index("min_accuracy")] = "0.01"  # q3: a floor every LLM meets, so no row differs
    w.write_text("".join(lines[:4] + [",".join(row) + "\n"] + lines[5:]))
    refused(f"{w}: SHA-256", "differs from the workload the plan was made from", "input_sha256.workload")
    w.write_bytes(planned[w])
    fleet.write_text(fleet.read_text().replace("accuracy = 0.6\n", "accuracy = 0.61\n", 1))
    refused(f"{fleet}: SHA-256", "differs from the fleet the plan was made from")
    fleet.write_bytes(planned[fleet])
    first = sorted(models.glob("*.json"))[0]
    doc = json.loads(first.read_text())
    doc["energy_j"]["r2"] = 0.5  # a figure no prediction uses
    first.write_text(json.dumps(doc))
    refused(f"{first}: SHA-256", "differs from the model file the plan was made from")
    first.write_bytes(planned[first])
    assert CliRunner().invoke(main, ["explain", str(tmp_path / "p"), "q3"]).exit_code == 0


def test_a_workload_listing_a_query_twice_is_refused(solved_dir):
    plan_dir, w = solved_dir
    wl = pd.read_csv(w, dtype={"query_id": str})
    with pytest.raises(DataError, match="row 25, column query_id: expected unique query ids \\(given twice\\), got 'q0'"):
        explain_plan_dir(plan_dir, "q3", workload=pd.concat([wl, wl.iloc[[0]]], ignore_index=True))
    assert explain_plan_dir(plan_dir, "q3", workload=wl).query["query_id"] == "q3"
