"""schedule.py: the assignment table of a timeline, a schedule's energy totals, gap and summary,
and what it writes.

The case (conftest.two_llm_fleet, idle 50 W per GPU over a 100 s horizon): q0 and q1 (100 output
tokens) on big@g's instance 1, q2 (300 tokens) on small@g's instance 0. big@g runs q1 (due 5 s)
0–2 s, then q0 2–4 s; small@g runs q2 0–3 s. Each query's predicted energy is 300 J."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import (
    TWO_LLM_MODELS,
    inside_outside_workload,
    make_models,
    ranged_two_llm_models,
    two_llm_fleet,
    with_measured_ranges,
    workload_of,
)

from energyopt.accounting import J_PER_KWH
from energyopt.packing import Timeline
from energyopt.problem import build_problem
from energyopt.schedule import Schedule, assignment_table, empty_assignment
from energyopt.schema import ASSIGNMENT_COLUMNS, BoundSource, Status, Termination

SMALL_G, BIG_G = 0, 1
WL = workload_of([(10, 100, 0.0, None), (10, 100, 0.0, 5.0), (10, 300, 0.3, None)])
TL = Timeline(np.array([BIG_G, BIG_G, SMALL_G]), np.array([1, 1, 0]))


def problem(idle: bool):
    return build_problem(WL, two_llm_fleet(), make_models(TWO_LLM_MODELS), idle=idle)


def schedule(idle: bool, *, objective=10550.0, bound=10500.0, assignment=None) -> Schedule:
    p = problem(idle)
    a = assignment_table(p, TL) if assignment is None else assignment
    return Schedule(a, p, Status.FEASIBLE, "highs", objective, bound, BoundSource.MIP, "aggregate",
                    {"total_s": 0.5}, termination=Termination.FEASIBLE)


def test_assignment_table_runs_each_instance_in_edf_order():
    a = assignment_table(problem(False), TL).set_index("query_id")
    assert a.loc[["q0", "q1", "q2"], "start_s"].tolist() == pytest.approx([2.0, 0.0, 0.0])
    assert a.loc[["q0", "q1", "q2"], "end_s"].tolist() == pytest.approx([4.0, 2.0, 3.0])
    assert a.loc[["q0", "q1", "q2"], "runtime_s"].tolist() == pytest.approx([2.0, 2.0, 3.0])


def test_assignment_table_numbers_the_instances_with_work_from_zero():
    a = assignment_table(problem(False), TL)
    assert a["instance"].tolist() == [0, 0, 0]  # big@g's instance 1 is its only one with work


def test_assignment_table_has_the_contracts_columns_and_raw_values():
    a = assignment_table(problem(True), TL)
    assert list(a.columns) == list(ASSIGNMENT_COLUMNS)
    assert a["llm"].tolist() == ["big", "big", "small"] and a["device"].tolist() == ["g", "g", "g"]
    assert a["energy_j"].tolist() == [300.0, 300.0, 300.0]  # the prediction, not the energy above idle
    assert a["accuracy"].tolist() == [0.8, 0.8, 0.4]
    assert a["deadline_s"].isna().tolist() == [True, False, True]  # the workload's deadline, NaN kept


def test_assignment_table_leaves_out_queries_without_a_place():
    tl = Timeline(np.array([BIG_G, -1, SMALL_G]), np.array([0, -1, -1]), unplaced=[2])
    assert assignment_table(problem(False), tl)["query_id"].tolist() == ["q0"]


def test_energy_totals_without_idle_are_the_predicted_energy():
    assert schedule(False).energy_totals() == {"query_energy_j": 900.0, "idle_energy_j": 0.0, "total_energy_j": 900.0}


def test_energy_totals_with_idle_are_above_idle_plus_each_switched_on_instance():
    e = schedule(True).energy_totals()
    # above idle: 300 − 50·2 twice, 300 − 50·3; two instances on: 2 × 50 W × 100 s
    assert e == pytest.approx({"query_energy_j": 550.0, "idle_energy_j": 10_000.0, "total_energy_j": 10_550.0})


def test_energy_totals_of_an_empty_plan_are_zero():
    s = schedule(True, assignment=empty_assignment())
    assert s.energy_totals() == {"query_energy_j": 0.0, "idle_energy_j": 0.0, "total_energy_j": 0.0}


def test_gap_is_the_relative_gap_of_objective_and_bound():
    assert schedule(True).gap == pytest.approx(50.0 / 10550.0)
    assert schedule(True, objective=math.nan, bound=math.inf).gap == math.inf


def test_summary_counts_deadlines_floors_and_accuracy():
    s = schedule(True).summary()
    assert s.status is Status.FEASIBLE and s.termination is Termination.FEASIBLE
    assert s.bound_source is BoundSource.MIP and s.formulation == "aggregate" and s.solver == "highs"
    assert (s.queries, s.assigned, s.queries_with_deadline, s.deadlines_met, s.accuracy_floors_met) == (3, 3, 1, 1, 3)
    assert s.makespan_s == pytest.approx(4.0) and s.horizon_s == 100.0
    assert s.mean_accuracy == pytest.approx(2.0 / 3.0)
    assert s.token_weighted_mean_accuracy == pytest.approx((110 * 0.8 * 2 + 310 * 0.4) / 530)
    assert s.total_energy_j == pytest.approx(10_550.0) and s.total_energy_kwh == pytest.approx(10_550.0 / J_PER_KWH)
    assert s.idle_counted and s.objective == "energy" and s.zeta is None
    assert s.check == {"ok": True, "violations": []}


def test_summary_counts_a_missed_floor_and_a_missed_deadline():
    # the table edited by hand: q1 (due 5 s) ends at 6 s, q2 (floor 0.3) at accuracy 0.2
    a = assignment_table(problem(False), TL)
    a.loc[a["query_id"] == "q1", ["start_s", "end_s"]] = [4.0, 6.0]
    a.loc[a["query_id"] == "q2", "accuracy"] = 0.2
    s = dataclasses.replace(schedule(False), assignment=a).summary()
    assert s.deadlines_met == 0 and s.accuracy_floors_met == 2 and s.makespan_s == pytest.approx(6.0)


def test_summary_by_llm_device_adds_up_each_pair():
    s = schedule(False).summary()
    assert s.by_llm_device == [
        {"llm": "big", "device": "g", "queries": 2, "energy_j": 600.0, "instances": 1, "busy_s": pytest.approx(4.0),
         "batch_sizes": [1], "extrapolated_queries": 0, "extrapolated_energy_j": 0.0},
        {"llm": "small", "device": "g", "queries": 1, "energy_j": 300.0, "instances": 1, "busy_s": pytest.approx(3.0),
         "batch_sizes": [1], "extrapolated_queries": 0, "extrapolated_energy_j": 0.0},
    ]


def test_summary_of_a_schedule_without_a_plan():
    p = problem(False)
    s = Schedule(empty_assignment(), p, Status.INFEASIBLE, "highs", math.nan, math.inf, BoundSource.NONE, "exact",
                 {}, message="why", termination=Termination.INFEASIBLE).summary()
    # no plan: no energy (None, not 0), the workload's deadlines still counted, nothing checked
    assert s.status is Status.INFEASIBLE and s.assigned == 0 and s.total_energy_j is None
    assert s.query_energy_j is None and s.idle_energy_j is None and s.total_energy_kwh is None
    assert s.mean_accuracy is None and s.token_weighted_mean_accuracy is None and s.makespan_s == 0.0
    assert s.deadlines_met == 0 and s.queries_with_deadline == 1 and s.by_llm_device == [] and s.message == "why"
    assert s.check["ok"] is None and s.check["checked"] is False


def test_schedule_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule(False).status = Status.OPTIMAL  # type: ignore[misc]


def test_inputs_built_in_memory_have_no_paths():
    assert schedule(False).inputs() == {"workload": None, "fleet": None, "models": None}


def test_write_puts_the_assignment_and_the_summary_on_disk(tmp_path):
    s = schedule(True)
    paths = s.write(tmp_path)
    assert [p.name for p in paths] == ["assignment.csv", "summary.json"]
    back = pd.read_csv(tmp_path / "assignment.csv", dtype={"query_id": str})
    assert list(back.columns) == list(ASSIGNMENT_COLUMNS)
    pd.testing.assert_frame_equal(back, s.assignment.reset_index(drop=True), check_dtype=False)
    doc = json.loads((tmp_path / "summary.json").read_text())
    # on disk the enums are their strings
    assert doc["status"] == "feasible" and doc["bound_source"] == "mip" and doc["termination"] == "feasible"
    assert doc["total_energy_j"] == pytest.approx(10_550.0) and doc["gap"] == pytest.approx(50.0 / 10550.0)


def test_write_summary_of_a_schedule_without_a_plan_is_valid_json(tmp_path):
    p = problem(False)
    s = Schedule(empty_assignment(), p, Status.INFEASIBLE, "highs", math.nan, math.inf, BoundSource.NONE, "exact", {},
                 termination=Termination.INFEASIBLE)
    text = s.write_summary(tmp_path).read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))  # strict JSON
    # numbers are numbers: an infinite bound or gap is null with a flag saying which infinity
    assert doc["objective_value"] is None and doc["bound"] is None and doc["gap"] is None
    assert doc["bound_infinite"] == 1 and doc["gap_infinite"] is True
    assert '"inf"' not in text and '"-inf"' not in text
    assert doc["total_energy_j"] is None and doc["total_energy_kwh"] is None and doc["check"]["ok"] is None
    assert doc["queries_with_deadline"] == 1
    assert doc["status"] == "infeasible" and not (tmp_path / "assignment.csv").exists()


def test_summary_records_version_time_settings_and_input_hashes(tmp_path, synthetic_fleet, synthetic_models):
    import datetime
    import hashlib

    from conftest import lognormal_workload

    from energyopt.plan import plan
    from energyopt.version import package_version

    wl = tmp_path / "w.csv"
    lognormal_workload(15, seed=5).to_csv(wl, index=False)
    sched = plan(wl, synthetic_fleet, synthetic_models, solver="highs", mip_rel_gap=1e-3, time_limit_s=60, threads=1)
    doc = sched.summary().to_dict()
    assert doc["energyopt_version"] == package_version()
    made = datetime.datetime.fromisoformat(doc["created_at"])
    assert made.tzinfo is not None and made.utcoffset() == datetime.timedelta(0) and doc["created_at"].endswith("Z")
    assert abs((datetime.datetime.now(datetime.UTC) - made).total_seconds()) < 120
    assert doc["settings"] == {"solver": "highs", "formulation": "auto", "time_limit_s": 60, "gap": 1e-3, "threads": 1,
                               "objective": "energy", "zeta": None, "idle": False, "min_mean_accuracy": None,
                               "strict_range": False}
    sha = doc["input_sha256"]
    assert sha["workload"] == hashlib.sha256(wl.read_bytes()).hexdigest()
    assert sha["fleet"] == hashlib.sha256(synthetic_fleet.read_bytes()).hexdigest()
    files = sorted(synthetic_models.glob("*.json"))
    assert sha["models"] == {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files} and files
    # a plan's numbers: finite bound and gap, flags off, its check done
    assert isinstance(doc["gap"], float) and doc["gap_infinite"] is False and doc["bound_infinite"] == 0
    assert doc["check"]["ok"] is True and isinstance(doc["total_energy_j"], float)


def test_summary_counts_a_deadline_met_wherever_the_edf_tolerance_accepts_it():
    from energyopt.accounting import edf_feasible
    from energyopt.check import check_plan

    wl = workload_of([(10, 100, 0.0, 1e4)])
    fl, fm = two_llm_fleet(horizon_s=2e4), make_models(TWO_LLM_MODELS)
    p = build_problem(wl, fl, fm)
    a = assignment_table(p, Timeline(np.array([SMALL_G]), np.array([0])))
    a.loc[0, ["start_s", "end_s"]] = [1e4 + 5e-9 - 1.0, 1e4 + 5e-9]  # 5 ns late at 10^4 s: within 1e-12 relative
    assert edf_feasible([1e4 + 5e-9], [1e4]) and check_plan(a, wl, fl, fm) == []
    s = Schedule(a, p, Status.FEASIBLE, "highs", 1.0, 1.0, BoundSource.MIP, "exact", {})
    assert s.summary().deadlines_met == 1


# --- queries on predictions outside the measured token ranges ------------------------------------
#
# conftest.ranged_two_llm_models: every model measured on 8-512 input and 8-256 output tokens. q0
# (10 + 100 tokens) is inside, q1 (600 + 300) outside all of them; both go to small@g (1 J per output
# token): 100 J and 300 J.


def test_summary_counts_the_queries_on_extrapolated_predictions_and_their_energy_exactly():
    from energyopt.plan import plan

    s = plan(inside_outside_workload(), two_llm_fleet(), ranged_two_llm_models(), solver="highs")
    assert s.assignment.set_index("query_id")["llm"].to_dict() == {"q0": "small", "q1": "small"}
    summ = s.summary()
    assert summ.extrapolated_queries == 1 and summ.extrapolated_energy_j == 300.0
    assert summ.extrapolated_energy_share == 0.75 and summ.total_energy_j == 400.0
    assert [(r["llm"], r["device"], r["extrapolated_queries"], r["extrapolated_energy_j"]) for r in summ.by_llm_device] \
        == [("small", "g", 1, 300.0)]
    doc = summ.to_dict()
    assert doc["extrapolated_queries"] == 1 and doc["extrapolated_energy_j"] == 300.0
    assert doc["settings"]["strict_range"] is False and doc["check"]["ok"] is True


def test_under_strict_range_the_query_moves_to_a_model_measured_there():
    from energyopt.check import check_schedule
    from energyopt.plan import plan

    models = with_measured_ranges(ranged_two_llm_models(), (8, 1024), (8, 512), pairs=[("big", "c")])
    s = plan(inside_outside_workload(), two_llm_fleet(), models, solver="highs", strict_range=True)
    assert s.status == Status.OPTIMAL and s.problem.strict_range
    assert s.assignment.set_index("query_id")[["llm", "device"]].to_dict("index") == {
        "q0": {"llm": "small", "device": "g"}, "q1": {"llm": "big", "device": "c"}}
    summ = s.summary()
    assert summ.extrapolated_queries == 0 and summ.extrapolated_energy_j == 0.0 and summ.total_energy_j == 700.0
    assert summ.settings["strict_range"] is True and summ.check["ok"] is True
    assert check_schedule(s.problem, s) == []


def test_under_strict_range_a_query_outside_every_range_makes_the_plan_infeasible_with_the_ranges():
    from energyopt.plan import plan

    s = plan(inside_outside_workload(), two_llm_fleet(), ranged_two_llm_models(), solver="highs", strict_range=True)
    reason = ("600 input and 300 output tokens lie outside the token ranges measured for every accurate-enough "
              "option (input 8-512 and output 8-256 for small/g, big/g and 1 more); --strict-range refuses "
              "extrapolated predictions")
    assert s.status == Status.INFEASIBLE and s.assignment.empty
    assert s.message == f"1 queries have no feasible option: query q1: {reason}"
    summ = s.summary()
    assert summ.unservable == [{"query_id": "q1", "reason": reason}]
    assert summ.extrapolated_queries == 0 and summ.extrapolated_energy_j is None
    assert summ.extrapolated_energy_share is None and summ.settings["strict_range"] is True


def test_extrapolated_rows_follow_each_row_to_its_query_and_deployment_in_any_order():
    from energyopt.plan import plan
    from energyopt.schedule import extrapolated_rows, extrapolation_totals

    s = plan(inside_outside_workload(), two_llm_fleet(), ranged_two_llm_models(), solver="highs")
    a = s.assignment.iloc[::-1].reset_index(drop=True)
    assert extrapolated_rows(a, s.problem).tolist() == [True, False]
    assert extrapolation_totals(a, s.problem) == {"extrapolated_queries": 1, "extrapolated_energy_j": 300.0}
    ghost = a.assign(query_id=["ghost", "q0"])  # a row naming no query of the problem is not counted
    assert extrapolated_rows(ghost, s.problem).tolist() == [False, False]
    assert extrapolated_rows(empty_assignment(), s.problem).tolist() == []


def test_summary_simulates_batched_instances_on_an_engine():
    # the replay example planned on the engine's models: the lane model says 12.3 s, the engine
    # (every refill's prefill stalls every slot) 14.4 s, as the H200 measured (14.53 s)
    from pathlib import Path

    import pandas as pd

    from energyopt.modelstore import FittedModels
    from energyopt.plan import plan
    from energyopt.replay.lanes import instance_runs
    from energyopt.replay.simulate import simulate_with_models

    ex = Path(__file__).parent.parent / "examples" / "replay"
    models = FittedModels.load(ex / "models-engine")
    w = pd.read_csv(ex / "workload.csv")
    sched = plan(w, ex / "fleet-batched.toml", models)
    s = sched.summary()
    assert s.makespan_s == pytest.approx(12.34, abs=0.01)
    by_instance = [simulate_with_models(r, models) for r in instance_runs(sched.assignment, w)]
    assert s.engine_makespan_s == pytest.approx(max(t.makespan_s for t in by_instance))
    assert s.engine_makespan_s == pytest.approx(14.43, abs=0.01)
    assert s.engine_deadlines_met == s.deadlines_met == 23
    # the assignment states each query's engine times: its instance's simulation, row for row
    a = sched.assignment
    for run, t in zip(instance_runs(a, w), by_instance):
        rows = a.set_index("query_id").loc[run.rows["query_id"]]
        assert rows["engine_start_s"].tolist() == pytest.approx(t.start_s.tolist())
        assert rows["engine_end_s"].tolist() == pytest.approx(t.end_s.tolist())
    single = plan(w, ex / "fleet-batch1.toml", models)
    one = single.summary()
    assert one.engine_makespan_s is None and one.engine_deadlines_met is None  # nothing batched: the lane model is the engine
    assert single.assignment["engine_end_s"].isna().all() and single.assignment["engine_start_s"].isna().all()
    released = plan(w.assign(release_s=np.arange(len(w)) * 0.01), ex / "fleet-batched.toml", models).summary()
    assert released.engine_makespan_s is None  # the engine runs a lane back to back, not from releases
    sig = Path(__file__).parent.parent / "data" / "signals" / "neso_gb_national_intensity_2023-01-01_07.csv"
    slotted = plan(w, ex / "fleet-batched.toml", models, objective="carbon", signals=sig).summary()
    assert slotted.status.has_plan and slotted.engine_makespan_s is None  # planned per time slot, not back to back


def _scripted_engine_timed(monkeypatch, n, late_counts, move_off):
    """plan._engine_timed on n queries of batched deployments, with the engine's verdicts scripted
    (the first k placed queries of each round's timeline end late, k from ``late_counts``) and
    ``move_off`` faked; returns (the timeline and table it kept, the timelines and tables it made)."""
    import importlib
    from types import SimpleNamespace

    P = importlib.import_module("energyopt.plan")
    problem = SimpleNamespace(inputs=object(), deployments=pd.DataFrame({"batch_size": [8, 8]}),
                              release_s=np.zeros(n), slots=None,
                              queries=pd.DataFrame({"deadline_eff_s": np.ones(n)}))
    script = iter(late_counts)
    timelines: list[Timeline] = []
    tables: list[pd.DataFrame] = []

    def table(problem, tl):
        k = next(script)
        timelines.append(tl)
        tables.append(pd.DataFrame({"engine_end_s": np.where(np.arange(n) < k, 2.0, 0.5)}))
        return tables[-1]

    monkeypatch.setattr(P, "assignment_table", table)
    monkeypatch.setattr(P, "move_off", move_off)
    out = P._engine_timed(problem, Timeline(np.zeros(n, dtype=np.int64), np.arange(n)))
    return out, timelines, tables


@pytest.mark.parametrize("late_counts, moves", [
    # fewer late after each move to another lane: on; as many as before: to other deployments
    ([5, 3, 2, 2, 1, 0], ["lane", "lane", "lane", "away", "away"]),
    # other lanes for ENGINE_SAME_DEPLOYMENT_ROUNDS rounds at most, then other deployments
    ([9, 8, 7, 6, 5, 4, 0], ["lane"] * 4 + ["away", "away"]),
    # more late after a move: other deployments at once, and never back to other lanes
    ([3, 4, 2, 1, 0], ["lane", "away", "away", "away"]),
])
def test_engine_late_queries_move_lanes_while_that_helps_then_deployments(monkeypatch, late_counts, moves):
    # _engine_timed's rounds: which kind of move each round makes, and what each avoids
    from energyopt.plan import ENGINE_REPACK_ROUNDS, ENGINE_SAME_DEPLOYMENT_ROUNDS

    calls: list[tuple[bool, dict]] = []

    def move_off(problem, tl, late, avoid, *, other_lane):
        calls.append((other_lane, {q: set(d) for q, d in avoid.items()}))
        return Timeline(tl.dep.copy(), tl.lane.copy())

    (out, tab), _, _ = _scripted_engine_timed(monkeypatch, 10, late_counts, move_off)
    assert ["lane" if other else "away" for other, _ in calls] == moves
    assert ENGINE_SAME_DEPLOYMENT_ROUNDS == 4 and len(moves) <= 4 + ENGINE_REPACK_ROUNDS
    first_away = moves.index("away")
    assert all(not avoid for _, avoid in calls[:first_away])  # other lanes: any deployment
    assert all(avoid for _, avoid in calls[first_away:])  # then never back onto a deployment it was late on
    assert (tab["engine_end_s"] <= 1.0).all()  # every round's table is the last timeline's: none late


@pytest.mark.parametrize("late_counts, unplaced_at, kept", [
    ([4] * 6, None, 0),  # no round ends fewer late: the packed timeline, as it was
    ([4, 2, 3, 3, 3, 3, 3], None, 1),  # the fewest late (2, after the first round), not the last
    ([4, 3, 3, 2, 2, 2, 2], None, 3),  # of equally few, the earliest (the fewest moves)
    ([4, 3, 2], 2, 2),  # the round that left a query without a lane is undone, and ends the rounds
])
def test_engine_late_queries_keep_the_timeline_with_the_fewest_late(monkeypatch, late_counts, unplaced_at, kept):
    made: list[int] = []

    def move_off(problem, tl, late, avoid, *, other_lane):
        made.append(0)
        unplaced = [0] if len(made) - 1 == unplaced_at else []
        return Timeline(tl.dep + 1, tl.lane.copy(), unplaced)

    (out, tab), timelines, tables = _scripted_engine_timed(monkeypatch, 4, late_counts, move_off)
    assert out is timelines[kept] and tab is tables[kept] and not out.unplaced
    assert len(timelines) == (unplaced_at + 1 if unplaced_at is not None else len(late_counts))


def test_a_query_the_engine_ends_late_moves_to_another_deployment():
    # r0176 on the replay example: the lane model ends it at 2.11 s on Llama-3-8B at batch 32, the
    # engine (its instance's other prefills) later; with its deadline between the two the lane model
    # alone keeps it there, and the plan moves it to Mistral-7B, where the engine meets it too
    from pathlib import Path

    import pandas as pd

    from energyopt.check import check_plan
    from energyopt.modelstore import FittedModels
    from energyopt.plan import plan

    ex = Path(__file__).parent.parent / "examples" / "replay"
    models = FittedModels.load(ex / "models-engine")
    w = pd.read_csv(ex / "workload.csv")
    before = plan(w, ex / "fleet-batched.toml", models).assignment.set_index("query_id").loc["r0176"]
    assert before["llm"] == "llama-3-8b" and before["end_s"] < 2.122 < before["engine_end_s"]
    w.loc[w["query_id"] == "r0176", "deadline_s"] = 2.122
    sched = plan(w, ex / "fleet-batched.toml", models)
    s = sched.summary()
    row = sched.assignment.set_index("query_id").loc["r0176"]
    assert row["llm"] == "mistral-7b" and row["engine_end_s"] <= 2.122 and row["end_s"] <= 2.122
    assert s.engine_deadlines_met == s.deadlines_met == s.queries_with_deadline == 24
    assert sched.objective >= sched.bound and s.check["ok"]
    assert check_plan(sched.assignment, w, sched.problem.inputs.fleet, models) == []


@pytest.mark.parametrize("first, spread, packed, taken", [
    ((0, 10.0), (0, 9.0), None, "first"),  # the method's lanes: none late, no dearer: not packed again
    ((3, 10.0), (1, 12.0), 1, "spread"),  # fewer late on the packer's lanes, though dearer
    ((3, 10.0), (3, 9.0), 1, "spread"),  # as many late, cheaper
    ((3, 10.0), (4, 9.0), 1, "first"),  # more late: the cost does not buy deadlines back
    ((0, 11.0), (0, 10.5), 1, "spread"),  # none late, but the repair cost more than the lanes it was given
    ((3, 10.0), None, 1, "first"),  # the packer leaves a query without a lane
])
def test_engine_late_lanes_are_packed_again_and_the_fewer_late_the_cheaper_kept(monkeypatch, first, spread, packed, taken):
    # _engine_placed with the engine's verdicts and the objectives scripted per timeline
    import importlib
    from types import SimpleNamespace

    from energyopt.methods import Choice

    P = importlib.import_module("energyopt.plan")
    n = 4
    problem = SimpleNamespace(deployments=pd.DataFrame({"lanes": [2, 2]}), n_deployments=2,
                              queries=pd.DataFrame({"deadline_eff_s": np.ones(n)}))
    given = Timeline(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 3]))  # deployment 1's second instance
    made = {"first": Timeline(given.dep.copy(), given.lane.copy()),
            "spread": Timeline(given.dep.copy(), np.array([0, 2, 1, 3]))}
    verdicts = {id(made["first"]): first, id(made["spread"]): spread}
    packs: list[np.ndarray] = []

    def engine_timed(problem, tl, limits=None):
        out = made["first"] if tl is given else made["spread"]
        return out, pd.DataFrame({"engine_end_s": np.where(np.arange(n) < verdicts[id(out)][0], 2.0, 0.5)})

    def pack(problem, dep_of_q, n_inst):
        packs.append(np.asarray(n_inst).copy())
        return made["spread"] if spread is not None else Timeline(dep_of_q, np.full(n, -1), [0])

    costs = {id(given): 10.0, id(made["first"]): first[1]}
    if spread is not None:
        costs[id(made["spread"])] = spread[1]
    monkeypatch.setattr(P, "_engine_timed", engine_timed)
    monkeypatch.setattr(P, "pack", pack)
    monkeypatch.setattr(P, "plan_objective", lambda problem, tl: costs[id(tl)])
    choice = Choice(method="m", solver="s", status=Status.OPTIMAL, termination=Termination.OPTIMAL, objective=10.0,
                    bound=10.0, bound_source=BoundSource.LP, dep_of_q=given.dep, lane_of_q=given.lane)
    out, _ = P._engine_placed(problem, choice, given, None)
    assert out is made[taken]
    assert len(packs) == (packed or 0)
    assert all(p.tolist() == [1, 2] for p in packs)  # the instances the method's lanes use
