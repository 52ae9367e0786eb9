"""Release times: every query is released at its ``release_s`` and starts no earlier.

Every method and backend the tiny brute-force tests exercise, on tiny instances with releases,
against the brute-force optimum over every order on every lane (EDF is no longer exact): the
plan's objective ≥ the optimum ≥ the bound, the checker passes, and "optimal" is claimed only
where the plan's objective meets the bound. Then the lane timing formula, the unservable reason,
the summary, ``explain`` and the readers' conversions and errors.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import random_instance
from oracles import brute_force_optimum, lane_feasible_by_permutations
from test_lanes import _fleet, _models, _workload

from energyopt.accounting import lane_feasible, lane_times_s
from energyopt.check import check_plan
from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.explain import explain
from energyopt.io import read_workload, workload_from_frame
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schema import Status

#: (formulation, backend) pairs the tiny brute-force tests run
COMBOS = [("exact", "highs"), ("exact", "cbc"), ("exact", "cpsat"), ("aggregate", "highs"), ("aggregate", "cbc"),
          ("decompose", "highs")]


def _with_releases(wl: pd.DataFrame, horizon_s: float, seed: int) -> pd.DataFrame:
    """Releases over the first 60% of the horizon on about two thirds of the queries; half the time
    each deadline becomes a window after the release."""
    rng = np.random.default_rng(10_000 + seed)
    n = len(wl)
    rel = np.where(rng.random(n) < 0.65, np.round(rng.uniform(0, 0.6 * horizon_s, n), 3), 0.0)
    out = wl.copy()
    out["release_s"] = rel
    if rng.random() < 0.5:
        out["deadline_s"] = rel + out["deadline_s"] * 0.6
    return out


def _tol(x: float) -> float:
    return 1e-6 * max(1.0, abs(x))


def test_every_method_and_backend_with_releases_against_brute_force():
    """Packing with releases is a heuristic: where a plan exists the method may still find none
    (no_solution, never infeasible), but on these instances it finds most (about 85%)."""
    planned = finite = 0
    for seed in range(60):
        wl, fleet, models, kw = random_instance(seed)
        wl = _with_releases(wl, fleet.horizon_s, seed)
        problem = build_problem(wl, fleet, models, **kw)
        opt = brute_force_optimum(problem) if problem.unservable.empty else math.inf
        for formulation, solver in COMBOS:
            s = plan(wl, fleet, models, solver=solver, formulation=formulation, mip_rel_gap=0.0, **kw)
            where = (seed, formulation, solver)
            if math.isinf(opt):
                assert not s.status.has_plan, where
                continue
            tol = _tol(opt) if solver != "cpsat" else 1e-4 * max(1.0, abs(opt))
            assert s.bound <= opt + tol, (where, s.bound, opt)
            finite += 1
            if not s.status.has_plan:
                assert s.status is Status.NO_SOLUTION, where  # packing is a heuristic with releases
                continue
            planned += 1
            a = s.assignment
            assert check_plan(a, wl, fleet, models, min_mean_accuracy=kw.get("min_mean_accuracy")) == [], where
            assert s.objective >= opt - tol, (where, s.objective, opt)
            rel = wl.set_index("query_id").loc[a["query_id"], "release_s"].to_numpy()
            assert (a["start_s"].to_numpy() >= rel - 1e-9).all() and (a["release_s"].to_numpy() == rel).all()
            if s.status is Status.OPTIMAL:  # claimed only where the plan meets its proven bound
                assert s.objective == pytest.approx(opt, abs=tol) and s.gap <= 1e-6, where
    assert finite >= 30 and planned >= 0.75 * finite, (planned, finite)


def _brute_force_over_lanes_with_releases(problem) -> float:
    """The least objective over every placement on lanes (as in test_lanes), each lane feasible in
    some order with every query started at or after its release."""
    deps = problem.deployments
    lanes = deps["lanes"].to_numpy()
    places = [(d, i, ln) for d in range(len(deps)) for i in range(int(deps["max_instances"].iloc[d]))
              for ln in range(int(lanes[d]))]
    due = problem.queries["deadline_eff_s"].to_numpy()
    rel = problem.queries["release_s"].to_numpy()
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
        if not all(lane_feasible_by_permutations(problem.runtime_s[qs, places[place][0]], due[qs], rel[qs])
                   for place in set(combo) for qs in [[q for q, k in enumerate(combo) if k == place]]):
            continue
        cost = sum(problem.cost[q, places[k][0]] for q, k in enumerate(combo))
        best = min(best, cost + sum(problem.instance_cost[d] for d, _ in on))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("idle", [False, True])
def test_every_method_on_lanes_with_releases_against_brute_force(seed, idle):
    rng = np.random.default_rng(seed)
    wl = _workload(4, seed=seed)
    wl["release_s"] = np.round(rng.uniform(0, 6, 4), 3)
    wl["deadline_s"] = np.where(rng.random(4) < 0.5, wl["release_s"] + rng.uniform(3, 8, 4), np.nan)
    fl = _fleet(batch_sizes=(1, 2), count=2, horizon_s=16.0, max_instances=1)
    fm = _models()
    problem = build_problem(wl, fl, fm, idle=idle)
    best = _brute_force_over_lanes_with_releases(problem)
    for method in ("exact", "aggregate", "decompose"):
        s = plan(wl, fl, fm, idle=idle, formulation=method, mip_rel_gap=0.0)
        if not np.isfinite(best):
            assert not s.status.has_plan, (method, s.status)
            continue
        assert s.bound <= best * (1 + 1e-7) + 1e-7, (method, s.bound, best)
        if s.status.has_plan:
            assert check_plan(s.assignment, wl, fl, fm) == []
            assert s.objective >= best * (1 - 1e-7) - 1e-7
            if s.status is Status.OPTIMAL:
                assert s.objective == pytest.approx(best, rel=1e-7, abs=1e-7)


def test_without_releases_nothing_changes():
    """A workload whose releases are all 0 plans exactly as one without the column."""
    compared = 0
    for seed in range(12):
        wl, fleet, models, kw = random_instance(seed, n_q=5)
        for formulation in ("exact", "aggregate"):
            a = plan(wl, fleet, models, formulation=formulation, mip_rel_gap=0.0, **kw)
            b = plan(wl.assign(release_s=0.0), fleet, models, formulation=formulation, mip_rel_gap=0.0, **kw)
            assert a.status == b.status and a.message == b.message
            if not a.status.has_plan:
                continue
            compared += 1
            assert a.objective == b.objective
            pd.testing.assert_frame_equal(a.assignment, b.assignment)
            assert (a.assignment["release_s"] == 0).all()
            s = a.summary()
            assert s.queries_with_release == 0 and s.latest_release_s == 0.0
    assert compared >= 5


# --- the lane timing formula ----------------------------------------------------------------------


def test_lane_times_start_each_query_at_its_release_or_when_the_lane_frees():
    # lane 0: a (release 0, 2 s), b (release 1, 1 s), c (release 10, 1 s); lane 1: d (release 5, 1 s)
    key = np.array([0, 0, 0, 1])
    run = np.array([2.0, 1.0, 1.0, 1.0])
    rel = np.array([0.0, 1.0, 10.0, 5.0])
    due = np.array([100.0, 100.0, 100.0, 100.0])
    start, end = lane_times_s(key, run, rel, due)
    assert start.tolist() == [0.0, 2.0, 10.0, 5.0] and end.tolist() == [2.0, 3.0, 11.0, 6.0]
    # released all at 0: earliest deadline first, shorter first among ties
    start, end = lane_times_s(np.zeros(3, dtype=int), np.array([3.0, 1.0, 2.0]), np.zeros(3), np.array([9.0, 9.0, 4.0]))
    assert end.tolist() == [6.0, 3.0, 2.0]


def test_release_order_is_a_heuristic_and_the_oracle_knows_better():
    """A long query released at 0 blocks an urgent one released at 1 in release order (and in EDF
    among released queries, which starts it at once); deadline order waits for the urgent one and
    makes a third, released at 0, late. C, B, A meets every deadline: with releases the lane's
    orders are heuristics."""
    run, rel, due = np.array([5.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0]), np.array([100.0, 2.5, 2.0])
    _, end = lane_times_s(np.zeros(3, dtype=int), run, rel, due, "release")
    assert end.tolist() == [6.0, 1.0, 7.0]  # C, A, B: B late
    _, end = lane_times_s(np.zeros(3, dtype=int), run, rel, due, "deadline")
    assert end.tolist() == [8.0, 3.0, 2.0]  # B, C, A: C late
    assert not lane_feasible(run, due, rel)
    assert lane_feasible_by_permutations(run, due, rel)  # C 0-1, B 1-2, A 2-7


# --- problem, summary, explain ----------------------------------------------------------------------


def test_a_query_its_release_makes_late_is_unservable_with_a_reason_naming_the_release():
    wl = _workload(2)
    wl["release_s"] = [0.0, 50.0]
    wl["deadline_s"] = [np.nan, 50.5]
    s = plan(wl, _fleet(), _models())
    assert s.status is Status.INFEASIBLE
    assert "released at 50 s" in s.message and "after its deadline of 50.5 s" in s.message
    # the horizon binds too: released after it, no query can run
    wl["release_s"] = [0.0, 100.0]
    wl["deadline_s"] = np.nan
    s = plan(wl, _fleet(), _models())
    assert s.status is Status.INFEASIBLE and "released at 100 s" in s.message and "horizon of 100 s" in s.message


def test_summary_records_releases_and_the_plan_respects_them():
    wl = _workload(8, seed=2)
    wl["release_s"] = np.arange(8) * 3.0
    s = plan(wl, _fleet(count=1, horizon_s=200.0), _models())
    assert s.status.has_plan and s.summary().check["ok"]
    summ = s.summary()
    assert summ.queries_with_release == 7 and summ.latest_release_s == 21.0
    a = s.assignment.set_index("query_id").loc[wl["query_id"]]
    assert (a["start_s"].to_numpy() >= wl["release_s"].to_numpy() - 1e-12).all()
    assert summ.makespan_s >= 21.0


def test_explain_names_the_release_where_it_binds():
    """q1's deadline lies between its release plus the fastest runtime and its release plus the
    slowest: the slow options could end it in time from t = 0 but not from its release, and
    explain says so, naming the release."""
    wl = _workload(2)
    fm = _models()
    fl = _fleet(horizon_s=100.0)
    p0 = build_problem(wl, fl, fm)
    fast, slow = float(p0.runtime_s[1].min()), float(p0.runtime_s[1].max())
    assert slow > fast
    release = 10.0
    wl["release_s"] = [0.0, release]
    wl["deadline_s"] = [np.nan, release + (fast + slow) / 2]  # in time from its release only on the fast one
    problem = build_problem(wl, fl, fm)
    s = plan(wl, fl, fm)
    assert s.status.has_plan
    ex = explain(problem, s.assignment, "q1")
    reasons = " | ".join(ex.options["reasons"].astype(str))
    assert "release: released at 10 s" in reasons, reasons
    assert ex.query["release_s"] == release


# --- readers ----------------------------------------------------------------------------------------


def _write(tmp_path, text: str, name: str):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_release_column_azure_and_jsonl_arrivals(tmp_path):
    a = read_workload(_write(tmp_path, "query_id,input_tokens,output_tokens,release_s\n1,10,5,2.5\n2,7,3,\n", "w.csv"))
    assert a["release_s"].tolist() == [2.5, 0.0]  # as given: seconds from the batch start, empty 0
    b = read_workload(_write(tmp_path, "query_id,input_tokens,output_tokens\n1,10,5\n", "plain.csv"))
    assert b["release_s"].tolist() == [0.0]
    azure = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50.9951690,396,109\n"
             "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:16:46.6805900,10,4\n")
    c = read_workload(_write(tmp_path, azure, "azure.csv"))
    assert c["release_s"].tolist() == pytest.approx([4.314579, 0.0, 60.0])  # the first arrival at 0
    assert c["arrival_timestamp"].iloc[1] == "2023-11-16 18:15:46.6805900"
    lines = [{"query_id": "a", "input_tokens": 5, "output_tokens": 6, "arrival": 100.5},
             {"query_id": "b", "input_tokens": 1, "output_tokens": 1, "arrival": "103"}]
    d = read_workload(_write(tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n", "w.jsonl"))
    assert d["release_s"].tolist() == [0.0, 2.5]
    lines = [{"query_id": "a", "input_tokens": 5, "output_tokens": 6, "timestamp": "2024-01-01T00:00:10+01:00"},
             {"query_id": "b", "input_tokens": 1, "output_tokens": 1, "timestamp": "2023-12-31T23:00:00Z"}]
    e = read_workload(_write(tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n", "t.jsonl"))
    assert e["release_s"].tolist() == [10.0, 0.0]  # zones respected
    f = workload_from_frame(pd.DataFrame({"query_id": ["x"], "input_tokens": [1], "output_tokens": [1]}))
    assert f["release_s"].tolist() == [0.0]


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("w.csv", "query_id,input_tokens,output_tokens,release_s\n1,2,3,-1\n",
         r"w\.csv: line 2, column release_s: expected a number >= 0 \[s\], got '-1'"),
        ("w.csv", "query_id,input_tokens,output_tokens,release_s\n1,2,3,inf\n",
         r"line 2, column release_s: expected a finite number \[s\]"),
        ("w.csv", "query_id,input_tokens,output_tokens,release_s\n1,2,3,soon\n",
         r"line 2, column release_s: expected a number, got 'soon'"),
        ("azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1,2\n\n2023-11-16 25:00:00,1,2\n",
         r"azure\.csv: line 4, column timestamp: expected an arrival time: a date-time \(ISO 8601"),
        ("azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1,2\n,1,2\n",
         r"line 3, column timestamp: value is missing; expected an arrival time"),
        ("w.csv", "query_id,input_tokens,output_tokens,arrival,release_s\n1,2,3,4,5\n",
         r"w\.csv: columns release_s and arrival both give arrival times; expected one of them"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1, "output_tokens": 1, "arrival": 1}\n'
                    '{"query_id": "b", "input_tokens": 1, "output_tokens": 1, "arrival": "2023-11-16"}\n',
         r"w\.jsonl: line 2, column arrival: expected a number of seconds like line 1"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1, "output_tokens": 1, "arrival": true}\n',
         r"line 1, column arrival: expected an arrival time: .*, got true"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1, "output_tokens": 1, "timestamp": "2023-11-16"}\n\n'
                    '{"query_id": "b", "input_tokens": 1, "output_tokens": 1}\n',
         r"line 3, column timestamp: value is missing"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1, "output_tokens": 1, "arrival": 1e999}\n',
         r"line 1, column arrival: expected a finite number of seconds"),
    ],
)
def test_release_errors_name_file_line_and_field(tmp_path, name, text, match):
    with pytest.raises(DataError, match=match):
        read_workload(_write(tmp_path, text, name))


def test_solve_refuses_an_unparsable_arrival_before_solving(tmp_path):
    p = _write(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,2\nlater,1,2\n", "azure.csv")
    r = CliRunner().invoke(main, ["solve", str(p), "--out", str(tmp_path / "plan")])
    assert r.exit_code == 2 and "line 3, column timestamp" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "plan").exists()
